/**
 * The receiving side of a snapshot (docs/protocol.md): one snapshot at a time, from one peer.
 * The receiver consents: a peer says the node needs one (`snapshot-needed`), and the node asks
 * (`snapshot-request`) only if that is so by what it holds and said in its last `sync` to that
 * peer: it was brand new, or it lacks the named change (of its own origin only while it recovers
 * changes of its own it lost: seq-guard.ts). An offer without that consent, or one whose clock
 * claims more of this node's own changes than it holds (unless it recovers), is refused and
 * counted, and changes nothing. An accepted offer (refused while another peer's is under way)
 * begins an intake in the store (storage/snapshot-intake.ts: straight into place on a brand-new
 * node, else staged); each chunk is written and acknowledged once it is on disk; the end makes it
 * the node's. A link lost midway, or a chunk the store refuses, drops the snapshot and what it wrote.
 *
 * Every step of an intake goes through one promise chain, in order, so a dropped snapshot's
 * writes end before the next offer begins. The receiver counts the time it waited for chunks;
 * the store counts the rest (`last.stages_ms` in /v1/status).
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { vcGet } from '../clock/index.js'
import { STATE_BYTES_MAX } from '../codec/index.js'
import type { SnapshotChunkMessage } from '../codec/peer.js'
import { StateAssembler } from '../codec/peer.js'
import type { Space } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { CheckedStates, SnapshotIntake, SnapshotStages } from '../storage/snapshot-intake.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'

/** A snapshot this node is receiving. */
export interface SnapshotProgress {
  from: NodeId
  /** The keys it holds: the offer's estimate until the sender's exact count comes in a chunk. */
  keysTotal: number
  /** Whether `keysTotal` is the sender's count (else the offer's estimate). */
  keysCounted: boolean
  keysReceived: number
  startedMs: number
}

/** The last snapshot joined: from whom, how many keys, how long, and where the time went. */
export interface LastSnapshot {
  from: NodeId
  keys: number
  ms: number
  /** `place`: written straight into place (a brand-new node); `stage`: staged, then joined. */
  into: 'place' | 'stage'
  stages_ms: SnapshotStages
}

export interface SnapshotStatus {
  receiving: SnapshotProgress | null
  last: LastSnapshot | null
}

interface Receiving extends SnapshotProgress {
  readonly vc: VectorClock
  failed: boolean
  /** Joins the parts of a state larger than a chunk; holds at most one state (`STATE_BYTES_MAX`). */
  readonly parts: StateAssembler
  /** The store's intake, once begun (null if it could not begin). */
  intake: SnapshotIntake | null
  /** Chunks received and not yet written. */
  pending: number
  /** Time spent checking (decoding) received states. */
  decodeMs: number
  /** Since when nothing was left to write (performance.now()). */
  idleSince: number
  waitingMs: number
}

export interface SnapshotReceiverOptions {
  store: ReplicaStore
  logger: Logger
  now: () => number
  /** A snapshot was joined into the store. */
  onJoined: () => void
  /** A `snapshot-needed` or an offer was refused (counted by the caller). */
  onRefused: () => void
  /** True while this node recovers changes of its own that its peers hold and it lost (seq-guard.ts). */
  recovering: () => boolean
  /** True once this node's id names two histories (seq-guard.ts: `diverged` or `conflict`). */
  split: () => boolean
}

export class SnapshotReceiver {
  readonly #options: SnapshotReceiverOptions
  #receiving: Receiving | null = null
  #stageWork: Promise<void> = Promise.resolve()
  #last: SnapshotStatus['last'] = null
  /** Per peer, the VC this node last sent it in a `sync`: what the peer may believe it lacks. */
  readonly #said = new Map<NodeId, VectorClock>()
  /** Peers this node asked for a snapshot (one offer each). */
  readonly #consented = new Set<NodeId>()

  constructor(options: SnapshotReceiverOptions) {
    this.#options = options
  }

  /** The peer whose snapshot is being received, or null. */
  get from(): NodeId | null {
    return this.#receiving?.from ?? null
  }

