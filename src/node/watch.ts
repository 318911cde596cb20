/**
 * Watching changes, and waiting for them: the watch cursor, the events one logged change gives,
 * the follow loop behind `watch()`, and the causal wait behind `after` tokens. Both wake on the
 * store's commit event (local commits, changes applied from peers, a snapshot joined), never on a
 * timer: the only timer is a causal wait's deadline.
 */
import type { Hlc, NodeId, VectorClock } from '../clock/index.js'
import { vcCovers } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Store } from '../storage/index.js'
import { followLog } from '../storage/index.js'
import type { Parking } from './bounds.js'
import type { WatchEvent } from './types.js'

/**
 * Where a watch resumes. A cursor names the last event seen: `L` (decimal) when that event was the
 * last op of the change at LSN `L`, so everything through `L` was seen; `L.i` when it was op `i` of
 * a change with more ops, so resuming replays the rest of change `L` and nothing twice.
 */
export interface WatchPosition {
  /** The LSN of the change the cursor is in. */
  readonly lsn: number
  /** The op index seen last within that change, or null when the whole change was seen. */
  readonly op: number | null
}

export function decodeWatchCursor(cursor: string): WatchPosition {
  const match = typeof cursor === 'string' ? /^(0|[1-9][0-9]{0,15})(?:\.(0|[1-9][0-9]{0,8}))?$/.exec(cursor) : null
  const lsn = Number(match?.[1])
  if (match === null || !Number.isSafeInteger(lsn) || (match[2] !== undefined && lsn === 0)) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'the watch cursor is not one this node made')
  }
  return { lsn, op: match[2] === undefined ? null : Number(match[2]) }
}

/** The cursor of op `index` of the change at `lsn` (see `WatchPosition`). */
export function watchCursor(lsn: number, index: number, opCount: number): string {
  return index >= opCount - 1 ? String(lsn) : `${lsn}.${index}`
}

/** The watch events of one logged change, filtered by key prefix, leaving out ops up to `seenOp`. */
export function watchEvents(change: Change, lsn: number, self: NodeId, prefix: string, seenOp = -1): WatchEvent[] {
  const origin = change.dot.node === self ? ('local' as const) : ('remote' as const)
  const events: WatchEvent[] = []
  for (const [index, op] of change.ops.entries()) {
    if (index <= seenOp) continue
    const base = {
      cursor: watchCursor(lsn, index, change.ops.length),
      origin,
      node: change.dot.node,
      hlc: change.hlc as Hlc,
    }
    switch (op.type) {
      case 'kv.put':
        if (op.key.startsWith(prefix))
          events.push({ ...base, type: 'put', key: op.key, value: op.value, contentType: op.contentType })
        break
      case 'kv.del':
        if (op.key.startsWith(prefix)) events.push({ ...base, type: 'del', key: op.key })
        break
      case 'counter.add':
        if (op.name.startsWith(prefix)) events.push({ ...base, type: 'counter', name: op.name, delta: op.delta })
        break
      case 'set.add':
      case 'set.remove':
        // Names starting with U+0000 are meshkv's own (members, tokens): no watcher sees them.
        if (op.name.startsWith(prefix) && !op.name.startsWith('\u0000'))
          events.push({ ...base, type: op.type, name: op.name, member: op.member })
        break
      case 'doc.update':
        if (op.name.startsWith(prefix)) events.push({ ...base, type: 'doc', name: op.name, update: op.update })
        break
    }
  }
  return events
}

/** The watch events of the log from `since` (a cursor) or from `nowLsn`, until `signal` aborts. */
export async function* followEvents(
  store: Store,
  options: { prefix?: string; since?: string },
  nowLsn: number,
  signal: AbortSignal,
): AsyncGenerator<WatchEvent> {
  const prefix = options.prefix ?? ''
  const since = options.since === undefined ? { lsn: nowLsn, op: null } : decodeWatchCursor(options.since)
  // Inside a change (`L.i`), follow from just before it and leave out the ops already seen.
  const after = since.op === null ? since.lsn : since.lsn - 1
  for await (const { lsn, change } of followLog(store, after, signal)) {
    const seenOp = since.op !== null && lsn === since.lsn ? since.op : -1
    for (const event of watchEvents(change, lsn, store.nodeId, prefix, seenOp)) yield event
  }
}

/**
 * Resolves once the store's clock covers `wanted`, checked on each commit event; fails with
 * `MESHKV_ERR_READ_TIMEOUT` at the deadline or `MESHKV_ERR_ABORTED` when `signal` aborts. A read
 * that has to wait takes a place in `parked` first (`MESHKV_ERR_BUSY` when none is free); one
 * whose token is already covered parks nothing.
 */
export function waitForClock(
  store: Store,
  wanted: VectorClock,
  timeoutMs: number,
  signal?: AbortSignal,
  parked?: Parking,
): Promise<void> {
  if (vcCovers(store.vc, wanted)) return Promise.resolve()
  if (signal?.aborted === true) return Promise.reject(new MeshError('MESHKV_ERR_ABORTED', 'the read was aborted'))
  let release: () => void
  try {
    release = parked?.take() ?? (() => undefined)
  } catch (error) {
    return Promise.reject(error as Error)
  }
  return new Promise<void>((resolve, reject) => {
    const finish = (error?: MeshError): void => {
      release()
      clearTimeout(deadline)
      unsubscribe()
      signal?.removeEventListener('abort', onAbort)
      if (error === undefined) resolve()
      else reject(error)
    }
    const onAbort = (): void => finish(new MeshError('MESHKV_ERR_ABORTED', 'the read was aborted'))
    const deadline = setTimeout(
      () =>
        finish(
          new MeshError(
            'MESHKV_ERR_READ_TIMEOUT',
            `this node has not seen the causal token's writes within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    )
    const unsubscribe = store.onCommit(() => {
      if (vcCovers(store.vc, wanted)) finish()
    })
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
