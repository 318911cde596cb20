/**
 * What a node knows of each peer it has linked with on this run, kept across link drops: what the
 * peer acknowledged (and its recent acknowledgements, for the stable cut), the URL it said it is
 * reached at, when it was last heard, and its clock when it first synced (joining waits to cover it).
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { vcCovers, vcGet, vcHasDot, vcJoin } from '../clock/index.js'

/** Acknowledged VCs kept per peer for the stable cut. */
export const ACK_HISTORY_MAX = 32

export interface PeerInfo {
  readonly nodeId: NodeId
  url: string | null
  acked: VectorClock
  /** Recent acknowledged VCs, oldest first: the stable cut takes the newest usable one. */
  ackHistory: VectorClock[]
  lastSeenMs: number | null
  /** The peer's VC when it first synced with us on this run; joining waits to cover it. */
  firstSyncVc: VectorClock | null
  /** What the peer claimed past what this node held then (`checkClaim`); it counts once held. */
  cappedClaim: VectorClock | null
}

export class PeerBook {
  readonly #peers = new Map<NodeId, PeerInfo>()

  get(nodeId: NodeId): PeerInfo | undefined {
    return this.#peers.get(nodeId)
  }

  has(nodeId: NodeId): boolean {
    return this.#peers.has(nodeId)
  }

  ids(): NodeId[] {
    return [...this.#peers.keys()]
  }

  /** Every peer, ordered by node id. */
  sorted(): PeerInfo[] {
    return [...this.#peers.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
  }

  values(): IterableIterator<PeerInfo> {
    return this.#peers.values()
  }

  delete(nodeId: NodeId): void {
    this.#peers.delete(nodeId)
  }

  /** The peer's entry, made on first sight; a non-null `url` replaces the one known. */
  info(nodeId: NodeId, url: string | null): PeerInfo {
    let info = this.#peers.get(nodeId)
    if (info === undefined) {
      info = { nodeId, url, acked: {}, ackHistory: [], lastSeenMs: null, firstSyncVc: null, cappedClaim: null }
      this.#peers.set(nodeId, info)
    }
    if (url !== null) info.url = url
    return info
  }
}

/**
 * A `sync` is the peer's whole VC now: it replaces what this node believed (a peer that lost
 * unsynced changes in a power loss holds less than it once acknowledged).
 */
export function heardSync(info: PeerInfo, vc: VectorClock, claimed: VectorClock = vc): void {
  info.acked = vc
  info.ackHistory = [vc]
  // Joining waits for what the peer says it has, capped or not: a brand-new node holds nothing yet.
  if (info.firstSyncVc === null) info.firstSyncVc = claimed
}

/** An `ack` adds to what the peer is known to hold. */
export function heardAck(info: PeerInfo, vc: VectorClock): void {
  info.acked = vcJoin(info.acked, vc)
  info.ackHistory.push(vc)
  if (info.ackHistory.length > ACK_HISTORY_MAX) info.ackHistory.shift()
}

/** What a peer is known to hold: what it acknowledged, and every change it made itself. */
/** True once `vc` covers what every peer that synced had at its first sync, and one has synced. */
export function caughtUpWith(peers: Iterable<PeerInfo>, vc: VectorClock): boolean {
  let synced = 0
  for (const info of peers) {
    if (info.firstSyncVc === null) continue
    synced++
    if (!vcCovers(vc, info.firstSyncVc)) return false
  }
  return synced > 0
}

export function knownTo(info: PeerInfo, ownVc: VectorClock): VectorClock {
  const own = vcGet(ownVc, info.nodeId)
  return own > vcGet(info.acked, info.nodeId) ? vcJoin(info.acked, { [info.nodeId]: own }) : info.acked
}

/**
 * The newest acknowledgement of `info`'s node whose own entry this node has applied (`ownVc`), or
 * `{}` if none. Older acknowledgements are dropped: this one (or a newer one) will do from now on.
 */
export function usableAck(info: PeerInfo, ownVc: VectorClock): VectorClock {
  const applied = vcGet(ownVc, info.nodeId)
  for (let index = info.ackHistory.length - 1; index >= 0; index--) {
    const ack = info.ackHistory[index] as VectorClock
    if (vcGet(ack, info.nodeId) <= applied) {
      info.ackHistory.splice(0, index)
      return ack
    }
  }
  return {}
}

/** What a peer's `ack` or `sync` claims, as write concern and garbage collection may use it. */
export interface Claim {
  /** The claim with every origin but the peer's own capped at what this node holds. */
  readonly vc: VectorClock
  /** Origins whose claim was capped (an honest peer ahead of this node on a third node does it too). */
  readonly capped: number
  /**
   * It claims more of this node's own changes than this node holds: no honest peer can, unless
   * this node's data directory is an older copy (seq-guard.ts). That entry is capped too.
   */
  readonly impossible: boolean
}

/**
 * Checks a peer's claimed clock against what could have been sent (docs/protocol.md, "Log
 * shipping"): for every origin but the peer itself, no more than this node holds (`own`); for the
 * peer's own origin, anything. A claim of this node's own origin past what it holds is capped as
 * well, and flagged `impossible`. Capping rather than refusing a third origin keeps an honest peer
 * that is ahead of this node counted for what both hold; the whole claim counts once this node
 * holds what it names (the replicator keeps it as `cappedClaim`), never before.
 */
export function checkClaim(claimed: VectorClock, peer: NodeId, self: NodeId, own: VectorClock): Claim {
  let capped = 0
  const vc: Record<string, number> = {}
  for (const [origin, seq] of Object.entries(claimed) as [NodeId, number][]) {
    const held = vcGet(own, origin)
    if (origin === peer || seq <= held) vc[origin] = seq
    else {
      capped++
      if (held > 0) vc[origin] = held
    }
  }
  return {
    vc: capped === 0 ? claimed : (vc as VectorClock),
    capped,
    impossible: vcGet(claimed, self) > vcGet(own, self),
  }
}

/**
 * The forget cut of `origin` (docs/architecture.md, "Membership"): the highest seq of it that this
 * node (`own`) or any other peer is known to hold, by what the peer acknowledged or claimed (a
 * claim past what this node holds counts: that survivor holds it, and will relay it). The
 * forgotten node's own word does not count: only what survivors hold stays.
 */
export function forgetCut(own: VectorClock, origin: NodeId, peers: Iterable<PeerInfo>): number {
  let cut = vcGet(own, origin)
  for (const info of peers) {
    if (info.nodeId === origin) continue
    cut = Math.max(cut, vcGet(info.acked, origin), vcGet(info.cappedClaim ?? {}, origin))
  }
  return cut
}

/**
 * True once no change of the forgotten `origin` can reach this node any more: every surviving
 * member (`survivors`, undefined where never heard) has acknowledged the forget entries (`dots`),
 * so it refuses the member's links and took all it will take of it; and this node holds as much
 * of the member as any of them is known to (their acks then name all they took, and relays bring
 * no more). Until then garbage collection must still count the member.
 */
export function forgetSettled(
  own: VectorClock,
  origin: NodeId,
  dots: readonly Dot[],
  survivors: readonly (PeerInfo | undefined)[],
): boolean {
  if (!dots.every((dot) => vcHasDot(own, dot))) return false
  for (const info of survivors) {
    if (info === undefined) return false
    if (!dots.every((dot) => vcHasDot(info.acked, dot))) return false
  }
  return (
    vcGet(own, origin) >=
    forgetCut(
      own,
      origin,
      survivors.filter((info) => info !== undefined),
    )
  )
}
