/**
 * Membership in the simulator (docs/testing.md, level L1; docs/architecture.md, "Membership"): the
 * nodes the run starts with are members, each configured with the others; a brand-new node may join
 * mid-run (configured with one member); a member may go down for good and be forgotten by a live
 * one, or be forgotten while still live and writing (with force). Each node's process run has the
 * real membership rules (src/replication/membership.ts), driven as the node's cluster wiring drives
 * them: admission before replication, reads of the member and forgotten sets on each tick.
 * Split from simulation.ts: the run owns the nodes and the timeline, this part owns who is a member.
 */
import type { Dot, NodeId } from '../../src/clock/index.js'
import { vcGet, vcJoin } from '../../src/clock/index.js'
import type { Change, Intent } from '../../src/crdt/index.js'
import { isMeshError } from '../../src/errors.js'
import { FORGOTTEN_SET, MEMBERS_SET, Membership } from '../../src/replication/membership.js'
import { dotString } from '../checkers/history.js'
import { guardRefused } from './config.js'
import { scheduleBigPuts } from './nemesis-bigkey.js'
import type { SimNode } from '../helpers/replication-sim.js'
import type { Simulation } from './simulation.js'

export class Members {
  /** Per node: the membership rules of its current process run (replication/membership.ts). */
  readonly membership: Membership[] = []
  /** Per node: its joining recorded on disk (the node's `joined` meta entry), so a restart keeps it. */
  readonly #joinedOnDisk: boolean[] = []
  /** Per node: the peer URLs it is configured with. */
  readonly #peerUrls: string[][] = []
  /** The node that joins mid-run, dormant until then; null when the run has no join. */
  joiner: number | null = null
  /** The member that went down for good; `forgotten` once a live member forgot it. */
  retired: number | null = null
  forgotten = false
  #forgetting = false
  /** The forgetting node and the dot of its forget write, while `forgotten`. */
  #forget: { index: number; dot: Dot } | null = null

  constructor(readonly sim: Simulation) {}

  /** A new process run of `node` (a restart, or the join): fresh rules, admission on its links. */
  newRun(node: SimNode): void {
    this.membership[node.index] = this.#newMembership(node.index)
    this.#admitOnLink(node)
  }

