/**
 * The simulated network: ordered, reliable links (as TCP and WebSockets are) between nodes, on the
 * virtual timeline. Every fault shows the way TCP would show it:
 *
 * - delay: each frame takes the link's latency plus jitter; each direction stays FIFO. A stall
 *   (congestion) holds a link's frames for a while; senders feel backpressure.
 * - drop: a lost frame breaks the link (a stream cannot skip a frame). Either both ends hear it
 *   now (a reset), or one end now and the other only at its peer timeout (half-open), or the frame
 *   arrived and the link broke just after (so its sender never learns it arrived).
 * - duplicate and reorder: only as a real network gives them: after a break the node redials
 *   (jittered exponential backoff) and the new link's `sync` makes the sender resend what was
 *   unacknowledged, while other links carry the same changes by other paths at other speeds.
 * - partition (any shape, a bridge too): a path that goes down holds its links' frames; if it
 *   comes back before an end's peer timeout, the frames flow on, late; otherwise each end closes
 *   the link at its own timeout (or when the path returns and a reset gets through). Dials across
 *   a down path time out.
 * - crash: with kill -9 the peer's kernel hears a reset at once (if the path is up); a power loss
 *   sends nothing, so peers notice at their timeout.
 *
 * Each node keeps a link to every other node, as the transport does for its configured peers, and
 * admits links by the transport's own rule (`keepsNewLink`, src/transport/core.ts: one link per
 * peer; of two links dialed by one node the newer wins, of links dialed by both the one dialed by
 * the lower id wins; the loser is closed with 4000).
 */
import type { NodeId } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import { keepsNewLink } from '../../src/transport/core.js'
import type { LinkEnd, LinkPair } from '../../src/transport/memory-link.js'
import type { SimCluster } from '../helpers/replication-sim.js'
import { dialerOf } from '../helpers/replication-sim.js'
import type { Timeline, TimedEvent } from './timeline.js'

export const PEER_TIMEOUT_MS = [2500, 5000] as const
export const CONNECT_TIMEOUT_MS = 2000
export const RECONNECT_BASE_MS = 200
export const RECONNECT_MAX_MS = 5000
export const LINK_HIGH_WATER_FRAMES = 8

export interface NetworkHost {
  readonly timeline: Timeline
  readonly cluster: SimCluster
  readonly random: () => number
  /** Something happened that async work may follow (for the settle loop). */
  activity(): void
  /** A line of the trace (hashed). */
  trace(line: string): void
  nemesis(fault: string, nodes: number[], detail?: string): void
  readonly stats: { links: number; duplicateLinks: number }
}

interface DialState {
  attempt: number
  timer: TimedEvent | null
  connecting: boolean
}

interface Direction {
  due: number[]
  event: TimedEvent | null
  lastDue: number
  /** Waiting for its path to come back. */
  held: boolean
}

export function summarize(message: PeerMessage): string {
  switch (message.type) {
    case 'sync':
      return `sync ${JSON.stringify(message.vc)} ${message.peers.join(',')}`
    case 'ack':
      return `ack ${JSON.stringify(message.vc)}`
    case 'changes':
      return `changes ${message.changes.map((change) => `${change.dot.node.slice(-2)}:${change.dot.seq}`).join(',')}`
    case 'snapshot-needed':
      return `snapshot-needed ${message.lacks === null ? 'new' : `${message.lacks.node.slice(-2)}:${message.lacks.seq}`}`
    case 'snapshot-request':
      return 'snapshot-request'
    case 'snapshot-offer':
      return `snapshot-offer ${JSON.stringify(message.vc)} ${message.keys} keys`
    case 'snapshot-reply':
      return `snapshot-reply ${message.accept ? 'accept' : 'refuse'}`
    case 'snapshot-chunk':
      return `snapshot-chunk ${message.seq} (${message.states.length} states)`
    case 'snapshot-ack':
      return `snapshot-ack ${message.seq}`
    case 'snapshot-end':
      return `snapshot-end after ${message.chunks} chunks`
    case 'awareness':
      return `awareness ${message.room} (${message.update.length} bytes)`
  }
}

