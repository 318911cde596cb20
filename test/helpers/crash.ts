/** What the crash writer (test/fixtures/crash-writer.ts) stores, so the parent can check it. */

/** The JSON value written under `key`: unique per key, of varying size. */
export function crashValue(key: string): { key: string; pad: string } {
  let hash = 0
  for (const char of key) hash = (Math.imul(hash, 31) + (char.codePointAt(0) ?? 0)) >>> 0
  return { key, pad: 'x'.repeat(hash % 300) }
}

/** The counter the writer increments. */
export const CRASH_COUNTER = 'crash/acks'

/**
 * A crash test's seed (`MESHKV_CRASH_SEED`, else a fresh random one), its number of kill loops
 * (`MESHKV_CRASH_LOOPS`, else `loops`) and the command that replays it.
 */
export function crashRun(file: string, loops: number): { seed: number; loops: number; replay: string } {
  const text = process.env['MESHKV_CRASH_SEED']
  const seed = text === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(text)
  return {
    seed,
    loops: Number(process.env['MESHKV_CRASH_LOOPS'] ?? loops),
    replay: `MESHKV_CRASH_SEED=${seed} npx vitest run ${file}`,
  }
}
