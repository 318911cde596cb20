/**
 * What a peer's `ack` or `sync` claims, and what it may count for (docs/protocol.md, "Log
 * shipping"): write concern and stability take a claim capped at what this node holds
 * (`checkClaim` in peers.ts). A capped claim counts whole once this node holds what it names; a
 * claim of this node's own changes past what it holds tells the seq guard (seq-guard.ts): the
 * node's data directory may be an older copy, and its peers send the missing changes back.
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcGet, vcJoin } from '../clock/index.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { ReplicationCounters } from './inbound.js'
import type { Logger } from './logger.js'
import type { PeerBook } from './peers.js'
import { checkClaim, heardAck } from './peers.js'
import type { SeqGuard } from './seq-guard.js'

export interface ClaimContext {
  readonly store: ReplicaStore
  readonly peers: PeerBook
  readonly counters: ReplicationCounters
  readonly logger: Logger
  readonly guard: SeqGuard
}

/** What `peer`'s ack or sync (`type`) of `vc` may count for now; what it says past that is kept for later. */
export function takeClaim(context: ClaimContext, peer: NodeId, type: 'ack' | 'sync', vc: VectorClock): VectorClock {
  const { store, counters } = context
  const claim = checkClaim(vc, peer, store.nodeId, store.vc)
  counters.claimsCapped += claim.capped
  const info = context.peers.info(peer, null)
  // A sync replaces what was said before; an ack adds to it.
  if (claim.capped > 0)
    info.cappedClaim = type === 'ack' && info.cappedClaim !== null ? vcJoin(info.cappedClaim, vc) : vc
  else if (type === 'sync') info.cappedClaim = null
  const held = vcGet(store.vc, store.nodeId)
  if (claim.impossible) {
    counters.claimsRefused++
    const claimed = vcGet(vc, store.nodeId)
    context.logger.warn(
      { peer, type, claimed, held },
      "a peer claims more of this node's own changes than it holds; they count only once held",
    )
    context.guard.onClaim(peer, claimed, held)
  }
  const trusted = context.guard.trustedOwnSeq(held)
  if (vcGet(claim.vc, store.nodeId) <= trusted) return claim.vc
  const capped: Record<string, number> = { ...claim.vc }
  if (trusted > 0) capped[store.nodeId] = trusted
  else delete capped[store.nodeId]
  return capped as VectorClock
}

/**
 * A claim capped earlier (this node lacked changes the peer said it had) counts whole once this
 * node holds them too: the peer need not ack again for what it already said.
 */
export function promoteClaims(context: ClaimContext): void {
  const { store } = context
  const own = store.vc
  for (const info of context.peers.values()) {
    if (info.cappedClaim === null || checkClaim(info.cappedClaim, info.nodeId, store.nodeId, own).capped > 0) continue
    heardAck(info, info.cappedClaim)
    info.cappedClaim = null
  }
}
