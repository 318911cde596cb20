/**
 * The ordered key-value backend under a `Store`: LevelDB on disk, or memory for tests and the
 * simulator. It knows nothing of changes or merges; it stores bytes under string keys in named
 * sublevels, writes atomic batches, iterates ranges in byte order and takes consistent snapshots.
 */

/** The sublevels; `layout.ts` says what each holds and how its keys are made. */
export type Sub = 'meta' | 'log' | 'dots' | 'vc' | 'kv' | 'counter' | 'set' | 'doc' | 'tombs' | 'stage'
export const SUBS: readonly Sub[] = ['meta', 'log', 'dots', 'vc', 'kv', 'counter', 'set', 'doc', 'tombs', 'stage']

export type BackendWrite =
  | { readonly type: 'put'; readonly sub: Sub; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly sub: Sub; readonly key: string }

export interface Range {
  gt?: string
  gte?: string
  lt?: string
  lte?: string
  reverse?: boolean
  limit?: number
}

export interface BackendReader {
  get(sub: Sub, key: string): Promise<Uint8Array | undefined>
  /** Several keys of one sublevel in one call (one trip to the storage thread). */
  getMany(sub: Sub, keys: readonly string[]): Promise<(Uint8Array | undefined)[]>
  /** Entries in byte order of their UTF-8 keys (reverse when asked). */
  iterate(sub: Sub, range: Range): AsyncIterable<[string, Uint8Array]>
}

export interface BackendSnapshot extends BackendReader {
  close(): Promise<void>
}

export interface Backend extends BackendReader {
  readonly kind: 'level' | 'memory'
  open(): Promise<void>
  close(): Promise<void>
  /** One atomic batch: all of it is durable, or none of it. `sync` asks for fsync. */
  write(writes: readonly BackendWrite[], options: { sync: boolean }): Promise<void>
  /** A consistent view as of now; later writes are not seen through it. */
  snapshot(): BackendSnapshot
}

/** Compares keys as LevelDB does: by the bytes of their UTF-8 encoding. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}
