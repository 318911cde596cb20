/**
 * Bytes read back from a store come out as Node `Buffer`s, bytes built in a test as plain
 * `Uint8Array`s; deep equality tells them apart. `plainBytes` copies a value with every byte array
 * in it made a plain `Uint8Array`, so two values compare by content.
 */
export function plainBytes<T>(value: T): T {
  if (value instanceof Uint8Array) return new Uint8Array(value) as T
  if (Array.isArray(value)) return value.map((item: unknown) => plainBytes(item)) as T
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) out[key] = plainBytes(item)
    return out as T
  }
  return value
}

export const utf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'))

export const fromUtf8 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8')