export class Network {
  /** `up[a][b]`: the path between nodes a and b carries packets. */
  readonly up: boolean[][]
  /** `links[a][b]`: node a's current link end to node b (what its transport admitted). */
  readonly links: (LinkEnd | null)[][]
  /** Base one-way latency between two nodes. */
  readonly latency: number[][]
  /** Per-frame probability that a frame breaks its link. */
  dropRate = 0
  readonly #dial: DialState[][]
  readonly #directions = new Map<LinkEnd, Direction>()
  readonly #stalledUntil = new Map<LinkPair, number>()
  /** Ends that have not yet noticed their link broke, with their notice (and its timer). */
  readonly #unnoticed = new Map<LinkEnd, { notice: () => void; timer: TimedEvent | null }>()
  /** Live (unbroken) pairs whose path went down: the timers of each end's peer timeout. */
  readonly #timeouts = new Map<LinkEnd, TimedEvent>()
  readonly #host: NetworkHost

  constructor(host: NetworkHost, count: number) {
    this.#host = host
    const random = host.random
    this.up = matrix(count, () => true)
    this.links = matrix<LinkEnd | null>(count, () => null)
    this.#dial = matrix(count, () => ({ attempt: 0, timer: null, connecting: false }))
    this.latency = matrix(count, () => 0)
    for (let a = 0; a < count; a++) {
      for (let b = a + 1; b < count; b++) {
        const ms = 1 + Math.floor(random() * 25)
        ;(this.latency[a] as number[])[b] = ms
        ;(this.latency[b] as number[])[a] = ms
      }
    }
  }

  get count(): number {
    return this.up.length
  }

  isUp(a: number, b: number): boolean {
    return a === b || (this.up[a]?.[b] ?? false)
  }

