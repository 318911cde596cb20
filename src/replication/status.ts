/**
 * How far behind each peer is, for `/v1/status` and `kvctl members`: what it lacks of this node's
 * changes, how old the oldest of those is, and whether its link is up; and what this node still
 * lacks of what the peer held when it first synced (a joining node waits for that).
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcDistance, vcGet } from '../clock/index.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { PeerBook } from './peers.js'
import { knownTo } from './peers.js'

export type PeerState = 'up' | 'catching-up' | 'down'

export interface PeerStatus {
  nodeId: NodeId | null
  url: string | null
  state: PeerState
  /** Changes this node has that the peer has not acknowledged. */
  lagChanges: number
  /** Age of the oldest change the peer lacks (0 when it lacks none). */
  lagMs: number
  /** Milliseconds since the peer was last heard from, or null if never. */
  lastSeenMs: number | null
  /**
   * Changes the peer held when it first synced on this run that this node still lacks: what a
   * joining node waits for before it is ready (`Replicator.caughtUp`); 0 once caught up.
   */
  catchUpChanges: number
}

export interface PeerStatusInput {
  store: ReplicaStore
  peers: PeerBook
  now: () => number
  isLinked: (nodeId: NodeId) => boolean
  /** A peer lacking changes older than this is `catching-up` rather than `up`. */
  catchingUpAfterMs: number
}

/**
 * Each peer this node has linked with, and each configured URL behind which no such peer has
 * been seen yet (`nodeId: null`, down). `configured` pairs each URL with the node last seen
 * behind it, so a peer reached at another URL than the one it advertises is listed once.
 */
export async function peerStatus(
  input: PeerStatusInput,
  configured: readonly { url: string; nodeId: NodeId | null }[],
): Promise<PeerStatus[]> {
  const { store, peers, now } = input
  const out: PeerStatus[] = []
  const seenUrls = new Set<string>()
  for (const info of peers.sorted()) {
    if (info.url !== null) seenUrls.add(info.url)
    const known = knownTo(info, store.vc)
    const lagChanges = vcDistance(store.vc, known)
    const lagMs = lagChanges === 0 ? 0 : await oldestMissingAgeMs(store, known, now())
    // Read the clock after the lookups above: a message may have been heard meanwhile.
    const at = now()
    const linked = input.isLinked(info.nodeId)
    const state: PeerState = !linked ? 'down' : lagMs > input.catchingUpAfterMs ? 'catching-up' : 'up'
    const lastSeenMs = info.lastSeenMs === null ? null : Math.max(0, at - info.lastSeenMs)
    const catchUpChanges = info.firstSyncVc === null ? 0 : vcDistance(info.firstSyncVc, store.vc)
    out.push({ nodeId: info.nodeId, url: info.url, state, lagChanges, lagMs, lastSeenMs, catchUpChanges })
  }
  for (const { url, nodeId } of configured) {
    if (seenUrls.has(url) || (nodeId !== null && peers.has(nodeId))) continue
    const lagChanges = vcDistance(store.vc, {})
    out.push({ nodeId: null, url, state: 'down', lagChanges, lagMs: 0, lastSeenMs: null, catchUpChanges: 0 })
  }
  return out
}

/** Age of the oldest change this node has that `acked` lacks, by its stamp's wall clock. */
async function oldestMissingAgeMs(store: ReplicaStore, acked: VectorClock, now: number): Promise<number> {
  let oldest = Infinity
  for (const [origin, seq] of Object.entries(store.vc) as [NodeId, number][]) {
    const from = vcGet(acked, origin) + 1
    if (from > seq) continue
    const lsn = await store.lsnOfDot({ node: origin, seq: from })
    if (lsn === undefined) continue
    const [entry] = await store.readLog(lsn - 1, 1)
    if (entry !== undefined) oldest = Math.min(oldest, entry.change.hlc.wallMs)
  }
  return oldest === Infinity ? 0 : Math.max(0, now - oldest)
}
