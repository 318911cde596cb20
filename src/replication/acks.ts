/**
 * Acks say what is on disk (docs/consistency.md, "What is durable when"): what is durable is
 * acked now, and changes applied past it are acked once one fsync (shared with every other
 * waiter, and with the node's next group commit) has made them durable. An ack goes to every
 * linked peer, and only when it says more than the last one.
 */
import type { VectorClock } from '../clock/index.js'
import { vcCovers } from '../clock/index.js'
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
    this.#lastAckedVc = vc
    for (const link of this.#options.links()) link.send({ type: 'ack', vc })
  }
}
