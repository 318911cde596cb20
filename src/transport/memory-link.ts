/**
 * In-memory links: the one in-memory link layer. Two ends joined by per-direction queues of
 * encoded frames that a seeded scheduler empties, with no socket and no timer. The simulator and
 * the replication tests hand the ends straight to replicators (`PeerLinkLike`, no handshake);
 * `MemoryTransport` (memory.ts) attaches a transport connection to each end instead (`Channel`),
 * so the handshake and the conformance suite run over the same queues.
 *
 * - Every message is encoded by the sending end's `LinkCodec` on `send` and decoded by the
 *   receiving end's on delivery, so what passes is exactly what the codec lets through; an end
 *   with a connection gets the bytes themselves, and its connection decodes them.
 * - Each direction of a link is FIFO (a WebSocket is); the scheduler picks which direction
 *   delivers next, weighted by each link's `weight`, so links of different speed reorder messages
 *   across links. A direction can be held (nothing delivered) and released.
 * - `drained()` resolves once the sender's queue is below `highWater` frames, or the link closed.
 * - `close()` closes both ends once: frames still queued are lost, the closing end hears its
 *   `onClose` at once, the other end on the next microtask (as the real transport does), each
 *   exactly once, with the same code. A transport connection's polite `end()` closes after the
 *   frames it queued, as a WebSocket close frame does (a welcome before a 4009 arrives).
 *   `cut()` is the network failing: both ends hear 1006.
 *   `cutHalf(end)` is a half-open link: the network fails, only `end` notices now; the other end
 *   keeps "sending" into the void until `notice()` (its peer timeout) closes it too.
 * - Messages that arrive before an end has an `onMessage` listener wait for it.
 * - `onQueued` (a scheduler option) hears each frame as it joins an outbox, for a driver that
 *   delivers on a timeline (test/sim) or at once (memory.ts) instead of calling `run`/`deliverOne`.
 */
import type { NodeId } from '../clock/index.js'
import { dotKey } from '../clock/index.js'
import type { PeerMessage } from '../codec/peer.js'
import type { PeerLink } from '../codec/peer.js'
import { LinkCodec } from '../codec/link-codec.js'
import { PROTOCOL_VERSION, isHandshakeMessage } from '../codec/peer.js'
import type { Channel, Connection } from './connection.js'

export const LINK_HIGH_WATER_FRAMES_DEFAULT = 8
/** Turns of the event loop without any frame to deliver before the scheduler calls it idle. */
export const IDLE_TURNS = 6

export interface Peer {
  readonly nodeId: NodeId
  readonly url: string | null
}

/** One delivered message, as the scheduler's trace records it. */
export interface Delivery {
  readonly from: NodeId
  readonly to: NodeId
  readonly link: number
  readonly message: PeerMessage
}

export interface PairOptions {
  /** Relative speed of this link against others (both directions). Default 1. */
  weight?: number
  highWater?: number
}

function macroturn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * One end of a link: what a replicator holds, or the channel a transport connection writes to.
 * `nodeId` and `url` name the node at the other end.
 */
export class LinkEnd implements Omit<PeerLink, 'id'>, Channel {
  readonly nodeId: NodeId
  readonly url: string | null
  readonly direction: 'dialed' | 'accepted'
  /** The node this end belongs to. */
  readonly self: NodeId
  other!: LinkEnd
  /** Frames sent from this end and not yet delivered to the other. */
  readonly outbox: Uint8Array[] = []
  /** This end's frame codec: it encodes what this end sends and decodes what it is delivered. */
  readonly codec = new LinkCodec(PROTOCOL_VERSION)
  held = false
  framesSent = 0
  /** How often each change (by dot) was delivered from this end to the other. */
  readonly changesDelivered = new Map<string, number>()
  closeCode: number | null = null
  closeReason: string | null = null
  /** The transport connection on this end (MemoryTransport), which takes the frames' bytes. */
  connection: Connection | null = null
  /** Frames are handed over at once: a connection's own queue is never behind. */
  readonly bufferedBytes = 0
  #messageListeners: ((message: PeerMessage) => void)[] = []
  #closeListeners: ((code: number, reason: string) => void)[] = []
  #unheard: PeerMessage[] = []
  #drainWaiters: (() => void)[] = []
  /** A polite end waiting for this end's queue to be delivered. */
  #endAfterQueue: { code: number; reason: string } | null = null

  constructor(
    readonly pair: LinkPair,
    self: Peer,
    remote: Peer,
    direction: 'dialed' | 'accepted',
  ) {
    this.self = self.nodeId
    this.nodeId = remote.nodeId
    this.url = remote.url
    this.direction = direction
  }

  /** This end has heard its link close (the other end may not have yet). */
  get closed(): boolean {
    return this.closeCode !== null
  }

