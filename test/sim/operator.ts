/**
 * The operator faults of the simulator (docs/testing.md, level L1; issue 12), the faults the seq
 * guard (src/replication/seq-guard.ts) is there for:
 *
 * - `restore`: at a random moment a node's disk is copied (`MemoryDisk.copy()`, as a backup or a
 *   VM snapshot takes it); a few seconds later the node is stopped and started again on that older
 *   copy. Its own changes made since the copy then exist only on its peers: the guard must see a
 *   peer claim more of it than it holds, refuse own writes (`MESHKV_ERR_RECOVERING`) until the
 *   peers sent them back, and only then mint the next unused seq. The fault is shaped as an
 *   operator's restore is, and as the guard's documented limit asks: the restore waits until
 *   every own change of the node is held by a live member its copy names (else the restore would lose
 *   acknowledged writes, which no guard can undo), every member is up, and from the restore until
 *   the restored node may write again its paths are up and no member crashes (no partition, no
 *   crash, no retirement). A restored node that reaches no peer within the grace writes anyway
 *   (the known limit); the shape keeps the run out of it.
 * - `clone`: a node's disk is copied and a second process with the same node id starts on it while
 *   the original runs, and dials the others. The transport's rule (close code 4009): a peer that
 *   holds a live link from one process of an id and hears a second process of that id tells both
 *   (it closes the live link and refuses the new one, with 4009), and each marks its guard
 *   `conflict` (`seqGuard.markConflict`): neither takes writes. The sim emulates that admission:
 *   the clone dials only while every other live node holds a live link from the original, so every
 *   peer it reaches sees the conflict, and no link of the clone is ever admitted (it replicates
 *   nothing). The conflict is sticky until restart: at the final heal the clone is stopped for good
 *   and the original restarted.
 *
 * Both are on in every run (the shrinker may turn them off). After quiescence every live node's
 * guard must be writable again.
 */
import type { Replicator } from '../../src/replication/index.js'
import { MemoryBackend } from '../../src/storage/index.js'
import type { MemoryDisk, Store } from '../../src/storage/index.js'
import type { SimNode } from '../helpers/replication-sim.js'
import type { Simulation } from './simulation.js'

/** How often a fault whose moment has come but whose shape does not hold yet looks again, and how many times. */
const RETRY_MS = 500
const TRIES_MAX = 40

export const CONFLICT_CLOSE_CODE = 4009

interface Clone {
  index: number
  store: Store
  replicator: Replicator
}

export class OperatorFaults {
  /** The restored node, from its restore until its guard lets it write again. */
  #holding: number | null = null
  #clone: Clone | null = null

  constructor(readonly sim: Simulation) {}

