/**
 * What a replicator knows of forgotten members (docs/architecture.md, "Membership"): each one's
 * cut, the dots of its forget entries, its last usable ack when it was forgotten, and whether a
 * peer told this node that it was itself forgotten (a link closed with 4403).
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import type { PeerBook } from './peers.js'
import { forgetSettled } from './peers.js'
import { stabilityMembers } from './stability.js'

export class ForgottenMembers {
  /** Forgotten members, with the last of their changes that stays (later ones are refused). */
  readonly cuts = new Map<NodeId, number>()
  /** The dots of each forgotten member's forget entries: stability waits until every member has them. */
  dots: ReadonlyMap<NodeId, readonly Dot[]> = new Map()
  /** Each forgotten member's last usable ack when it was forgotten: the stable cut counts it until settled. */
  readonly lastAcks = new Map<NodeId, VectorClock>()
  /** A peer closed a link with 4403: this node was forgotten by the cluster. */
  by: { peer: NodeId; atMs: number } | null = null

  has(nodeId: NodeId): boolean {
    return this.cuts.has(nodeId)
  }

  /** Records `nodeId` forgotten at `seq`; false when that is known already. */
  record(nodeId: NodeId, seq: number, lastAck: VectorClock | undefined): boolean {
    if (this.cuts.get(nodeId) === seq) return false
    this.cuts.set(nodeId, seq)
    if (lastAck !== undefined && !this.lastAcks.has(nodeId)) this.lastAcks.set(nodeId, lastAck)
    return true
  }

  /**
   * The members stability waits for. For the stable cut (`unsettled`), a forgotten member still
   * counts, with its last usable ack, until no change of it can arrive any more (`forgetSettled`):
   * survivors relay its changes past the cut, and those follow its last ack but may be concurrent
   * with anything after it. Log entries need not wait: nothing is shipped to it any more.
   */
  stabilityMembers(
    unsettled: boolean,
    cluster: { own: VectorClock; members: readonly NodeId[]; peers: PeerBook; self: NodeId },
  ): Set<NodeId> {
    const forgotten = [...this.cuts.keys()]
    const { own, members, peers, self } = cluster
    const survivors = stabilityMembers(members, peers.ids(), self, forgotten)
    if (!unsettled) return survivors
    const infos = [...survivors].map((id) => peers.get(id))
    const settled = forgotten.filter((id) => forgetSettled(own, id, this.dots.get(id) ?? [], infos))
    const waited = forgotten.filter((id) => !settled.includes(id))
    return stabilityMembers([...members, ...waited], peers.ids(), self, settled)
  }
}
