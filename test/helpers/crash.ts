/** What the crash writer (test/fixtures/crash-writer.ts) stores, so the parent can check it. */

/** The JSON value written under `key`: unique per key, of varying size. */
export function crashValue(key: string): { key: string; pad: string } {
  let hash = 0
  for (const char of key) hash = (Math.imul(hash, 31) + (char.codePointAt(0) ?? 0)) >>> 0
  return { key, pad: 'x'.repeat(hash % 300) }
}

/** The counter the writer increments. */
export const CRASH_COUNTER = 'crash/acks'
