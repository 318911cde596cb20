/** In-process helpers on a data directory: raw LevelDB baselines, and filling a node's store. */
import { Level } from 'level'
import { MeshNode } from '../../src/node/index.js'
import { nowMs } from './procs.js'

/** Runs `op(i)` for i in [0, count) with `concurrency` in flight; returns ops/s. */
export async function timed(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0
  const started = nowMs()
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await op(next++)
    }),
  )
  return count / ((nowMs() - started) / 1000)
}

export function keyOf(prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(8, '0')}`
}

/**
 * Raw LevelDB ingest of `count` records of `valueBytes` in batches of `batch` (no fsync): what
 * the disk and LevelDB take when nothing else is done per record. Records per second.
 */
export async function rawBatchIngest(dir: string, count: number, valueBytes: number, batch = 512): Promise<number> {
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
  await db.open()
  try {
    const value = Buffer.alloc(valueBytes, 7)
    const started = nowMs()
    for (let i = 0; i < count; i += batch) {
      const ops = []
      for (let j = i; j < Math.min(count, i + batch); j++) ops.push({ type: 'put' as const, key: keyOf('k', j), value })
      await db.batch(ops)
    }
    return count / ((nowMs() - started) / 1000)
  } finally {
    await db.close()
  }
}

/**
 * Writes `count` keys into the node store at `dir` (opened here, alone, without peers): one change
 * per key with `inflight` puts in flight, or `opsPerChange` keys per change (MeshNode.batch).
 * Returns keys per second.
 */
export async function fillNode(
  dir: string,
  options: { count: number; prefix: string; valueBytes: number; inflight?: number; opsPerChange?: number },
): Promise<number> {
  const node = await MeshNode.open({ dir })
  try {
    const value = Buffer.alloc(options.valueBytes, 0x63)
    const per = options.opsPerChange ?? 1
    if (per <= 1)
      return await timed(options.count, options.inflight ?? 64, (i) => node.put(keyOf(options.prefix, i), value))
    const batches = Math.ceil(options.count / per)
    const rate = await timed(batches, options.inflight ?? 8, (b) =>
      node.batch(
        Array.from({ length: Math.min(per, options.count - b * per) }, (_, j) => ({
          type: 'put' as const,
          key: keyOf(options.prefix, b * per + j),
          value,
        })),
      ),
    )
    return rate * per
  } finally {
    await node.close()
  }
}
