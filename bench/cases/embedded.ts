/**
 * embedded_put / embedded_put_fsync: `MeshNode.put` (w=1, 64 in flight) in this process against
 * raw `level` (classic-level) puts with the same concurrency, each on a fresh directory.
 *
 * - embedded_put: baseline = raw puts without fsync, 64 in flight. Note that a MeshNode fsyncs
 *   every group commit holding a write of its own even without `sync` (README: own changes are
 *   fsynced before they are acknowledged), so this ratio compares a durable write with a
 *   non-durable one; `raw_fsync_batched_ops_s` is recorded alongside for the like-for-like view.
 * - embedded_put_fsync: MeshNode `sync: true` against raw batches of 64 puts with `{ sync: true }`
 *   (one fsync per batch of 64, what a group commit of 64 in flight can reach at best). Raw single
 *   puts with `{ sync: true }` and 64 in flight (LevelDB's writer queue coalesces concurrent sync
 *   writes, but classic-level runs them on 4 libuv threads, so at most ~4 coalesce) are recorded
 *   as `raw_sync_puts_64_inflight_ops_s`.
 *
 * In a full run each measurement runs twice, interleaved, and the better of the two counts.
 */
import { Level } from 'level'
import { MeshNode } from '../../src/node/index.js'
import { removeDir, tempDir } from '../lib/procs.js'
import { keyOf, timed } from '../lib/populate.js'
import { entry } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

async function withDir<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await tempDir('embedded')
  try {
    return await run(dir)
  } finally {
    await removeDir(dir)
  }
}

function rawPut(count: number, inflight: number, valueBytes: number, sync: boolean): Promise<number> {
  return withDir(async (dir) => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    await db.open()
    const value = Buffer.alloc(valueBytes, 7)
    try {
      await timed(Math.min(1000, count), inflight, (i) => db.put(keyOf('warm', i), value, { sync }))
      return await timed(count, inflight, (i) => db.put(keyOf('key', i), value, { sync }))
    } finally {
      await db.close()
    }
  })
}

function rawSyncBatches(count: number, batch: number, valueBytes: number): Promise<number> {
  return withDir(async (dir) => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    await db.open()
    const value = Buffer.alloc(valueBytes, 7)
    try {
      const batches = Math.ceil(count / batch)
      const rate = await timed(batches, 1, (b) =>
        db.batch(
          Array.from({ length: batch }, (_, j) => ({ type: 'put' as const, key: keyOf('key', b * batch + j), value })),
          { sync: true },
        ),
      )
      return rate * batch
    } finally {
      await db.close()
    }
  })
}

export function meshPut(count: number, inflight: number, valueBytes: number, sync: boolean): Promise<number> {
  return withDir(async (dir) => {
    const node = await MeshNode.open({ dir, sync })
    const value = Buffer.alloc(valueBytes, 7)
    try {
      await timed(Math.min(1000, count), inflight, (i) => node.put(keyOf('warm', i), value))
      return await timed(count, inflight, (i) => node.put(keyOf('key', i), value))
    } finally {
      await node.close()
    }
  })
}

export const embeddedCase: BenchCase = {
  names: ['embedded_put', 'embedded_put_fsync'],
  async run({ sizes, log }: Context) {
    const { inflight, valueBytes } = sizes
    const best = { raw: 0, mesh: 0, rawBatched: 0, rawSyncPuts: 0, meshSync: 0 }
    for (let round = 1; round <= sizes.embeddedRounds; round++) {
      const measured = {
        raw: await rawPut(sizes.embeddedOps, inflight, valueBytes, false),
        mesh: await meshPut(sizes.embeddedOps, inflight, valueBytes, false),
        rawBatched: await rawSyncBatches(sizes.embeddedFsyncOps, inflight, valueBytes),
        rawSyncPuts: await rawPut(sizes.embeddedFsyncOps, inflight, valueBytes, true),
        meshSync: await meshPut(sizes.embeddedFsyncOps, inflight, valueBytes, true),
      }
      log(
        `round ${round}: raw put ${Math.round(measured.raw)}, MeshNode.put ${Math.round(measured.mesh)}, raw sync batches of ${inflight} ${Math.round(measured.rawBatched)}, ` +
          `raw sync puts ${Math.round(measured.rawSyncPuts)}, MeshNode.put sync ${Math.round(measured.meshSync)} ops/s (${inflight} in flight)`,
      )
      for (const key of Object.keys(best) as (keyof typeof best)[]) best[key] = Math.max(best[key], measured[key])
    }
    const { raw, mesh, rawBatched, rawSyncPuts, meshSync } = best
    const common = { inflight, value_bytes: valueBytes }
    return {
      embedded_put: entry(mesh, 'ops/s', raw, {
        ...common,
        rounds: sizes.embeddedRounds,
        ops: sizes.embeddedOps,
        baseline_kind: `raw classic-level put, no fsync, ${inflight} in flight`,
        raw_fsync_batched_ops_s: Math.round(rawBatched),
        note: 'MeshNode fsyncs each group commit holding its own writes even without sync',
      }),
      embedded_put_fsync: entry(meshSync, 'ops/s', rawBatched, {
        ...common,
        rounds: sizes.embeddedRounds,
        ops: sizes.embeddedFsyncOps,
        baseline_kind: `raw classic-level batches of ${inflight} puts with { sync: true }, one batch at a time`,
        raw_sync_puts_64_inflight_ops_s: Math.round(rawSyncPuts),
      }),
    }
  },
}
