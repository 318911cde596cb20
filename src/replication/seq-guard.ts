/**
 * The seq guard: a node mints its own sequence numbers only while no other process can hold the
 * same ones (docs/architecture.md, "Own sequence numbers"). Peers drop a change whose dot they
 * already hold, so a seq minted twice loses one of the two changes for good. Three operator
 * faults break the rule:
 * - a data directory put back from an older copy (a backup restore, a VM snapshot): peers hold
 *   seqs of this node it no longer has, and would mint again;
 * - a cloned directory run beside the original: two live processes, one node id;
 * - after the first, own writes made before the peers were heard: the same seq names two changes.
 *
 * States (what `status` shows, and what a write meets):
 * - `verifying`: after start, until every other member has synced on this run (a sync names how
 *   much of this node the peer holds), or until `graceMs` passed with some member silent (a node
 *   whose peers are all down still takes writes). No own writes: 503 `MESHKV_ERR_RECOVERING`.
 * - `writable`.
 * - `recovering`: a peer holds more of this node's own changes than it does. Peers echo them back
 *   (peer-session.ts) or send a snapshot; once it holds as much as any peer claimed, verifying
 *   again. No own writes: 503 `MESHKV_ERR_RECOVERING`.
 * - `diverged`: a peer holds own seqs this process minted too since it started: two changes share
 *   a dot, and no merge can tell them apart. Sticky: 409 `MESHKV_ERR_NODE_ID_CONFLICT`, and the
 *   operator replaces the node (the log line says how).
 * - `conflict`: another live process runs this node id (transport close code 4009). Sticky until
 *   restart: 409 `MESHKV_ERR_NODE_ID_CONFLICT`.
 *
 * Every own change goes through the store's `commitLocal`, and the store asks the guard at the
 * moment it mints a seq (`Store.guardOwnWrites`), so the node's internal writes (membership,
 * tokens) are held back as well as clients'.
 */
import type { NodeId } from '../clock/index.js'
import { MeshError } from '../errors.js'
import type { Logger } from './logger.js'

export type SeqGuardState = 'verifying' | 'writable' | 'recovering' | 'diverged' | 'conflict'

export interface SeqGuardStatus {
  state: SeqGuardState
  /** This node's own seq when it started. */
  startSeq: number
  /** The highest own seq a peer said it holds past what this node held then (0: none). */
  claimedSeq: number
  /** The first peer that claimed `claimedSeq`, or null. */
  claimedBy: NodeId | null
  /** When (ms) the guard entered this state. */
  sinceMs: number
  /** Why own writes are held back, in one line (null while writable). */
  reason: string | null
}

/** How long a node waits after start for members that do not sync before it writes anyway. */
export const SEQ_GUARD_GRACE_MS_DEFAULT = 10_000
/** A recovery that makes no progress this long is said to be stuck, once, with the way out. */
export const RECOVERY_STUCK_MS = 60_000

export interface SeqGuardOptions {
  self: NodeId
  startSeq: number
  now: () => number
  graceMs?: number
  logger: Logger
  /** What the guard reads on each check: the node's own seq now, and whether every other member synced. */
  input: () => SeqGuardInput
}

export interface SeqGuardInput {
  held: number
  allSynced: boolean
}

export class SeqGuard {
  readonly #options: SeqGuardOptions
  readonly #graceMs: number
  /** The grace runs from here: the start, or the last time a member refused a link as "already linked, alive". */
  #graceFromMs: number
  #state: SeqGuardState = 'verifying'
  #sinceMs: number
  #reason: string | null
  #claimedSeq = 0
  #claimedBy: NodeId | null = null
  /** Own seq when recovery last moved on (its start, or the last change echoed back). */
  #progress = { seq: 0, atMs: 0 }
  #stuckSaid = false
  /** The first own seq this process minted (0: none yet). */
  #mintedFrom = 0

  constructor(options: SeqGuardOptions) {
    this.#options = options
    this.#graceMs = options.graceMs ?? SEQ_GUARD_GRACE_MS_DEFAULT
    this.#graceFromMs = options.now()
    this.#sinceMs = this.#graceFromMs
    this.#reason = VERIFYING
  }

  get state(): SeqGuardState {
    return this.#state
  }

  get writable(): boolean {
    return this.#state === 'writable'
  }

  get status(): SeqGuardStatus {
    return {
      state: this.#state,
      startSeq: this.#options.startSeq,
      claimedSeq: this.#claimedSeq,
      claimedBy: this.#claimedBy,
      sinceMs: this.#sinceMs,
      reason: this.#reason,
    }
  }