  send(message: PeerMessage): boolean {
    if (this.closed) return false
    this.#queue(this.codec.encode(message))
    return true
  }

  #queue(bytes: Uint8Array): void {
    this.framesSent++
    // On a broken link that this end has not noticed yet, frames go nowhere.
    if (!this.pair.closed) {
      this.outbox.push(bytes)
      this.pair.scheduler.options.onQueued?.(this)
    }
  }

  drained(): Promise<void> {
    if (this.pair.closed || this.outbox.length < this.pair.highWater) return Promise.resolve()
    return new Promise((resolve) => this.#drainWaiters.push(resolve))
  }

  onMessage(listener: (message: PeerMessage) => void): void {
    this.#messageListeners.push(listener)
    if (this.#messageListeners.length === 1 && this.#unheard.length > 0) {
      const waiting = this.#unheard
      this.#unheard = []
      for (const message of waiting) this.receive(message)
    }
  }

  onClose(listener: (code: number, reason: string) => void): void {
    if (this.closeCode === null) this.#closeListeners.push(listener)
    else {
      const code = this.closeCode
      const reason = this.closeReason ?? ''
      queueMicrotask(() => listener(code, reason))
    }
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return
    this.pair.close(code, reason, this)
  }

  /** Channel: a connection's encoded frame (handshake frames included). */
  write(bytes: Uint8Array, written: () => void): void {
    if (!this.closed) this.#queue(bytes.slice())
    written()
  }

  /** Channel: the connection ends the link. */
  end(code: number, reason: string): void {
    if (this.outbox.length === 0 || this.pair.closed) this.close(code, reason)
    else this.#endAfterQueue = { code, reason }
  }

  /** Channel: the connection drops the link (as a socket reset). */
  destroy(): void {
    this.close(1006, '')
  }

  /** @internal A decoded frame from the other end. */
  receive(message: PeerMessage): void {
    if (this.pair.closed) return
    if (this.#messageListeners.length === 0) {
      this.#unheard.push(message)
      return
    }
    for (const listener of this.#messageListeners) {
      if (this.pair.closed) return
      listener(message)
    }
  }

  /** @internal Called after a frame of this end's outbox left it. */
  releaseIfDrained(): void {
    if (this.outbox.length < this.pair.highWater || this.pair.closed)
      for (const resolve of this.#drainWaiters.splice(0)) resolve()
    const ending = this.#endAfterQueue
    if (ending !== null && this.outbox.length === 0) {
      this.#endAfterQueue = null
      this.close(ending.code, ending.reason)
    }
  }

  /** @internal The link ended: listeners hear it once. */
  ended(code: number, reason: string): void {
    if (this.closeCode !== null) return
    this.closeCode = code
    this.closeReason = reason
    this.#unheard = []
    this.outbox.length = 0
    for (const resolve of this.#drainWaiters.splice(0)) resolve()
    for (const listener of this.#closeListeners.splice(0)) listener(code, reason)
    this.connection?.channelEnded(code, reason)
  }
}

/** Both ends of one link: `dialer` belongs to the node that dialed, `acceptor` to the other. */
export class LinkPair {
  readonly dialer: LinkEnd
  readonly acceptor: LinkEnd
  readonly highWater: number
  weight: number
  /** Carries no more frames (closed, cut, or broken half-open). */
  closed = false

  constructor(
    readonly scheduler: LinkScheduler,
    readonly id: number,
    from: Peer,
    to: Peer,
    options: PairOptions,
  ) {
    this.dialer = new LinkEnd(this, from, to, 'dialed')
    this.acceptor = new LinkEnd(this, to, from, 'accepted')
    this.dialer.other = this.acceptor
    this.acceptor.other = this.dialer
    this.weight = options.weight ?? 1
    this.highWater = options.highWater ?? LINK_HIGH_WATER_FRAMES_DEFAULT
  }

  get ends(): [LinkEnd, LinkEnd] {
    return [this.dialer, this.acceptor]
  }

  /** The end that belongs to `node`. */
  endOf(node: NodeId): LinkEnd {
    if (this.dialer.self === node) return this.dialer
    if (this.acceptor.self === node) return this.acceptor
    throw new Error(`link ${this.id} does not belong to ${node}`)
  }

  /** Closes both ends once; `by` (the end that called close) hears it at once, the other later. */
  close(code: number, reason: string, by?: LinkEnd): void {
    if (this.closed) {
      // Broken already (half-open): whoever closes now only ends their own side.
      if (by !== undefined) by.ended(code, reason)
      else for (const end of this.ends) end.ended(code, reason)
      return
    }
    this.closed = true
    this.scheduler.forget(this)
    for (const end of this.ends) end.outbox.length = 0
    if (by === undefined) {
      for (const end of this.ends) end.ended(code, reason)
      return
    }
    by.ended(code, reason)
    queueMicrotask(() => by.other.ended(code, reason))
  }

  /** The network fails: queued frames are lost and both ends hear 1006 at once. */
  cut(): void {
    this.close(1006, 'cut')
  }

  /**
   * The network fails and only `noticing` hears it now; the other end believes the link is up
   * (what it sends is lost) until the returned `notice()` closes it with 1006.
   */
  cutHalf(noticing: LinkEnd): () => void {
    if (this.closed) return () => noticing.other.ended(1006, 'peer timeout')
    this.closed = true
    this.scheduler.forget(this)
    for (const end of this.ends) end.outbox.length = 0
    noticing.ended(1006, 'cut')
    return () => noticing.other.ended(1006, 'peer timeout')
  }
}

/**
 * Owns every live link, the PRNG and the order of delivery. Deterministic for a seed, given the
 * same sequence of calls: no timers, no real I/O.
 */
export class LinkScheduler {
  readonly pairs = new Set<LinkPair>()
  /** Every delivered message, in order (kept only when `trace` is true). */
  readonly trace: Delivery[] = []
  delivered = 0
  #nextId = 1

  constructor(
    /** The seeded source of every choice the scheduler makes. */
    readonly random: () => number,
    readonly options: {
      trace?: boolean
      onDeliver?: (delivery: Delivery) => void
      /** Called after a frame joins `end.outbox` (a driver that schedules each delivery itself). */
      onQueued?: (end: LinkEnd) => void
    } = {},
  ) {}

  /** A new link from `from` (dialer) to `to` (acceptor). The caller hands the ends to replicators. */
  pair(from: Peer, to: Peer, options: PairOptions = {}): LinkPair {
    const pair = new LinkPair(this, this.#nextId++, from, to, options)
    this.pairs.add(pair)
    return pair
  }

  /** @internal */
  forget(pair: LinkPair): void {
    this.pairs.delete(pair)
  }

  /** Frames waiting, over all live links and directions (held ones included). */
  get pending(): number {
    let count = 0
    for (const pair of this.pairs) count += pair.dialer.outbox.length + pair.acceptor.outbox.length
    return count
  }

  /** Delivers one frame from a randomly chosen (weighted) direction that has one; false if none. */
  deliverOne(): boolean {
    const ready: LinkEnd[] = []
    let total = 0
    for (const pair of this.pairs) {
      for (const end of pair.ends) {
        if (end.outbox.length > 0 && !end.held) {
          ready.push(end)
          total += pair.weight
        }
      }
    }
    if (ready.length === 0) return false
    let pick = this.random() * total
    let chosen = ready[ready.length - 1] as LinkEnd
    for (const end of ready) {
      pick -= end.pair.weight
      if (pick < 0) {
        chosen = end
        break
      }
    }
    this.#deliverFrom(chosen)
    return true
  }

  /** Delivers the next frame queued at `end` (for tests that steer one link by hand). */
  deliverFrom(end: LinkEnd): boolean {
    if (end.outbox.length === 0 || end.pair.closed) return false
    this.#deliverFrom(end)
    return true
  }

  /**
   * Delivers frames until nothing is left to deliver for `IDLE_TURNS` turns of the event loop
   * (stores commit and sessions read their logs in between), or `maxDeliveries` were delivered.
   * Returns how many were delivered.
   */
  async run(options: { maxDeliveries?: number } = {}): Promise<number> {
    const max = options.maxDeliveries ?? Infinity
    let count = 0
    let idle = 0
    while (count < max) {
      if (this.deliverOne()) {
        count++
        idle = 0
        // Sometimes let the stores and sessions run between two deliveries, sometimes not.
        if (this.random() < 0.5) await macroturn()
        else await Promise.resolve()
        continue
      }
      if (idle >= IDLE_TURNS) break
      idle++
      await macroturn()
    }
    return count
  }

  #deliverFrom(end: LinkEnd): void {
    const bytes = end.outbox.shift() as Uint8Array
    const connection = end.other.connection
    if (connection !== null) {
      this.delivered++
      connection.receive(bytes)
      end.releaseIfDrained()
      return
    }
    const frame = end.other.codec.decode(bytes)
    if (isHandshakeMessage(frame)) throw new Error(`a ${frame.type} frame on an open link`)
    this.delivered++
    if (frame.type === 'changes') {
      for (const change of frame.changes) {
        const key = dotKey(change.dot)
        end.changesDelivered.set(key, (end.changesDelivered.get(key) ?? 0) + 1)
      }
    }
    const delivery: Delivery = { from: end.self, to: end.other.self, link: end.pair.id, message: frame }
    if (this.options.trace === true) this.trace.push(delivery)
    this.options.onDeliver?.(delivery)
    end.other.receive(frame)
    end.releaseIfDrained()
  }
}