  /**
   * The nodes the run starts with are members already, each configured with the others. A
   * joining node is made now but stays down until it joins, configured with one member; it
   * starts brand-new (an empty disk). A member may be taken down for good and then forgotten.
   */
  setUpMembership(): void {
    const config = this.sim.config
    const initial = this.sim.cluster.nodes.slice(0, config.nodes)
    for (const node of initial) {
      this.#joinedOnDisk[node.index] = true
      this.#peerUrls[node.index] = initial.filter((other) => other !== node).map((other) => other.url)
    }
    if (config.faults.join) {
      const joiner = config.nodes
      this.joiner = joiner
      this.#joinedOnDisk[joiner] = false
      this.#peerUrls[joiner] = [this.sim.pick(initial).url]
      this.sim.cluster.crash(joiner, 'process', { cutLinks: false })
      const joinDelay = 500 + Math.floor(this.sim.random() * 9500)
      this.sim.timeline.after(joinDelay, `join ${joiner}`, () => this.sim.chaos.restart(joiner, 'join'))
      if (this.sim.bigKeyRun())
        scheduleBigPuts(
          {
            timeline: this.sim.timeline,
            random: this.sim.random,
            writers: () => initial.filter((node) => node.alive).map((node) => node.index),
            put: (node, value, bytes) => this.sim.workload.bigPut(node, value, bytes),
          },
          joinDelay,
        )
    }
    if (config.faults.forgetLive)
      this.sim.timeline.after(1000 + Math.floor(this.sim.random() * 9000), 'forget live', () => void this.#forgetLive())
    else if (config.faults.forget)
      this.sim.timeline.after(1000 + Math.floor(this.sim.random() * 9000), 'retire', () => this.#retire())
    for (const node of this.sim.cluster.nodes) {
      this.membership[node.index] = this.#newMembership(node.index)
      this.#admitOnLink(node)
    }
  }

  /**
   * Admission before replication, as the node's cluster wiring does it: a peer that links and is
   * not in the member set yet is written in (and the set read again) before its link reaches the
   * replicator, so from then on every acknowledgement this node gives covers the admission, and
   * no member collects garbage the newcomer has not seen (docs/architecture.md, "Membership").
   */
  #admitOnLink(node: SimNode): void {
    const replicator = node.replicator
    const generation = node.generation
    const addLink = replicator.addLink.bind(replicator)
    replicator.addLink = (link) => {
      // A node that may not write yet (seq guard) admits the peer on a later tick, once it may.
      if (!replicator.seqGuard.writable) return addLink(link)
      const rules = this.rules(node.index)
      const intents = rules.admit(link.nodeId, link.url)
      if (intents === null) return addLink(link)
      void this.#commitMembership(node, intents)
        .then(() => this.#readMembership(node))
        .catch(() => false)
        .finally(() => {
          rules.admitted(link.nodeId)
          // A link that outlived its node's process goes nowhere: the network cuts it on a crash.
          if (node.generation === generation) addLink(link)
        })
    }
  }

  /** The membership rules for a new process run of node `index`. */
  #newMembership(index: number): Membership {
    const node = this.sim.cluster.node(index)
    return new Membership({
      self: node.nodeId,
      role: 'member',
      url: node.url,
      peers: this.#peerUrls[index] ?? [],
      linking: true,
      joined: this.#joinedOnDisk[index] === true || vcGet(node.store.vc, node.nodeId) > 0,
    })
  }

  rules(index: number): Membership {
    return this.membership[index] as Membership
  }

  /** Members as node `index` counts them (for w and r = quorum or all), as a real node does. */
  memberCount(index: number): number {
    const node = this.sim.cluster.node(index)
    const kept = (this.#peerUrls[index] ?? []).map((url) => ({
      url,
      nodeId: this.sim.cluster.nodes.find((other) => other.url === url)?.nodeId ?? null,
    }))
    return this.rules(index).count(node.replicator.knownPeerIds(), kept)
  }

  /** A tick's membership work on a live node: read the sets, then join, claim, admit and forget. */
  async membershipTick(node: SimNode): Promise<void> {
    const generation = node.generation
    const rules = this.rules(node.index)
    const read = await this.#readMembership(node).catch(() => false)
    if (!read || node.generation !== generation || !node.alive) return
    if (rules.tick(node.replicator.caughtUp())) {
      this.#joinedOnDisk[node.index] = true
      if (node.index === this.joiner) this.sim.stats.joins++
      this.sim.trace(`joined ${node.index}`)
    }
    if (!rules.joined && vcGet(node.store.vc, node.nodeId) > 0)
      this.sim.internal(`node ${node.index} originated a change before it was ready`)
    // Membership writes wait until the node may write (the seq guard), as the node's wiring does.
    if (!node.replicator.seqGuard.writable) return
    const claim = rules.claim()
    if (claim !== null) void this.#commitMembership(node, claim).finally(() => rules.claimed())
    for (const { nodeId, url } of node.replicator.linkedPeerUrls()) {
      const admit = rules.admit(nodeId, url)
      if (admit !== null) void this.#commitMembership(node, admit).finally(() => rules.admitted(nodeId))
    }
    if (this.#mayForget()) await this.#forgetRetired(node)
  }

  /** Reads node's member and forgotten sets into its rules, and tells its replicator whom to refuse. */
  async #readMembership(node: SimNode): Promise<boolean> {
    const members = await node.store.getState('set', MEMBERS_SET)
    const forgotten = await node.store.getState('set', FORGOTTEN_SET)
    const rules = this.rules(node.index)
    rules.update(members, forgotten)
    node.replicator.setForgotten(rules.forgotten, rules.forgetDots)
    return true
  }

  /** Commits `intents` on `node`; the change made, or null (nothing to write, or the node went down). */
  async #commitMembership(node: SimNode, intents: Intent[]): Promise<Change | null> {
    const generation = node.generation
    let change: Change | null = null
    try {
      const result = await node.store.commitLocal(intents)
      if (result.change !== null) {
        this.sim.made.set(dotString(result.change.dot), result.change)
        node.own++
        change = result.change
      }
    } catch (error) {
      // The seq guard may refuse the write at mint time (it changed since the node checked): no change made.
      if (node.generation === generation && !isMeshError(error, 'MESHKV_ERR_CLOSED') && !guardRefused(error))
        this.sim.internal(`node ${node.index} could not write the member set: ${String(error)}`)
    }
    this.sim.activity()
    return change
  }

  /** A member (not the joiner's configured one) goes down for good: its disk is lost with it. */
  #retire(): void {
    // Not while a restored node checks with its peers (operator.ts): a little later.
    if (this.sim.operator.holding()) return void this.sim.timeline.after(500, 'retire', () => this.#retire())
    const joinerPeer = this.joiner === null ? undefined : this.#peerUrls[this.joiner]?.[0]
    const live = this.sim.cluster.nodes.filter(
      (node) => node.alive && !this.sim.chaos.restarting.has(node.index) && node.index !== this.joiner,
    )
    const candidates = live.filter((node) => node.url !== joinerPeer)
    if (candidates.length === 0 || live.length <= 2) return
    const node = this.sim.pick(candidates)
    this.retired = node.index
    this.sim.chaos.crash(node.index, 'power', true)
  }

  /**
   * A member may be forgotten once every other node is up and holds the same changes of it, with
   * nothing on the way and nothing waiting in a causal buffer but changes of it that no node can
   * ever apply: the one right after what all hold (`cut + 1`) is nowhere, so a later one waits for
   * ever (the forget drops it). No live node then holds or can come to hold a change of it the
   * forget would refuse.
   *
   * This is the careful operator's forget of a member down for good; `#forgetLive` is the careless
   * one (a live, writing member, with force, at any moment).
   */
  #mayForget(): boolean {
    if (this.retired === null || this.forgotten || this.#forgetting) return false
    const retired = this.sim.cluster.node(this.retired).nodeId
    const others = this.sim.cluster.nodes.filter((node) => node.index !== this.retired)
    if (this.sim.chaos.restarting.size > 0 || this.sim.network.inFlight() > 0) return false
    if (!others.every((node) => node.alive)) return false
    const seqs = new Set(others.map((node) => vcGet(node.store.vc, retired)))
    if (seqs.size !== 1) return false
    const cut = [...seqs][0] as number
    return others.every((node) =>
      this.bufferedWork(node).every((entry) => entry.origin === retired && entry.seq !== cut + 1),
    )
  }

  /**
   * What waits in `node`'s causal buffer and is still work: the entries past what its store holds
   * of their origin. One the store has overtaken (by a snapshot join, say) is no work: the buffer
   * drops it at its next take. An entry of no node of the cluster counts as work (origin '?').
   */
  bufferedWork(node: SimNode): { origin: string; seq: number }[] {
    const work: { origin: string; seq: number }[] = []
    let listed = 0
    for (const { nodeId: origin } of this.sim.cluster.nodes) {
      const seqs = node.replicator.bufferedOf(origin)
      listed += seqs.length
      for (const seq of seqs) if (seq > vcGet(node.store.vc, origin)) work.push({ origin, seq })
    }
    for (let i = listed; i < (node.replicator.counters['buffered'] ?? 0); i++) work.push({ origin: '?', seq: 0 })
    return work
  }

  /**
   * After a lossy crash: a forget write that no node holds any more (it was not synced, and the
   * forgetter lost it before any peer took it) forgot nothing; a live member forgets again.
   */
  forgetLost(): void {
    const forget = this.#forget
    if (forget === null) return
    const origin = this.sim.cluster.node(forget.index).nodeId
    const held = this.sim.cluster.nodes.some(
      (node) =>
        node.index !== this.retired &&
        Math.max(this.sim.diskSeq(node, origin), node.alive ? vcGet(node.store.vc, origin) : 0) >= forget.dot.seq,
    )
    if (held) return
    this.forgotten = false
    this.#forget = null
    this.sim.trace(`forget by node ${forget.index} lost`)
  }

  async #forgetRetired(node: SimNode): Promise<void> {
    const retired = this.sim.cluster.node(this.retired as number)
    const rules = this.rules(node.index)
    // The retired member itself may still be up (a live forget whose write was lost): never the forgetter.
    if (!rules.joined || node === retired) return
    this.#forgetting = true
    try {
      const state = await node.store.getState('set', MEMBERS_SET)
      const seq = node.replicator.forgetCut(retired.nodeId)
      const badCut = this.#checkCut(node, retired.nodeId, seq)
      const intents = rules.forget(retired.nodeId, seq, node.replicator.linkedPeers(), state)
      const change = await this.#commitMembership(node, intents)
      // The node went down before the forget was written: nothing was forgotten, a live member
      // tries again.
      if (change === null) return
      if (badCut !== null) this.sim.internal(badCut)
      this.forgotten = true
      this.#forget = { index: node.index, dot: change.dot }
      this.sim.stats.forgets++
      this.sim.nemesis('forget', [retired.index, node.index], `forgotten by node ${node.index} after seq ${seq}`)
    } catch (error) {
      // A member this node never heard of cannot be forgotten here: another node may.
      if (!isMeshError(error, 'MESHKV_ERR_UNKNOWN_MEMBER'))
        this.sim.internal(`node ${node.index} could not forget node ${retired.index}: ${String(error)}`)
    } finally {
      this.#forgetting = false
    }
  }

  /**
   * Forgetting a live member at a random moment, as an operator does with `--force`: the member
   * is up, linked to some survivors and writing. The forgetter takes the cut from what it knows
   * survivors hold (`forgetCut`); survivors still relay what they took from the member before
   * they learnt of the forget. The member learns it (a 4403, or itself in the forgotten set) and
   * refuses writes from then on; it goes down for good a little later, its disk with it.
   *
   * Which writes of the member survive: every one some survivor took, so every write it
   * acknowledged at w >= 2 (another member held it) stays; a w=1 write only it held may be lost,
   * which is what w=1 means and what forgetting a live member costs. The checkers need no
   * exception for that: the member's going down for good is a lossy crash, and they excuse a
   * write acknowledged by k members only when its origin and k members in all crashed lossily.
   */
  async #forgetLive(): Promise<void> {
    if (this.sim.operator.holding())
      return void this.sim.timeline.after(500, 'forget live', () => void this.#forgetLive())
    const live = this.sim.cluster.nodes.filter(
      (node) => node.alive && !this.sim.chaos.restarting.has(node.index) && node.index !== this.joiner,
    )
    const joinerPeer = this.joiner === null ? undefined : this.#peerUrls[this.joiner]?.[0]
    const candidates = live.filter((node) => node.url !== joinerPeer)
    if (candidates.length === 0 || live.length <= 2 || this.retired !== null) return
    const member = this.sim.pick(candidates)
    // The forgetter writes the forget: a node whose seq guard holds own writes back (a clone's
    // conflict, say) cannot, another one does.
    const writers = live.filter(
      (node) => node !== member && this.rules(node.index).joined && node.replicator.seqGuard.writable,
    )
    const forgetter = this.sim.pick(writers)
    if (forgetter === undefined) return
    this.retired = member.index
    this.#forgetting = true
    try {
      const state = await forgetter.store.getState('set', MEMBERS_SET)
      const seq = forgetter.replicator.forgetCut(member.nodeId)
      const badCut = this.#checkCut(forgetter, member.nodeId, seq)
      const rules = this.rules(forgetter.index)
      const intents = rules.forget(member.nodeId, seq, forgetter.replicator.linkedPeers(), state)
      const change = await this.#commitMembership(forgetter, intents)
      if (change !== null && badCut !== null) this.sim.internal(badCut)
      // The forgetter went down first: the member stays, and goes down for good without a forget
      // (a member down for good is forgotten the usual way, see #mayForget).
      if (change !== null) {
        this.forgotten = true
        this.#forget = { index: forgetter.index, dot: change.dot }
        this.sim.stats.forgets++
        this.sim.nemesis('forget', [member.index, forgetter.index], `live, by node ${forgetter.index} after seq ${seq}`)
      }
    } catch (error) {
      // A member the forgetter never heard of (it restarted and has not read the set yet): once
      // down for good, the member is forgotten the usual way.
      if (!isMeshError(error, 'MESHKV_ERR_UNKNOWN_MEMBER'))
        this.sim.internal(`node ${forgetter.index} could not forget node ${member.index}: ${String(error)}`)
    } finally {
      this.#forgetting = false
    }
    const after = 200 + Math.floor(this.sim.random() * 3000)
    this.sim.timeline.after(after, 'retire forgotten', () => this.#retireForgotten(member.index))
  }

  /** A cut below what a survivor told the forgetter it holds (nemesis-forget.ts), or null. */
  #checkCut(forgetter: SimNode, member: NodeId, seq: number): string | null {
    const rules = this.rules(forgetter.index)
    const heard = { nodeId: forgetter.nodeId, run: forgetter.generation, own: forgetter.store.vc }
    return this.sim.heard.checkCut(heard, member, seq, (id) => rules.isForgotten(id))
  }

  /** The forgotten member goes down for good (the operator stops it), its disk lost with it. */
  #retireForgotten(index: number): void {
    if (this.sim.cluster.node(index).alive) return this.sim.chaos.crash(index, 'power', true)
    // Down already (a crash, its restart refused now): its disk goes all the same.
    this.sim.nemesis('crash', [index], 'retired', true)
    const node = this.sim.cluster.node(index)
    const held = Object.fromEntries(
      this.sim.cluster.nodes.map((other) => [other.nodeId, this.sim.diskSeq(node, other.nodeId)]),
    )
    this.sim.lostVc[index] = vcJoin(this.sim.lostVc[index] ?? {}, held)
  }

  /**
   * No live node knows node `index`: in no member set, linked to none, no change of it held. It
   * went down for good before any node wrote it in (a node whose seq guard still held writes back
   * when it linked admits it on a later tick), so there is nothing to forget, and no node can
   * (`MESHKV_ERR_UNKNOWN_MEMBER`; seed 91000326 with join and forgetLive).
   */
  unknownToAll(index: number): boolean {
    const id = this.sim.cluster.node(index).nodeId
    return this.sim.cluster.nodes.every(
      (node) =>
        node.index === index ||
        !node.alive ||
        (!this.rules(node.index).members.has(id) &&
          !this.rules(node.index).isForgotten(id) &&
          !node.replicator.linkedPeers().includes(id) &&
          vcGet(node.store.vc, id) === 0),
    )
  }

  /** The node learnt the cluster forgot it, as the node's cluster wiring learns it. */
  knowsForgotten(node: SimNode): boolean {
    return node.replicator.forgottenBy !== null || this.rules(node.index).selfForgotten
  }

  /** After quiescence: every live node has joined, and its member set names every live node. */
  async checkMembership(): Promise<void> {
    const live = this.sim.cluster.nodes.filter((node) => node.alive)
    for (const node of live) {
      await this.#readMembership(node)
      const rules = this.rules(node.index)
      if (!rules.joined) this.sim.internal(`node ${node.index} never became ready`)
      const missing = live.filter((other) => !rules.members.has(other.nodeId)).map((other) => other.index)
      if (missing.length > 0)
        this.sim.internal(`node ${node.index}'s member set misses live nodes ${missing.join(', ')}`)
      if (this.forgotten && this.retired !== null && rules.members.has(this.sim.cluster.node(this.retired).nodeId))
        this.sim.internal(`node ${node.index}'s member set still holds the forgotten node ${this.retired}`)
      // Quiet now: no change of the forgotten member can arrive any more, so on a node linked to
      // every live one (fresh acks) it no longer holds garbage collection back (a member never
      // heard from counts as the empty clock: nothing would be stable).
      const cut = node.replicator.stableCut()
      const linked = node.replicator.linkedPeers()
      const fresh = live.every((other) => other === node || linked.includes(other.nodeId))
      if (this.forgotten && fresh && Object.keys(cut).length === 0)
        this.sim.internal(
          `node ${node.index}: the forgotten member still holds garbage collection back after quiescence`,
        )
    }
  }
}
