/**
 * Reads of the log and its dot index. The log is one contiguous run of LSNs: commits append at
 * its end and garbage collection deletes from its start, so the store keeps where it starts in
 * memory (found once at open, moved by each purge) and no read has to look for it on disk.
 * Following the log as it grows is `follow.ts`, which works over the `Store` face.
 */
import type { Dot } from '../clock/index.js'
import { decodeChange } from '../codec/index.js'
import type { BackendReader } from './backend.js'
import { lsnKey, parseLsnKey, readIndexedLsn } from './layout.js'
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
 * The LSN of the change `dot` if the log still holds it. A purge deletes each log entry and its
 * index entry in one batch, so an index entry below the log's start can only be one an older
 * meshkv left behind (it deleted them in a second batch); the next purge removes those, and
 * until then the comparison keeps them from sending a reader past the log's start.
 */
export async function lsnInLog(reader: BackendReader, dot: Dot, logStart: number): Promise<number | undefined> {
  const lsn = await readIndexedLsn(reader, dot)
  return lsn !== undefined && lsn >= logStart ? lsn : undefined
}
