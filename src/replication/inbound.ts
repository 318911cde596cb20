/**
 * The inbound pipeline: changes received from every peer go through one causal buffer into the
 * store, each exactly once and in causal order (docs/consistency.md). Changes from forgotten
 * members after their last kept one are refused and counted; a full buffer or a change the store
 * refuses makes the replicator ask its peers again (`resyncNeeded`).
 *
 * Work on the store runs on one promise chain (`after`), so the replicator can order a snapshot
 * join with the changes around it, and `settled()` waits for all of it on close.
 */
import type { NodeId } from '../clock/index.js'
import { vcCovers } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { CommitResult, RemoteRefused } from '../storage/store.js'
import type { ErrorCode } from '../errors.js'
import { CausalBuffer } from './causal-buffer.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'

/** What the replicator counts; `counters` on the replicator shows them. */
export interface ReplicationCounters {
  changesReceived: number
  changesApplied: number
  duplicates: number
  bufferFull: number
  refused: number
  refusedForgotten: number
  /** Changes of this node's own origin from a peer while it was not recovering: another history's. */
  refusedOwn: number
  /** Changes refused because a counter's sum would leave ±(2^53 - 1); their sender's link closes. */
  refusedOverflow: number
  framesSent: number
  changesSent: number
  snapshotsSent: number
  snapshotsReceived: number
  /** `snapshot-needed` claims and snapshot offers refused: this node did not need or ask for one. */
  snapshotsRefused: number
  /**
   * Acks and syncs claiming more of this node's own changes than it holds: that part counts only
   * once held, and the seq guard checks for an older copy of the data directory (seq-guard.ts).
   */
  claimsRefused: number
  /** Entries of acks and syncs capped at what this node holds (see `checkClaim` in peers.ts). */
  claimsCapped: number
}

export function newCounters(): ReplicationCounters {
  return {
    changesReceived: 0,
    changesApplied: 0,
    duplicates: 0,
    bufferFull: 0,
    refused: 0,
    refusedForgotten: 0,
    refusedOwn: 0,
    refusedOverflow: 0,
    framesSent: 0,
    changesSent: 0,
    snapshotsSent: 0,
    snapshotsReceived: 0,
    snapshotsRefused: 0,
    claimsRefused: 0,
    claimsCapped: 0,
  }
}

export interface InboundOptions {
  store: ReplicaStore
  logger: Logger
  /** A change a peer waits to have acked: applied in a batch that is fsynced at once. */
  awaited?: (change: Change) => boolean
  bufferChangesMax: number
  /** Most bytes (by `approximateChangeBytes`) of early changes held. */
  bufferBytesMax: number
  counters: ReplicationCounters
  /** The last change of a forgotten member that stays (later ones are refused), or undefined. */
  forgottenAfter: (node: NodeId) => number | undefined
  /** Called after each batch the store took (acks and write-concern waiters follow). */
  onApplied: () => void
  /** Every link: their reading pauses while the store is far behind (`INBOUND_PAUSE_CHANGES`). */
  links?: () => Iterable<PeerLinkLike>
  /**
   * True while this node takes changes of its own origin from peers: only while it recovers those
   * it lost (seq-guard.ts). Otherwise one it does not hold names another history (a clone, or a
   * copy of its directory that wrote on), and is dropped.
   */
  takesOwn: () => boolean
}

/**
 * Changes handed to the store and not yet committed past which every link stops being read, until
 * the store is down to half. A peer sends a catch-up as fast as its link drains, and a receiver
 * that read on would hold the whole backlog as decoded changes (memory, and a garbage collector
 * copying them from one generation to the next) while the store takes 512 at a time.
 */
export const INBOUND_PAUSE_CHANGES = 8192

/** Of the refused changes from forgotten members, the first and then one in every thousand is logged. */
const REFUSED_LOG_EVERY = 1000

