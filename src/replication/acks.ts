/**
 * Acks say what is on disk (docs/consistency.md, "What is durable when"): what is durable is
 * acked now, and changes applied past it are acked once one fsync (shared with every other
 * waiter, and with the node's next group commit) has made them durable. An ack goes to every
 * linked peer, and only when it says more than the last one.
 *
 * An ack carries only the entries that moved since the last ack (protocol version 6): on a 3-node
 * cluster a whole clock is three 16-character ids with their seqs, and acks came to half the
 * bytes on the wire. The receiver joins it into what the link said before (`PeerSession.ackedBy`).
 * That is exact because the durable clock only grows within a process, and every link starts with
 * a `sync` carrying the whole clock: an entry left out is one equal to the last ack's, which the
 * peer already has from that ack or from a `sync` sent after it. An ack that overtakes the first
 * `sync` of a new link says less than the node holds, never more (the `sync` then replaces it).
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcCovers, vcGet } from '../clock/index.js'
import { PROTOCOL_VERSION } from '../codec/peer.js'
import { isMeshError } from '../errors.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'

export interface DurableAcksOptions {
  store: ReplicaStore
  logger: Logger
  /** The links acks go to. */
  links: () => Iterable<PeerLinkLike>
  closed: () => boolean
}

export class DurableAcks {
  readonly #options: DurableAcksOptions
  #lastAckedVc: VectorClock = {}

  constructor(options: DurableAcksOptions) {
    this.#options = options
  }

  /** Acks what is durable now, and what was applied past it once an fsync made it durable. */
  whenDurable(): void {
    const { store } = this.#options
    this.#sendIfChanged()
    if (vcCovers(store.durableVc, store.vc)) return
    store.makeDurable().then(
      () => this.#sendIfChanged(),
      (error: unknown) => {
        if (!this.#options.closed() && !isMeshError(error, 'MESHKV_ERR_CLOSED'))
          this.#options.logger.warn({ err: String(error) }, 'could not fsync received changes; acked on a later tick')
      },
    )
  }

  #sendIfChanged(): void {
    const vc = this.#options.store.durableVc
    if (vcCovers(this.#lastAckedVc, vc)) return
    const moved: Record<string, number> = {}
    for (const [node, seq] of Object.entries(vc) as [NodeId, number][])
      if (vcGet(this.#lastAckedVc, node) !== seq) moved[node] = seq
    this.#lastAckedVc = vc
    for (const link of this.#options.links())
      link.send({ type: 'ack', vc: (link.version ?? PROTOCOL_VERSION) >= 6 ? (moved as VectorClock) : vc })
  }
}
