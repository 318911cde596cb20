/**
 * Garbage collection (docs/protocol.md, "Garbage collection"): deleting the start of the log
 * once every member holds it, and kv keys whose siblings are all stable tombstones. Both run as
 * exclusive work between group commits, so nothing here races a commit.
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcGet, vcHasDot } from '../clock/index.js'
import type { Backend, BackendReader, BackendWrite, Range } from './backend.js'
import type { StoreHead } from './layout.js'
import { dotIndexKey, dotIndexStart, isAllTombstones, lsnKey, parseIndexedLsn, readState } from './layout.js'
import { lsnInLog } from './log-reads.js'

/** Log entries or tombstones one purge batch takes. */
export const PURGE_BATCH_MAX = 2000

/**
 * Purges the log from `logStart` up to (not including) the first change `logCovered` lacks, and
 * at most up to `upToLsn`, yielding the new start of the log after each batch (so a purge cut off
 * by a failed write leaves the caller knowing how far it got). The bound comes from the dot
 * index (and a short walk of the log from it). Each batch deletes a run of log entries together
 * with their dot index entries but each origin's last one, which finds the changes kept after it.
 */
export async function* purgeLog(
  backend: Backend,
  head: StoreHead,
  logStart: number,
  logCovered: VectorClock,
  upToLsn: number,
): AsyncGenerator<number> {
  let bound = Math.min(head.lsn + 1, upToLsn + 1)
  const origins = Object.entries(head.vc) as [NodeId, number][]
  for (const [node, seq] of origins) {
    const held = vcGet(logCovered, node)
    if (held >= seq) continue
    const lsn = await lsnInLog(backend, { node, seq: held + 1 }, logStart)
    if (lsn !== undefined) bound = Math.min(bound, lsn)
  }
  // Per origin, the last index key deleted: its entries are in seq order, which is LSN order.
  const indexCursors = new Map<NodeId, string>()
  for (let from = logStart; from < bound; from += PURGE_BATCH_MAX) {
    const to = Math.min(bound, from + PURGE_BATCH_MAX)
    const writes: BackendWrite[] = []
    for (let lsn = from; lsn < to; lsn++) writes.push({ type: 'del', sub: 'log', key: lsnKey(lsn) })
    for (const [node, seq] of origins) writes.push(...(await indexDeletesBelow(backend, node, seq, to, indexCursors)))
    await backend.write(writes, { sync: false })
    yield to
  }
}

/**
 * The deletes of `node`'s index entries whose LSN is below `toLsn`, after its cursor, but for the
 * last of them: the index is sparse (layout.ts, `isIndexed`), and the changes after that entry
 * that stay in the log are found from it (log-reads.ts, `lsnInLog`). The cursor stays before it,
 * so a later batch deletes it once a newer entry is below its bound.
 */
async function indexDeletesBelow(
  reader: BackendReader,
  node: NodeId,
  seq: number,
  toLsn: number,
  cursors: Map<NodeId, string>,
): Promise<BackendWrite[]> {
  const cursor = cursors.get(node)
  const last = dotIndexKey({ node, seq })
  const range: Range = cursor === undefined ? { gte: dotIndexStart(node), lte: last } : { gt: cursor, lte: last }
  const deletes: BackendWrite[] = []
  let kept: string | null = null
  for await (const [key, bytes] of reader.iterate('dots', range)) {
    if (parseIndexedLsn(bytes) >= toLsn) break
    if (kept !== null) {
      deletes.push({ type: 'del', sub: 'dots', key: kept })
      cursors.set(node, kept)
    }
    kept = key
  }
  return deletes
}

/** What one tombstone pass did: keys purged, index entries deleted, where the next pass resumes. */
export interface TombstonePass {
  readonly purged: number
  readonly entriesDeleted: number
  readonly cursor: string | null
}

/**
 * Walks a slice of the tombstone index from `cursor`: purges keys whose siblings are all
 * tombstones with dots in `stableCut` (no change concurrent with them can arrive any more, so
 * nothing they hide can come back) and drops index entries of keys written again since.
 */
export async function purgeTombstones(
  backend: Backend,
  cursor: string | null,
  stableCut: VectorClock,
): Promise<TombstonePass> {
  const writes: BackendWrite[] = []
  let purged = 0
  let scanned = 0
  let last: string | null = null
  const range: Range = cursor === null ? { limit: PURGE_BATCH_MAX } : { gt: cursor, limit: PURGE_BATCH_MAX }
  for await (const [key] of backend.iterate('tombs', range)) {
    scanned++
    last = key
    const state = await readState(backend, 'kv', key)
    if (!isAllTombstones(state)) {
      writes.push({ type: 'del', sub: 'tombs', key })
    } else if (state.siblings.every((sibling) => vcHasDot(stableCut, sibling.dot))) {
      writes.push({ type: 'del', sub: 'tombs', key }, { type: 'del', sub: 'kv', key })
      purged++
    }
  }
  if (writes.length > 0) await backend.write(writes, { sync: false })
  const entriesDeleted = writes.filter((write) => write.sub === 'tombs').length
  // The next pass goes on after the last key seen, and starts over once the index is walked.
  return { purged, entriesDeleted, cursor: scanned < PURGE_BATCH_MAX ? null : last }
}

/** Entries in the tombstone index: walked once at open and after a snapshot join. */
export async function countTombstones(reader: BackendReader): Promise<number> {
  let count = 0
  for await (const _ of reader.iterate('tombs', {})) count++
  return count
}
