/**
 * Following the log: every entry after a cursor, first what is on disk, then each new batch as it
 * commits. A follower that keeps up takes new entries from the store's commit news, in memory
 * (reading each back from LevelDB cost a watch stream about a millisecond per event under load);
 * one that falls behind by more than `FOLLOW_TAIL_ENTRIES` drops what it holds and reads the log,
 * which is then the buffer: a slow reader costs no memory, it just reads further behind, and
 * catch-up and live following are one loop.
 */
import { MeshError } from '../errors.js'
import type { LogEntry, Store } from './store.js'

export const FOLLOW_PAGE_ENTRIES = 256
/** Committed entries a follower keeps in memory ahead of its cursor. */
export const FOLLOW_TAIL_ENTRIES = 4096

export async function* followLog(store: Store, afterLsn: number, signal?: AbortSignal): AsyncGenerator<LogEntry> {
  let last = afterLsn
  let wake: (() => void) | null = null
  let tail: LogEntry[] = []
  const unsubscribe = store.onCommit((entries) => {
    if (tail.length + entries.length > FOLLOW_TAIL_ENTRIES) tail = []
    else tail.push(...entries)
    wake?.()
  })
  const onAbort = (): void => wake?.()
  signal?.addEventListener('abort', onAbort)
  try {
    if (last + 1 < (await store.firstLsn()) && last < store.lsn) {
      throw new MeshError('MESHKV_ERR_CURSOR_EXPIRED', `the log no longer holds entries after ${last}`)
    }
    while (signal?.aborted !== true) {
      const arrived = new Promise<void>((resolve) => (wake = resolve))
      const skip = tail.findIndex((entry) => entry.lsn > last)
      tail = skip === -1 ? [] : tail.slice(skip)
      let entries: LogEntry[]
      if (tail[0]?.lsn === last + 1) [entries, tail] = [tail, []]
      else entries = last < store.lsn ? await store.readLog(last, FOLLOW_PAGE_ENTRIES) : []
      for (const entry of entries) {
        last = entry.lsn
        yield entry
      }
      if (entries.length === 0) await arrived
    }
  } finally {
    unsubscribe()
    signal?.removeEventListener('abort', onAbort)
  }
}