  /** What an own write meets now: null while writable. */
  refusal(): MeshError | null {
    if (this.#state === 'writable') return null
    return new MeshError(codeOf(this.#state), this.#reason ?? 'this node takes no writes now', {
      details: { ...this.status },
    })
  }

  /** Throws what an own write meets now, unless writable (the store asks it as it makes each own change). */
  checkWrite(): void {
    this.refresh()
    const refusal = this.refusal()
    if (refusal !== null) throw refusal
    if (this.#mintedFrom === 0) this.#mintedFrom = this.#options.input().held + 1
  }

  /**
   * The most of this node's own seqs a peer's claim may count for, `held` being what this node
   * holds. Once its id names two histories, only the seqs before this process minted any are
   * shared: a peer's claim past them names the other history's changes, not this one's.
   */
  trustedOwnSeq(held: number): number {
    const split = this.#state === 'diverged' || this.#state === 'conflict'
    return split && this.#mintedFrom > 0 ? Math.min(held, this.#mintedFrom - 1) : held
  }

  /**
   * A peer says it holds own seq `seq`, past `held` (all this node has). Recoverable while this
   * process minted nothing yet. Once it minted from seq m, the other history minted every seq up
   * to `seq` (seqs are made in order), m..held among them: the same seqs name two changes (diverged).
   */
  onClaim(peer: NodeId, seq: number, held: number): void {
    const nowMs = this.#options.now()
    if (this.#state === 'diverged' || this.#state === 'conflict' || seq <= held) return
    if (seq > this.#claimedSeq) {
      this.#claimedSeq = seq
      this.#claimedBy = peer
    }
    if (this.#mintedFrom > 0) {
      this.#enter(
        'diverged',
        nowMs,
        `node id ${this.#options.self} was reused: peer ${peer} holds its changes up to seq ${seq}, but this process (started at seq ${this.#options.startSeq}: its data directory is an older copy) has written seqs ${this.#mintedFrom}..${held} of its own, which name other changes there; it takes no writes. Way out: stop it, move its data directory aside, start it with an empty one (it joins as a new node), then forget ${this.#options.self} through a member (kvctl forget ${this.#options.self} --force)`,
        'error',
      )
      return
    }
    if (this.#state !== 'recovering') {
      this.#progress = { seq: held, atMs: nowMs }
      this.#stuckSaid = false
      this.#enter(
        'recovering',
        nowMs,
        `peer ${peer} holds this node's changes up to seq ${seq}, and it holds ${held} (its data directory is an older copy): it takes no writes until its peers have sent them back`,
        'warn',
      )
    }
  }

  /**
   * A member refused this node's link because it holds a live link from this node id: the previous
   * run's, not yet proven dead, or another process's (a clone, which the member finds out within a
   * few ping intervals). Not silence: the grace starts again, so a clone never writes before it is
   * told, and a restart waits the few seconds until the old link is dropped.
   */
  heldOff(): void {
    if (this.#state === 'verifying') this.#graceFromMs = this.#options.now()
  }

  /** Another live process runs this node id: sticky until restart. */
  markConflict(peer: NodeId | null, message: string): void {
    if (this.#state === 'conflict') return
    const nowMs = this.#options.now()
    const by = peer === null ? '' : ` (said by ${peer})`
    this.#enter(
      'conflict',
      nowMs,
      `another live process runs node id ${this.#options.self}${by}: ${message}; it takes no writes. Way out: stop one of them; give the copy an empty data directory (it joins as a new node); restart the other`,
      'error',
    )
  }

  /** Moves on where it may: verifying ends, recovery ends, a stuck recovery is said. */
  refresh(): void {
    // Only a verifying or recovering guard moves on its own; the others wait for an event (a
    // claim, a conflict) or stay. Asked at every write, so the common case costs one comparison.
    if (this.#state !== 'verifying' && this.#state !== 'recovering') return
    const input = { ...this.#options.input(), nowMs: this.#options.now() }
    if (this.#state === 'recovering') {
      if (input.held >= this.#claimedSeq) {
        this.#options.logger.info(
          { seq: input.held },
          "this node's own changes were sent back by its peers; it checks with them once more before it writes",
        )
        this.#enter('verifying', input.nowMs, VERIFYING, null)
      } else this.#checkStuck(input)
    }
    if (this.#state !== 'verifying') return
    if (!input.allSynced && input.nowMs - this.#graceFromMs < this.#graceMs) return
    this.#enter('writable', input.nowMs, null, null)
    this.#options.logger.info(
      { allSynced: input.allSynced },
      input.allSynced
        ? 'every other member has synced with this node: it takes writes'
        : 'some member stayed silent for the whole grace: this node takes writes',
    )
  }

  #checkStuck(input: SeqGuardInput & { nowMs: number }): void {
    if (input.held > this.#progress.seq) {
      this.#progress = { seq: input.held, atMs: input.nowMs }
      return
    }
    if (this.#stuckSaid || input.nowMs - this.#progress.atMs < RECOVERY_STUCK_MS) return
    this.#stuckSaid = true
    this.#options.logger.error(
      { held: input.held, claimedSeq: this.#claimedSeq, claimedBy: this.#claimedBy },
      `this node's own changes ${input.held + 1}..${this.#claimedSeq} could not be fetched back from its peers in ${RECOVERY_STUCK_MS / 1000} s; it keeps trying. Way out: stop it, move its data directory aside, start it with an empty one (it joins as a new node), then forget ${this.#options.self} through a member (kvctl forget ${this.#options.self} --force)`,
    )
  }

  #enter(state: SeqGuardState, nowMs: number, reason: string | null, level: 'warn' | 'error' | null): void {
    this.#state = state
    this.#sinceMs = nowMs
    this.#reason = reason
    if (level !== null && reason !== null) this.#options.logger[level]({ state, code: codeOf(state) }, reason)
  }
}

const VERIFYING =
  'this node has just started and checks with its peers that none holds changes of its own it lacks; retry, or write through another node'

function codeOf(state: SeqGuardState): 'MESHKV_ERR_NODE_ID_CONFLICT' | 'MESHKV_ERR_RECOVERING' {
  return state === 'diverged' || state === 'conflict' ? 'MESHKV_ERR_NODE_ID_CONFLICT' : 'MESHKV_ERR_RECOVERING'
}
