/**
 * Following the log: every entry after a cursor, first what is on disk, then each new batch as it
 * commits. The log itself is the buffer, so a slow reader costs no memory: it just reads further
 * behind, and catch-up and live following are one loop.
 */
import { MeshError } from '../errors.js'
import type { LogEntry, Store } from './store.js'

export const FOLLOW_PAGE_ENTRIES = 256

export async function* followLog(store: Store, afterLsn: number, signal?: AbortSignal): AsyncGenerator<LogEntry> {
  let last = afterLsn
  let wake: (() => void) | null = null
  const unsubscribe = store.onCommit(() => wake?.())
  const onAbort = (): void => wake?.()
  signal?.addEventListener('abort', onAbort)
  try {
    if (last + 1 < (await store.firstLsn()) && last < store.lsn) {
      throw new MeshError('MESHKV_ERR_CURSOR_EXPIRED', `the log no longer holds entries after ${last}`)
    }
    while (signal?.aborted !== true) {
      const arrived = new Promise<void>((resolve) => (wake = resolve))
      const entries = await store.readLog(last, FOLLOW_PAGE_ENTRIES)
      for (const entry of entries) {
        last = entry.lsn
        yield entry
      }
      if (entries.length < FOLLOW_PAGE_ENTRIES) await arrived
    }
  } finally {
    unsubscribe()
    signal?.removeEventListener('abort', onAbort)
  }
}
