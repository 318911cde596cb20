/**
 * Reads of the log and its dot index. The log is one contiguous run of LSNs: commits append at
 * its end and garbage collection deletes from its start, so the store keeps where it starts in
 * memory (found once at open, moved by each purge) and no read has to look for it on disk.
 * Following the log as it grows is `follow.ts`, which works over the `Store` face.
 */
import type { Dot } from '../clock/index.js'
import { decodeChange } from '../codec/index.js'
import type { BackendReader } from './backend.js'
import { DOT_INDEX_GAP, DOT_INDEX_STRIDE, lsnKey, parseLsnKey, readIndexFloor } from './layout.js'
import type { LogEntry } from './store-types.js'

/**
 * Log entries with LSN greater than `afterLsn`: at most `limit`, and no more once `bytesMax`
 * encoded bytes are read (at least one entry), so a reader of large values stays bounded.
 */
export async function readLog(
  reader: BackendReader,
  afterLsn: number,
  limit: number,
  bytesMax: number,
): Promise<LogEntry[]> {
  const entries: LogEntry[] = []
  let bytesRead = 0
  for await (const [key, bytes] of reader.iterate('log', { gt: lsnKey(afterLsn), limit })) {
    entries.push({ lsn: parseLsnKey(key), change: decodeChange(bytes) })
    bytesRead += bytes.length
    if (bytesRead >= bytesMax) break
  }
  return entries
}

/**
 * The oldest LSN in the log, or `lsn + 1` when the log is empty (the next entry starts it). Read
 * once at open: on LevelDB this seek steps over the deletion markers of purged entries until
 * compaction drops them, which is why it is not done per call.
 */
export async function findLogStart(reader: BackendReader, lsn: number): Promise<number> {
  for await (const [key] of reader.iterate('log', { limit: 1 })) return parseLsnKey(key)
  return lsn + 1
}

/**
 * The LSN of the change `dot` if the log still holds it. The index is sparse (layout.ts,
 * `isIndexed`): from the origin's entry at or below `dot`, the origin's next changes are each at
 * most DOT_INDEX_GAP log entries after the one before, so the walk ends at `dot`, at a later
 * change of its origin, or DOT_INDEX_GAP entries past the last one seen (then the log does not
 * hold it: it came in a snapshot). The entry found may be below the log's start: a purge keeps
 * each origin's last entry below its bound (gc.ts), and the walk starts at the log's start,
 * where the first change kept is within DOT_INDEX_GAP of a purged one.
 */
export async function lsnInLog(reader: BackendReader, dot: Dot, logStart: number): Promise<number | undefined> {
  const floor = await readIndexFloor(reader, dot)
  if (floor === undefined) return undefined
  if (floor.seq === dot.seq) return floor.lsn >= logStart ? floor.lsn : undefined
  let last = Math.max(floor.lsn, logStart - 1)
  const range = { gt: lsnKey(last), lte: lsnKey(last + DOT_INDEX_STRIDE * DOT_INDEX_GAP) }
  for await (const [key, bytes] of reader.iterate('log', range)) {
    const lsn = parseLsnKey(key)
    if (lsn - last > DOT_INDEX_GAP) return undefined
    const { node, seq } = decodeChange(bytes).dot
    if (node !== dot.node) continue
    if (seq === dot.seq) return lsn
    if (seq > dot.seq) return undefined
    last = lsn
  }
  return undefined
}
