/**
 * Acks say what is on disk (docs/consistency.md, "What is durable when"): what is durable is
 * acked, and changes applied past it once one fsync (shared with every other waiter, and with the
 * node's next group commit) has made them durable. Only an ack that says more than the last one
 * on its link is sent.
 *
 * When: at once to a peer that waits for them, else gathered. A peer waits when it said so on the
 * `changes` frame (protocol version 7: a write with a write concern past `w=1` is in flight on
 * it, `ChangesMessage.ack`) or speaks an older version; it gets its ack as soon as the changes it
 * flagged are durable. Every other ack goes out at most `ACK_GATHER_MS` after the changes it
 * names were applied (one ack, and one fsync when the node does not fsync each batch, for
 * everything applied meanwhile), and on the once-a-second tick.
 * Nothing but write concern waits on an ack: stability, lag and the sender's cursor only read
 * what acks say, a few milliseconds later. At 1,000 writes/s on three nodes each receiver acked
 * every change to both of its peers, and acks were a fifth of the bytes on the wire.
 *
 * An ack carries only the entries that moved since the last ack on its link (protocol version 6):
 * on a 3-node cluster a whole clock is three 16-character ids with their seqs, and acks came to
 * half the bytes on the wire. The receiver joins it into what the link said before
 * (`PeerSession.ackedBy`). That is exact because the durable clock only grows within a process,
 * and every link starts with a `sync` carrying the whole clock: an entry left out is one equal to
 * the last ack's, which the peer already has from that ack or from a `sync` sent after it. An ack
 * that overtakes the first `sync` of a new link says less than the node holds, never more (the
 * `sync` then replaces it).
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcCovers, vcGet, vcWithDot } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import { isMeshError } from '../errors.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'

/** Longest an ack nobody waits for is held back to be gathered with later ones. */
export const ACK_GATHER_MS = 10
/** A peer's wait (its flagged changes) not renewed for this long is dropped: those go gathered. */
const WANT_STALE_MS = 1000
/** The first protocol version that gathers acks (older peers get each ack at once). */
const GATHERING_VERSION = 7

export interface DurableAcksOptions {
  store: ReplicaStore
  logger: Logger
  now: () => number
  /** The links acks go to. */
  links: () => Iterable<PeerLinkLike>
  closed: () => boolean
  /**
   * Runs `run` once after `ms` (a timer). Without it, gathered acks go out on the next `tick()`.
   */
  later?: ((run: () => void, ms: number) => void) | undefined
}

export class DurableAcks {
  readonly #options: DurableAcksOptions
  /** What each link was last told (acks are differences from it). */
  readonly #told = new WeakMap<PeerLinkLike, VectorClock>()
  /** Links that wait for acks: the changes they flagged, and when they last flagged any. */
  readonly #wanted = new Map<PeerLinkLike, { vc: VectorClock; atMs: number }>()
  #gathering = false
  /** The changes of flagged frames: applied in a batch that is fsynced at once (`awaited`). */
  readonly #awaited = new WeakSet<Change>()
  /** Writes in flight here that wait for acks (`expect`): frames sent meanwhile ask for them. */
  #expected = 0

  constructor(options: DurableAcksOptions) {
    this.#options = options
  }

  /** A write that will wait for acks is in flight until the returned function is called. */
  expect(): () => void {
    this.#expected++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#expected--
    }
  }

  /** Whether a write here waits for acks: this node's `changes` frames ask for them (`ChangesMessage.ack`). */
  get expected(): boolean {
    return this.#expected > 0
  }

  /** `link` sent `changes` and waits for acks (a flagged `changes` frame). */
  want(link: PeerLinkLike, changes: readonly Change[]): void {
    let vc = this.#wanted.get(link)?.vc ?? {}
    for (const change of changes) {
      vc = vcWithDot(vc, change.dot)
      this.#awaited.add(change)
    }
    this.#wanted.set(link, { vc, atMs: this.#options.now() })
  }

  /** Whether a peer waits for `change` to be acked (it came on a flagged frame). */
  awaited(change: Change): boolean {
    return this.#awaited.has(change)
  }

  /** A `sync` of `vc` went to `link`: its next ack names what moved since. */
  synced(link: PeerLinkLike, vc: VectorClock): void {
    this.#told.set(link, vc)
  }

  /**
   * After changes were applied: acks what is durable now to the links that wait, and makes the
   * rest durable for them at once (one fsync); the other links get theirs, and the fsync, when
   * the gathering time is up.
   */
  whenDurable(): void {
    const { store } = this.#options
    if (this.#sendDue() && !vcCovers(store.durableVc, store.vc))
      this.#durable(() => {
        this.#sendDue()
      })
    this.#gather()
  }

  /** The tick: every link is told what is durable, and waits not renewed for a while are dropped. */
  tick(): void {
    const now = this.#options.now()
    for (const [link, want] of this.#wanted)
      if (link.closed || now - want.atMs > WANT_STALE_MS) this.#wanted.delete(link)
    this.#flush()
  }

  /** Acks the links that wait now; true when there is one. */
  #sendDue(): boolean {
    const durable = this.#options.store.durableVc
    let due = false
    for (const link of this.#options.links()) {
      const want = this.#wanted.get(link)
      if (want === undefined && (link.version ?? GATHERING_VERSION) >= GATHERING_VERSION) continue
      due = true
      this.#send(link, durable)
      if (want !== undefined && vcCovers(durable, want.vc)) this.#wanted.delete(link)
    }
    return due
  }

  /** Sends what was gathered ACK_GATHER_MS from now, when some link has not been told all that was applied. */
  #gather(): void {
    const { later, store, links } = this.#options
    if (this.#gathering || later === undefined) return
    const vc = store.vc
    let behind = false
    for (const link of links()) if (!vcCovers(this.#told.get(link) ?? {}, vc)) behind = true
    if (!behind) return
    this.#gathering = true
    later(() => {
      this.#gathering = false
      if (!this.#options.closed()) this.#flush()
    }, ACK_GATHER_MS)
  }

  /** Every link is told what is durable, and what was applied once one fsync made it so. */
  #flush(): void {
    this.#sendAll()
    const { store } = this.#options
    if (!vcCovers(store.durableVc, store.vc)) this.#durable(() => this.#sendAll())
  }

  /** One fsync of everything applied (shared with every other caller), then `then`. */
  #durable(then: () => void): void {
    this.#options.store.makeDurable().then(then, (error: unknown) => {
      if (!this.#options.closed() && !isMeshError(error, 'MESHKV_ERR_CLOSED'))
        this.#options.logger.warn({ err: String(error) }, 'could not fsync received changes; acked on a later tick')
    })
  }

  #sendAll(): void {
    const durable = this.#options.store.durableVc
    for (const link of this.#options.links()) this.#send(link, durable)
  }

  #send(link: PeerLinkLike, durable: VectorClock): void {
    const told = this.#told.get(link) ?? {}
    if (vcCovers(told, durable)) return
    const moved: Record<string, number> = {}
    for (const [node, seq] of Object.entries(durable) as [NodeId, number][])
      if (vcGet(told, node) !== seq) moved[node] = seq
    this.#told.set(link, durable)
    link.send({ type: 'ack', vc: (link.version ?? GATHERING_VERSION) >= 6 ? (moved as VectorClock) : durable })
  }
}
