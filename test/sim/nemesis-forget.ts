/**
 * The simulator's witness for forget cuts (docs/architecture.md, "Membership"): the cut a forget
 * writes is at least the highest seq of the member that the forgetter or any surviving peer is
 * known to hold. The run checks it from the wire, not from the replicator's own bookkeeping: for
 * each node (per process run, since a restart forgets what it heard), what every peer said it
 * holds in the `sync`s (each replaces the last) and `ack`s (each adds) delivered to it.
 *
 * Why a witness and not an outcome: survivors accept relays of the member's changes past the
 * cut, so a cut taken too low (from the forgetter's own view, as before issue 12) loses no
 * acknowledged write and splits no survivors; it only breaks the rule the cut is written by.
 * test/sim/forget-cut.test.ts plants that bug and shows the witness catches it.
 */
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { vcGet, vcJoin } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'

export class HeardClaims {
  /** By hearer and process run: what each peer said it holds. */
  readonly #heard = new Map<string, Map<NodeId, VectorClock>>()

  /** `message` from `from` was delivered to `to`, in its process run `run`. */
  delivered(to: NodeId, run: number, from: NodeId, message: PeerMessage): void {
    if (message.type !== 'sync' && message.type !== 'ack') return
    const key = `${to} ${run}`
    let peers = this.#heard.get(key)
    if (peers === undefined) this.#heard.set(key, (peers = new Map()))
    peers.set(from, message.type === 'sync' ? message.vc : vcJoin(peers.get(from) ?? {}, message.vc))
  }

  /**
   * A violation, or null: the cut `seq` that `forgetter` (process run `run`, holding `own`) wrote
   * for `member` is below what a surviving peer said it holds. Peers in `forgotten` are no survivors.
   */
  checkCut(
    forgetter: { nodeId: NodeId; run: number; own: VectorClock },
    member: NodeId,
    seq: number,
    forgotten: (id: NodeId) => boolean,
  ): string | null {
    let floor = vcGet(forgetter.own, member)
    let by: NodeId | null = null
    for (const [peer, vc] of this.#heard.get(`${forgetter.nodeId} ${forgetter.run}`) ?? []) {
      if (peer === member || forgotten(peer) || vcGet(vc, member) <= floor) continue
      floor = vcGet(vc, member)
      by = peer
    }
    if (seq >= floor) return null
    return `the forget cut of ${member} written by ${forgetter.nodeId} is ${seq}, but ${by ?? 'it'} had said it holds seq ${floor} of it (the cut must cover what any survivor is known to hold)`
  }
}