  /** Every node starts keeping every other: each dials each, soon, in a random order. */
  start(): void {
    for (let a = 0; a < this.count; a++) {
      for (let b = 0; b < this.count; b++) {
        if (a === b) continue
        const dial = this.#dialState(a, b)
        dial.timer = this.#host.timeline.after(Math.floor(this.#host.random() * 300), `dial ${a}>${b}`, () =>
          this.#dialNow(a, b),
        )
      }
    }
  }

  // --- frames -------------------------------------------------------------------------------

  /** A frame joined `end`'s outbox: give it a delivery time (FIFO per direction). */
  queued(end: LinkEnd): void {
    this.#host.activity()
    const direction = this.#direction(end)
    const a = this.#indexOf(end.self)
    const b = this.#indexOf(end.other.self)
    const base = this.latency[a]?.[b] ?? 1
    const now = this.#host.timeline.nowMs
    const due = Math.max(
      now + base + Math.floor(this.#host.random() * (base / 2 + 1)),
      direction.lastDue,
      this.#stalledUntil.get(end.pair) ?? 0,
    )
    direction.lastDue = due
    direction.due.push(due)
    if (direction.event === null && !direction.held) this.#schedule(end, direction)
  }

  #direction(end: LinkEnd): Direction {
    let direction = this.#directions.get(end)
    if (direction === undefined) {
      direction = { due: [], event: null, lastDue: 0, held: false }
      this.#directions.set(end, direction)
    }
    return direction
  }

  #schedule(end: LinkEnd, direction: Direction): void {
    const due = direction.due[0]
    if (due === undefined) return
    direction.event = this.#host.timeline.at(due, `deliver ${end.pair.id}`, () => this.#deliver(end, direction))
  }

  #deliver(end: LinkEnd, direction: Direction): void {
    direction.event = null
    const pair = end.pair
    if (pair.closed || end.outbox.length === 0) {
      this.#directions.delete(end)
      return
    }
    const a = this.#indexOf(end.self)
    const b = this.#indexOf(end.other.self)
    if (!this.isUp(a, b)) {
      direction.held = true
      return
    }
    if (this.dropRate > 0 && this.#host.random() < this.dropRate) {
      this.breakLink(pair, end, 'drop')
      return
    }
    direction.due.shift()
    const scheduler = this.#host.cluster.scheduler
    scheduler.deliverFrom(end)
    this.#host.activity()
    if (direction.due.length > 0) this.#schedule(end, direction)
  }

  /**
   * A frame at `at` is lost and its link breaks: a reset both ends hear now, or a half-open break
   * (one end now, the other at its peer timeout), or the frame arrives and then the link breaks.
   */
  breakLink(pair: LinkPair, at: LinkEnd, why: string): void {
    const random = this.#host.random
    const roll = random()
    const a = this.#indexOf(at.self)
    const b = this.#indexOf(at.other.self)
    if (roll < 0.3) {
      this.#host.nemesis('drop', [a, b], `link ${pair.id}: ${why}, reset`)
      pair.cut()
    } else if (roll < 0.7) {
      const noticing = random() < 0.5 ? at : at.other
      this.#host.nemesis(
        'drop',
        [a, b],
        `link ${pair.id}: ${why}, half-open (${this.#indexOf(noticing.self)} notices first)`,
      )
      this.#halfClose(pair, noticing)
    } else {
      this.#host.nemesis('drop', [a, b], `link ${pair.id}: ${why} after delivery`)
      this.#host.cluster.scheduler.deliverFrom(at)
      pair.cut()
    }
    this.#host.activity()
  }

  /** `noticing` hears the break now; the other end at its peer timeout (or when told by a reset). */
  #halfClose(pair: LinkPair, noticing: LinkEnd): void {
    for (const end of pair.ends) {
      this.#host.timeline.cancel(this.#timeouts.get(end))
      this.#timeouts.delete(end)
    }
    const other = noticing.other
    const notice = pair.cutHalf(noticing)
    const timer = this.#host.timeline.after(this.#peerTimeout(), `timeout ${pair.id}`, () => this.#notice(other))
    this.#unnoticed.set(other, { notice, timer })
  }

  #notice(end: LinkEnd): void {
    const entry = this.#unnoticed.get(end)
    if (entry === undefined) return
    this.#unnoticed.delete(end)
    this.#host.timeline.cancel(entry.timer)
    entry.notice()
    this.#host.activity()
  }

  #peerTimeout(): number {
    const [min, max] = PEER_TIMEOUT_MS
    return min + Math.floor(this.#host.random() * (max - min))
  }

  /** Slows a live link: its frames wait until `untilMs`. */
  stall(pair: LinkPair, untilMs: number): void {
    this.#stalledUntil.set(pair, Math.max(untilMs, this.#stalledUntil.get(pair) ?? 0))
  }

  clearStalls(): void {
    this.#stalledUntil.clear()
  }

  // --- paths -----------------------------------------------------------------------------------

  /** Sets which paths are up. Links over paths that went down wait; over paths back up, resume. */
  setPaths(up: (a: number, b: number) => boolean): void {
    const timeline = this.#host.timeline
    for (let a = 0; a < this.count; a++) {
      for (let b = a + 1; b < this.count; b++) {
        const now = up(a, b)
        const was = this.isUp(a, b)
        ;(this.up[a] as boolean[])[b] = now
        ;(this.up[b] as boolean[])[a] = now
        if (was === now) continue
        for (const pair of this.#pairsBetween(a, b)) {
          for (const end of pair.ends) {
            if (!now) {
              // The path went down: each end closes the link at its own peer timeout, unless it returns first.
              if (!pair.closed && !this.#timeouts.has(end)) {
                this.#timeouts.set(
                  end,
                  timeline.after(this.#peerTimeout(), `timeout ${pair.id}`, () => this.#timedOut(pair, end)),
                )
              }
            } else {
              timeline.cancel(this.#timeouts.get(end))
              this.#timeouts.delete(end)
              const direction = this.#directions.get(end)
              if (direction !== undefined && direction.held) {
                direction.held = false
                const nowMs = timeline.nowMs
                direction.due = direction.due.map((due) => Math.max(due, nowMs + (this.latency[a]?.[b] ?? 1)))
                if (direction.event === null) this.#schedule(end, direction)
              }
            }
          }
        }
        // Ends that missed a break learn of it once a reset can reach them.
        if (now) {
          for (const [end, entry] of [...this.#unnoticed]) {
            const x = this.#indexOf(end.self)
            const y = this.#indexOf(end.other.self)
            if ((x === a && y === b) || (x === b && y === a)) {
              timeline.cancel(entry.timer)
              entry.timer = timeline.after(2 * (this.latency[a]?.[b] ?? 1), `reset ${end.pair.id}`, () =>
                this.#notice(end),
              )
            }
          }
        }
      }
    }
  }

  #timedOut(pair: LinkPair, end: LinkEnd): void {
    this.#timeouts.delete(end)
    if (this.#unnoticed.has(end)) {
      this.#notice(end)
      return
    }
    if (pair.closed) return
    const other = end.other
    this.#host.timeline.cancel(this.#timeouts.get(other))
    this.#timeouts.delete(other)
    const notice = pair.cutHalf(end)
    this.#host.activity()
    const a = this.#indexOf(end.self)
    const b = this.#indexOf(other.self)
    // The other end notices at its own timeout, or at once when the path is back (a reset).
    const timer = this.#host.timeline.after(
      this.isUp(a, b) ? 2 * (this.latency[a]?.[b] ?? 1) : this.#peerTimeout(),
      `timeout ${pair.id}`,
      () => this.#notice(other),
    )
    this.#unnoticed.set(other, { notice, timer })
  }

  // --- crashes ---------------------------------------------------------------------------------

  /** Node `index` died: its ends close now; peers hear a reset now (kill -9, path up) or time out. */
  crashed(index: number, kind: 'process' | 'power'): void {
    const id = this.#idOf(index)
    for (const [end] of [...this.#unnoticed]) if (end.self === id) this.#notice(end)
    for (const pair of [...this.#host.cluster.scheduler.pairs]) {
      if (pair.dialer.self !== id && pair.acceptor.self !== id) continue
      const mine = pair.endOf(id)
      const peer = this.#indexOf(mine.other.self)
      for (const end of pair.ends) {
        this.#host.timeline.cancel(this.#timeouts.get(end))
        this.#timeouts.delete(end)
      }
      if (kind === 'process' && this.isUp(index, peer)) pair.cut()
      else this.#halfClose(pair, mine)
    }
    for (let peer = 0; peer < this.count; peer++) {
      const dial = this.#dial[index]?.[peer]
      if (dial === undefined) continue
      this.#host.timeline.cancel(dial.timer)
      dial.timer = null
      dial.connecting = false
      dial.attempt = 0
      ;(this.links[index] as (LinkEnd | null)[])[peer] = null
    }
    this.#host.activity()
  }

  /** Node `index` runs again: it dials every peer soon. */
  restarted(index: number): void {
    for (let peer = 0; peer < this.count; peer++) {
      if (peer === index) continue
      const dial = this.#dialState(index, peer)
      this.#host.timeline.cancel(dial.timer)
      dial.timer = this.#host.timeline.after(Math.floor(this.#host.random() * 100), `dial ${index}>${peer}`, () =>
        this.#dialNow(index, peer),
      )
    }
  }

  // --- dialing -------------------------------------------------------------------------------

  #dialState(a: number, b: number): DialState {
    return this.#dial[a]?.[b] as DialState
  }

  #scheduleDial(a: number, b: number, wasLinked: boolean): void {
    const node = this.#host.cluster.node(a)
    const dial = this.#dialState(a, b)
    if (!node.alive || dial.timer !== null || dial.connecting) return
    if (wasLinked) dial.attempt = 0
    const step = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** dial.attempt)
    const delay = step / 2 + Math.floor(this.#host.random() * (step / 2))
    dial.attempt++
    dial.timer = this.#host.timeline.after(delay, `dial ${a}>${b}`, () => this.#dialNow(a, b))
  }

  #dialNow(a: number, b: number): void {
    const dial = this.#dialState(a, b)
    dial.timer = null
    const cluster = this.#host.cluster
    const dialer = cluster.node(a)
    if (!dialer.alive || dial.connecting) return
    const linked = this.links[a]?.[b]
    // Its peer is linked already (perhaps it dialed us): wait until that link ends.
    if (linked !== null && linked !== undefined && !linked.closed) return
    dial.connecting = true
    const generation = dialer.generation
    const rtt = 2 * (this.latency[a]?.[b] ?? 1)
    const acceptor = cluster.node(b)
    const ready = this.isUp(a, b)
    const delay = ready ? (acceptor.alive ? 1.5 * rtt : rtt) : CONNECT_TIMEOUT_MS
    const acceptorGeneration = acceptor.generation
    this.#host.timeline.after(delay, `connect ${a}>${b}`, () => {
      if (dialer.generation !== generation || !dialer.alive) return
      dial.connecting = false
      if (!this.isUp(a, b) || !acceptor.alive || acceptor.generation !== acceptorGeneration) {
        this.#scheduleDial(a, b, false)
        return
      }
      this.#establish(a, b)
    })
  }

  #establish(a: number, b: number): void {
    const cluster = this.#host.cluster
    const dialer = cluster.node(a)
    const acceptor = cluster.node(b)
    const pair = cluster.scheduler.pair(
      { nodeId: dialer.nodeId, url: dialer.url },
      { nodeId: acceptor.nodeId, url: acceptor.url },
      { highWater: LINK_HIGH_WATER_FRAMES },
    )
    this.#host.trace(`link ${pair.id} ${a}>${b}`)
    this.#host.stats.links++
    for (const end of pair.ends) {
      const self = this.#indexOf(end.self)
      const peer = this.#indexOf(end.other.self)
      const generation = cluster.node(self).generation
      end.onClose(() => {
        this.#host.activity()
        const admitted = this.links[self]?.[peer] === end
        if (admitted) (this.links[self] as (LinkEnd | null)[])[peer] = null
        if (cluster.node(self).generation === generation) this.#scheduleDial(self, peer, admitted)
      })
    }
    // The acceptor admits first (it hears the dialer's proof first), then the dialer.
    for (const end of [pair.acceptor, pair.dialer]) {
      if (pair.closed) return
      const self = this.#indexOf(end.self)
      const peer = this.#indexOf(end.other.self)
      const existing = this.links[self]?.[peer] ?? null
      if (existing !== null && !existing.closed) {
        if (!keepsNewLink(dialerOf(end), dialerOf(existing))) {
          end.close(4000, 'already linked')
          this.#host.stats.duplicateLinks++
          this.#host.trace(`refuse ${pair.id} at ${self}`)
          return
        }
        ;(this.links[self] as (LinkEnd | null)[])[peer] = end
        this.#host.stats.duplicateLinks++
        existing.close(4000, 'replaced by a newer link')
      }
      ;(this.links[self] as (LinkEnd | null)[])[peer] = end
    }
    acceptor.replicator.addLink(pair.acceptor)
    if (!pair.closed) dialer.replicator.addLink(pair.dialer)
    this.#host.activity()
  }

  // --- helpers ---------------------------------------------------------------------------------

  #pairsBetween(a: number, b: number): LinkPair[] {
    const x = this.#idOf(a)
    const y = this.#idOf(b)
    return [...this.#host.cluster.scheduler.pairs].filter(
      (pair) =>
        (pair.dialer.self === x && pair.acceptor.self === y) || (pair.dialer.self === y && pair.acceptor.self === x),
    )
  }

  /** Live pairs, in creation order. */
  livePairs(): LinkPair[] {
    return [...this.#host.cluster.scheduler.pairs]
  }

  /** Frames queued on live links. */
  inFlight(): number {
    return this.#host.cluster.scheduler.pending
  }

  /**
   * Link ends whose break their node has not noticed yet (half-open): such a node still counts
   * the peer as linked while nothing flows, so the run is not quiet until each notices (at its
   * peer timeout at the latest) and redials.
   */
  unnoticedBreaks(): number {
    return this.#unnoticed.size
  }

  #idOf(index: number): NodeId {
    return this.#host.cluster.node(index).nodeId
  }

  #indexOf(id: NodeId): number {
    return Number.parseInt(id, 16) - 1
  }
}

function matrix<T>(count: number, make: () => T): T[][] {
  return Array.from({ length: count }, () => Array.from({ length: count }, make))
}