  /** While a restored node checks with its peers: no partition, crash or retirement. */
  holding(): boolean {
    if (this.#holding === null) return false
    const node = this.sim.cluster.node(this.#holding)
    if (!node.alive || this.sim.chaos.restarting.has(node.index) || !node.replicator.seqGuard.writable) return true
    const status = node.replicator.seqGuard.status
    // The restored node got back own changes it lacked (a peer claimed them; they were echoed back).
    if (status.claimedSeq > status.startSeq) this.sim.stats.recoveries++
    this.sim.trace(`restored ${node.index} writable at own seq ${this.#ownSeq(node)}`)
    this.#holding = null
    return false
  }

  /** Schedules both faults (when on) at random moments of the chaos phase. */
  start(): void {
    const faults = this.sim.config.faults
    if (faults.restore)
      this.sim.timeline.after(500 + Math.floor(this.sim.random() * 6000), 'backup', () => this.#backup(0))
    if (faults.clone)
      this.sim.timeline.after(500 + Math.floor(this.sim.random() * 8000), 'clone', () => this.#startClone(0))
  }

  /** Nodes that may be copied: up, started with the run, not retired. */
  #candidates(): SimNode[] {
    const { members, chaos } = this.sim
    return this.sim.cluster.nodes.filter(
      (node) =>
        node.alive &&
        !chaos.restarting.has(node.index) &&
        node.index !== members.joiner &&
        node.index !== members.retired &&
        node.index !== this.#clone?.index,
    )
  }

  #retry(label: string, tries: number, again: (tries: number) => void): void {
    if (this.sim.phase !== 'chaos') return
    if (tries + 1 >= TRIES_MAX) return this.sim.trace(`${label}: gave up`)
    this.sim.timeline.after(RETRY_MS, label, () => again(tries + 1))
  }

  // --- restore -------------------------------------------------------------------------------

  #backup(tries: number): void {
    const candidates = this.#candidates()
    if (candidates.length === 0) return this.#retry('backup', tries, (next) => this.#backup(next))
    const node = this.sim.pick(candidates)
    const copy = node.backend.disk.copy()
    const seq = this.#ownSeq(node)
    this.sim.nemesis('backup', [node.index], `disk copied at own seq ${seq}`)
    const after = 1000 + Math.floor(this.sim.random() * 5000)
    this.sim.timeline.after(after, `restore ${node.index}`, () => this.#restore(node, copy, 0))
  }

  #ownSeq(node: SimNode): number {
    return node.alive ? (node.store.vc[node.nodeId] ?? 0) : 0
  }

  /**
   * The restore's shape (see the header): the node and every other member up, and every own
   * change of the node held by some live member the copy names.
   */
  #mayRestore(node: SimNode): boolean {
    const { cluster, members, chaos } = this.sim
    if (!node.alive || chaos.restarting.has(node.index) || node.index === this.#clone?.index) return false
    if (this.#holding !== null || members.retired === node.index) return false
    const others = cluster.nodes.filter(
      (other) => other !== node && other.index !== members.retired && !(other.index === members.joiner && !other.alive),
    )
    if (!others.every((other) => other.alive && !chaos.restarting.has(other.index))) return false
    const own = this.#ownSeq(node)
    // A holder the restored node waits for: a member it knows from any copy of its disk (one the
    // run started with). A node admitted later (the joiner) may be the only holder, through a
    // snapshot, and known to no member the copy names: then nothing tells the restored node to
    // wait for it (seed 777204), the guard's documented limit.
    const knownToCopy = others.filter((other) => other.index < this.sim.config.nodes)
    return own === 0 || knownToCopy.some((other) => (other.store.vc[node.nodeId] ?? 0) >= own)
  }

  #restore(node: SimNode, copy: MemoryDisk, tries: number): void {
    if (this.sim.phase !== 'chaos') return
    if (!this.#mayRestore(node))
      return this.#retry(`restore ${node.index}`, tries, (next) => this.#restore(node, copy, next))
    const { chaos } = this.sim
    this.#holding = node.index
    chaos.calm()
    const seq = this.#ownSeq(node)
    chaos.crash(node.index, 'process', false, true)
    node.backend = new MemoryBackend(copy)
    const copied = this.sim.diskSeq(node, node.nodeId)
    this.sim.stats.restores++
    if (copied < seq) this.sim.stats.rolledBack++
    this.sim.nemesis('restore', [node.index], `from own seq ${seq} back to ${copied}`)
    // The operator starts it again at once; its peers still hold its changes since the copy.
    chaos.restart(node.index, 'restore')
    this.#watchHold()
  }

  /** Looks at the restored node until it may write (so the hold ends then, faults or not). */
  #watchHold(): void {
    if (this.holding()) this.sim.timeline.after(RETRY_MS, 'restored?', () => this.#watchHold())
  }

  // --- clone ---------------------------------------------------------------------------------

  /** The original's links at every other live node are live: each peer the clone dials sees both. */
  #linkedEverywhere(node: SimNode): boolean {
    const others = this.sim.cluster.nodes.filter((other) => other !== node && other.alive)
    if (others.length === 0) return false
    return others.every((other) => {
      const end = this.sim.network.links[other.index]?.[node.index]
      return end !== null && end !== undefined && !end.closed
    })
  }

  #startClone(tries: number): void {
    if (this.sim.phase !== 'chaos' || this.#clone !== null) return
    const candidates = this.#candidates().filter((node) => this.#linkedEverywhere(node))
    if (candidates.length === 0) return this.#retry('clone', tries, (next) => this.#startClone(next))
    const node = this.sim.pick(candidates)
    const copy = node.backend.disk.copy()
    this.sim.activity()
    void this.sim.cluster.spawn(node.index, new MemoryBackend(copy)).then(
      (process) => this.#cloned(node, process),
      (error: unknown) => this.sim.internal(`the clone of node ${node.index} could not start: ${String(error)}`),
    )
  }

  /** The clone runs: it dials every peer, and every peer that holds the original's live link tells both. */
  #cloned(node: SimNode, process: { store: Store; replicator: Replicator }): void {
    this.#clone = { index: node.index, ...process }
    this.sim.stats.clones++
    this.sim.nemesis('clone', [node.index], `a second process of node ${node.index} on a copy of its disk`)
    this.sim.activity()
    if (!node.alive || !this.#linkedEverywhere(node)) {
      // The original went down (or lost a link) while the copy started: the clone's dials would be
      // admitted as the node's own; the operator stops the clone before it dials.
      this.sim.nemesis('stop clone', [node.index], 'before it dialed')
      return void this.#stopClone()
    }
    for (const peer of this.sim.cluster.nodes) {
      if (peer === node || !peer.alive) continue
      const held = this.sim.network.links[peer.index]?.[node.index]
      const message = `two live processes of node ${node.nodeId} linked to ${peer.nodeId}`
      held?.close(CONFLICT_CLOSE_CODE, message)
      node.replicator.seqGuard.markConflict(peer.nodeId, message)
      process.replicator.seqGuard.markConflict(peer.nodeId, message)
    }
  }

  async #stopClone(): Promise<void> {
    const clone = this.#clone
    if (clone === null) return
    this.#clone = null
    await clone.replicator.close().catch(() => {})
    await clone.store.close().catch(() => {})
    this.sim.activity()
  }

  /** The final heal: the clone stops for good, and the original restarts (a conflict lasts until restart). */
  heal(): void {
    const clone = this.#clone
    this.#holding = null
    if (clone === null) return
    this.sim.nemesis('stop clone', [clone.index], 'for good; the original restarts')
    void this.#stopClone()
    const { chaos } = this.sim
    const original = this.sim.cluster.node(clone.index)
    if (original.alive) chaos.crash(clone.index, 'process')
    chaos.restart(clone.index)
  }

  /** After quiescence: every live node may write again (no guard left recovering, diverged or in conflict). */
  checkGuards(): void {
    for (const node of this.sim.cluster.nodes) {
      if (!node.alive) continue
      const status = node.replicator.seqGuard.status
      if (status.state !== 'writable')
        this.sim.internal(
          `node ${node.index}'s seq guard is ${status.state} after quiescence: ${status.reason ?? ''} (claimed ${status.claimedSeq} by ${status.claimedBy ?? '-'})`,
        )
    }
  }
}