  status(): SnapshotStatus {
    const receiving = this.#receiving
    if (receiving === null) return { receiving: null, last: this.#last }
    const { from, keysTotal, keysCounted, keysReceived, startedMs } = receiving
    return { receiving: { from, keysTotal, keysCounted, keysReceived, startedMs }, last: this.#last }
  }

  /** This node sent `peer` a `sync` with `vc`. */
  said(peer: NodeId, vc: VectorClock): void {
    this.#said.set(peer, vc)
  }

  /** The link to `peer` ended: what it was told and allowed goes with it. */
  forgetLink(peer: NodeId): void {
    this.#said.delete(peer)
    this.#consented.delete(peer)
  }

  /**
   * A peer says this node needs a snapshot. True (and a `snapshot-request` is sent) when that is
   * so: the node said it holds nothing, or it lacks `lacks`, a change of another node. Otherwise
   * the claim is refused and counted; the caller syncs again (an honest sender may be stale).
   */
  needed(link: PeerLinkLike, lacks: Dot | null): boolean {
    const said = this.#said.get(link.nodeId)
    const held = this.#options.store.vc
    const needs =
      said !== undefined &&
      (lacks === null
        ? Object.keys(said).length === 0 && Object.keys(held).length === 0
        : (lacks.node !== this.#options.store.nodeId || this.#options.recovering()) &&
          vcGet(held, lacks.node) < lacks.seq)
    if (!needs) {
      this.#refuse(link.nodeId, { lacks }, 'a peer said this node needs a snapshot; it does not')
      return false
    }
    this.#consented.add(link.nodeId)
    link.send({ type: 'snapshot-request' })
    return true
  }

  offer(link: PeerLinkLike, vc: VectorClock, keys: number): void {
    const from = link.nodeId
    const self = this.#options.store.nodeId
    if (!this.#consented.delete(from)) {
      this.#refuse(from, { vc }, 'an unasked-for snapshot offer was refused')
      link.send({ type: 'snapshot-reply', accept: false })
      return
    }
    if (vcGet(vc, self) > vcGet(this.#options.store.vc, self) && !this.#options.recovering()) {
      if (this.#options.split()) {
        // The other history's changes of this id: never joined. A plain no, not a closed link, so
        // the sender waits for this node's next sync instead of offering again at once.
        this.#refuse(from, { vc }, 'a snapshot offer names changes of this node id from another history; refused')
        link.send({ type: 'snapshot-reply', accept: false })
        return
      }
      // No peer can hold more of this node's changes than it made (they are fsynced before sent),
      // unless its data directory is an older copy: then it recovers, and the guard knows.
      this.#refuse(from, { vc }, 'a snapshot offer claims changes this node never made; refused')
      link.close(1008, 'implausible snapshot clock')
      return
    }
    if (this.#receiving !== null && this.#receiving.from !== from) {
      link.send({ type: 'snapshot-reply', accept: false })
      return
    }
    if (this.#receiving !== null) this.abandon('the sender offered a new one')
    const store = this.#options.store
    const receiving: Receiving = {
      from,
      vc,
      keysTotal: keys,
      keysCounted: false,
      keysReceived: 0,
      startedMs: this.#options.now(),
      failed: false,
      parts: new StateAssembler(STATE_BYTES_MAX),
      intake: null,
      pending: 0,
      decodeMs: 0,
      idleSince: performance.now(),
      waitingMs: 0,
    }
    this.#stageWork = this.#stageWork
      .then(async () => {
        receiving.intake = await store.receiveSnapshot(vc)
      })
      .catch((error: unknown) => this.#options.logger.warn({ err: String(error) }, 'could not begin a snapshot'))
    this.#receiving = receiving
    this.#options.logger.info({ peer: from, keys }, 'receiving a snapshot')
    link.send({ type: 'snapshot-reply', accept: true })
  }

  chunk(link: PeerLinkLike, message: SnapshotChunkMessage): void {
    const receiving = this.#receiving
    if (receiving === null || receiving.from !== link.nodeId || receiving.failed) return
    const arrived = performance.now()
    if (receiving.pending === 0) receiving.waitingMs += arrived - receiving.idleSince
    // The sender's exact count, once it has one (the offer carried an estimate).
    if (message.keys !== undefined) {
      receiving.keysTotal = message.keys
      receiving.keysCounted = true
    }
    let states: CheckedStates
    let count: number
    try {
      // Whole states only: parts of a large one wait in the assembler until its last part.
      const whole = message.states.map((entry) => receiving.parts.take(entry)).filter((state) => state !== null)
      count = whole.length
      // Checked as it arrives, while the chunk before it is being written: decoding overlaps the disk.
      states = this.#options.store.checkSnapshotStates(whole as readonly (readonly [Space, string, Uint8Array])[])
      receiving.decodeMs += performance.now() - arrived
    } catch (error) {
      this.#fail(link, receiving, error)
      return
    }
    receiving.pending++
    this.#stageWork = this.#stageWork.then(async () => {
      if (receiving.failed) return
      try {
        const intake = receiving.intake
        if (intake === null) throw new MeshError('MESHKV_ERR_STORAGE', 'the snapshot could not begin')
        await intake.write(states)
        // Progress counts states on this node's disk, not merely received.
        receiving.keysReceived += count
        link.send({ type: 'snapshot-ack', seq: message.seq })
      } catch (error) {
        this.#fail(link, receiving, error)
      } finally {
        if (--receiving.pending === 0) receiving.idleSince = performance.now()
      }
    })
  }

  /** A chunk that cannot be staged, or a snapshot that ends mid-state: dropped, and the link closed. */
  #fail(link: PeerLinkLike, receiving: Receiving, error: unknown): void {
    receiving.failed = true
    this.#options.logger.warn(
      { peer: receiving.from, err: String(error), code: (error as { code?: string }).code },
      'a snapshot chunk was refused; the snapshot is dropped',
    )
    this.abandon('a chunk was refused')
    link.close(1008, 'bad snapshot chunk')
  }

  /**
   * The sender sent its last chunk. Returns null if no snapshot from this peer is under way, or
   * else `join`: the caller runs it in turn with the other work on its store (it never rejects;
   * a failure is logged), and moves its own clocks on afterwards.
   */
  end(link: PeerLinkLike): (() => Promise<void>) | null {
    const receiving = this.#receiving
    if (receiving === null || receiving.from !== link.nodeId) return null
    const done = this.#stageWork.then(async () => {
      if (receiving.failed || this.#receiving !== receiving) return
      if (receiving.parts.pending) {
        this.#fail(link, receiving, new MeshError('MESHKV_ERR_DECODE', 'the snapshot ended in the middle of a state'))
        return
      }
      const intake = receiving.intake
      if (intake === null) throw new MeshError('MESHKV_ERR_STORAGE', 'the snapshot could not begin')
      await intake.finish()
      // After it: a commit during the transfer moves one going into place onto the stage.
      const into = intake.into
      const ms = this.#options.now() - receiving.startedMs
      const stages = {
        ...intake.stages,
        decode: intake.stages.decode + receiving.decodeMs,
        waiting: receiving.waitingMs,
      }
      for (const stage of Object.keys(stages) as (keyof SnapshotStages)[]) stages[stage] = Math.round(stages[stage])
      this.#last = { from: receiving.from, keys: receiving.keysReceived, ms, into, stages_ms: stages }
      this.#options.onJoined()
      this.#options.logger.info(
        { peer: receiving.from, keys: receiving.keysReceived, ms, into, stages_ms: stages, vc: receiving.vc },
        'snapshot joined',
      )
    })
    this.#stageWork = done.catch(() => undefined)
    return () =>
      done
        .catch((error: unknown) =>
          this.#options.logger.error({ peer: receiving.from, err: String(error) }, 'joining a snapshot failed'),
        )
        .finally(() => {
          if (this.#receiving === receiving) this.#receiving = null
        })
  }

  #refuse(peer: NodeId, detail: Record<string, unknown>, message: string): void {
    this.#options.onRefused()
    this.#options.logger.warn({ peer, ...detail }, message)
  }

  /** Drops the snapshot under way, if any, and clears its stage. */
  abandon(why: string): void {
    const receiving = this.#receiving
    if (receiving === null) return
    receiving.failed = true
    this.#receiving = null
    this.#options.logger.warn({ peer: receiving.from, why }, 'snapshot dropped')
    this.#stageWork = this.#stageWork.then(() => receiving.intake?.abandon()).catch(() => undefined)
  }
}