export class Inbound {
  readonly #options: InboundOptions
  readonly #buffer: CausalBuffer
  /**
   * The store's VC plus changes handed to the store and not yet durable. This class's own copy,
   * moved on in place as changes are handed over (never the store's object).
   */
  #pendingVc: Record<NodeId, number>
  #applying: Promise<void> = Promise.resolve()
  /** The link each buffered change came on: a change that can never apply closes it. */
  readonly #senders = new WeakMap<Change, PeerLinkLike>()
  readonly #sync: (change: Change) => boolean
  /** Changes handed to the store whose commit has not settled. */
  #inStore = 0
  /** Reading is paused on every link: `#inStore` passed INBOUND_PAUSE_CHANGES. */
  #paused = false
  /** Something was dropped or refused: the peers must be asked again (a `sync`) on the next tick. */
  resyncNeeded = false

  constructor(options: InboundOptions) {
    this.#options = options
    this.#buffer = new CausalBuffer(options.bufferChangesMax, options.bufferBytesMax)
    this.#pendingVc = { ...options.store.vc }
    this.#sync = options.awaited ?? (() => false)
  }

  get buffered(): number {
    return this.#buffer.size
  }

  get bufferedBytes(): number {
    return this.#buffer.bytes
  }

  /** A new link: paused too while the store is behind. */
  linked(link: PeerLinkLike): void {
    if (this.#paused) link.pauseReading?.(true)
  }

  /** The seqs of `origin`'s changes waiting in the causal buffer, ascending. */
  bufferedOf(origin: NodeId): number[] {
    return this.#buffer.pending(origin)
  }

  /** Runs `work` after everything already handed to the store. */
  after(work: () => Promise<void>): void {
    this.#applying = this.#applying.then(work)
  }

  /** Resolves once every queued store work has ended. */
  settled(): Promise<void> {
    return this.#applying
  }

  /** The store's VC moved by other means (a local commit, a joined snapshot): catch up with it. */
  catchUp(): void {
    const pending = this.#pendingVc
    const vc = this.#options.store.vc
    for (const node in vc) {
      const seq = vc[node as NodeId] as number
      if ((pending[node as NodeId] ?? 0) < seq) pending[node as NodeId] = seq
    }
  }

  /**
   * Takes a frame's changes. One that is next for its origin with its deps handed over (the
   * common case: a link delivers in order) goes to the store without touching the causal buffer.
   */
  receive(changes: readonly Change[], from?: PeerLinkLike): void {
    const counters = this.#options.counters
    // The store's VC moves with local commits too: what this node wrote is applied.
    this.catchUp()
    const pending = this.#pendingVc
    let direct: Change[] = []
    for (const change of changes) {
      counters.changesReceived++
      if (this.#refuseForgotten(change, from)) continue
      const { node, seq } = change.dot
      if (node === this.#options.store.nodeId && !this.#options.takesOwn()) {
        counters.refusedOwn++
        continue
      }
      const held = pending[node] ?? 0
      // A copy of a buffered change: that one goes (its deps may have come since), this is extra.
      if (seq <= held || (this.#buffer.size > 0 && this.#buffer.has(change.dot))) {
        counters.duplicates++
        continue
      }
      if (seq === held + 1 && vcCovers(pending, change.deps)) {
        direct.push(change)
        pending[node] = seq
        continue
      }
      if (from !== undefined) this.#senders.set(change, from)
      let result = this.#buffer.add(change, pending)
      if (result === 'full') {
        // Hand what is deliverable to the store first: that moves `pendingVc` on, so the rest of a
        // frame that continues one origin is taken now rather than one change per resync.
        this.#hand(direct, from)
        direct = []
        result = this.#buffer.add(change, pending)
      }
      if (result === 'duplicate') counters.duplicates++
      if (result === 'full') {
        counters.bufferFull++
        this.resyncNeeded = true
      }
    }
    this.#hand(direct, from)
  }

  /**
   * A member was forgotten after `seq`: its buffered later changes go and are counted. A survivor
   * that relayed some of them sends them again after the next sync (see `#refuseForgotten`).
   */
  forget(origin: NodeId, seq: number): void {
    const dropped = this.#buffer.dropAfter(origin, seq)
    this.#options.counters.refusedForgotten += dropped
    if (dropped > 0) this.resyncNeeded = true
  }

  /** Hands every deliverable change to the store, in causal order; the store group-commits them. */
  drain(): void {
    this.#hand([], undefined)
  }

  /**
   * Hands `direct` (deliverable, in order, already counted in `pendingVc`, from `from`) and then
   * every buffered change they made deliverable to the store, in one call.
   */
  #hand(direct: Change[], from: PeerLinkLike | undefined): void {
    const directCount = direct.length
    let deliverable = direct
    if (this.#buffer.size > 0) {
      const released = this.#buffer.takeDeliverable(this.#pendingVc)
      for (const change of released) {
        const { node, seq } = change.dot
        if ((this.#pendingVc[node] ?? 0) < seq) this.#pendingVc[node] = seq
      }
      deliverable = directCount === 0 ? released : direct.concat(released)
    }
    if (deliverable.length === 0) return
    this.#inStore += deliverable.length
    if (!this.#paused && this.#inStore >= INBOUND_PAUSE_CHANGES) this.#pause(true)
    const applied = this.#options.store
      .applyRemoteMany(deliverable, this.#sync)
      .catch((error: unknown) => deliverable.map(() => ({ refused: error })))
    this.after(async () => {
      const outcomes = await applied
      this.#inStore -= deliverable.length
      if (this.#paused && this.#inStore <= INBOUND_PAUSE_CHANGES / 2) this.#pause(false)
      const failed = this.#count(deliverable, outcomes, (index, change) =>
        index < directCount ? from : this.#senders.get(change),
      )
      if (failed > 0) {
        // What was refused (a clock too far ahead, a storage failure) and what followed it from
        // the same origin is asked for again on the next tick.
        this.#options.counters.refused += failed
        this.#pendingVc = { ...this.#options.store.vc }
        this.resyncNeeded = true
      }
      this.#options.onApplied()
    })
  }

  #pause(paused: boolean): void {
    this.#paused = paused
    for (const link of this.#options.links?.() ?? []) link.pauseReading?.(paused)
  }

  /** Counts what the store applied and logs what it refused; returns how many it refused. */
  #count(
    deliverable: readonly Change[],
    outcomes: readonly (CommitResult | RemoteRefused)[],
    senderOf: (index: number, change: Change) => PeerLinkLike | undefined,
  ): number {
    const counters = this.#options.counters
    let failed = 0
    for (let index = 0; index < outcomes.length; index++) {
      const outcome = outcomes[index] as CommitResult | RemoteRefused
      if (!('refused' in outcome)) {
        // The store answers a change it already had with `change: null`.
        if (outcome.change !== null) counters.changesApplied++
        else counters.duplicates++
        continue
      }
      failed++
      const change = deliverable[index] as Change
      const reason = outcome.refused as { code?: string }
      this.#options.logger.warn(
        { origin: change.dot.node, seq: change.dot.seq, err: String(reason), code: reason.code },
        'change refused',
      )
      if (reason.code === ('MESHKV_ERR_COUNTER_OVERFLOW' satisfies ErrorCode)) {
        // It would be refused again on every resend: the link that brought it is cut.
        counters.refusedOverflow++
        senderOf(index, change)?.close(1008, 'a change would overflow a counter')
      }
    }
    return failed
  }

  /**
   * True for a change of a forgotten member past its cut, unless a survivor relays it. A survivor
   * holds such a change only because it took it from the member before it learned of the forget
   * (it refuses the member's links from then on), so what survivors hold is bounded; refusing it
   * would split them for good, since the survivor's later changes depend on it
   * (docs/architecture.md, "Membership"). The log line carries the code MESHKV_ERR_FORGOTTEN
   * (nothing is thrown: the sender is a peer, not a caller to answer).
   */
  #refuseForgotten(change: Change, from: PeerLinkLike | undefined): boolean {
    const origin = change.dot.node
    const forgottenAfter = this.#options.forgottenAfter(origin)
    if (forgottenAfter === undefined || change.dot.seq <= forgottenAfter) return false
    if (from !== undefined && from.nodeId !== origin && this.#options.forgottenAfter(from.nodeId) === undefined)
      return false
    const counters = this.#options.counters
    if (counters.refusedForgotten++ % REFUSED_LOG_EVERY === 0) {
      this.#options.logger.warn(
        {
          origin: change.dot.node,
          seq: change.dot.seq,
          code: 'MESHKV_ERR_FORGOTTEN' satisfies ErrorCode,
          refused: counters.refusedForgotten,
        },
        'a change from a forgotten member was refused',
      )
    }
    return true
  }
}
