/**
 * Taking in a received snapshot, chunk by chunk (docs/protocol.md "Snapshots"). Two ways:
 *
 * - **Into place**, on a brand-new store (an empty clock, no log, no states): each chunk's states
 *   are written straight into their sublevels, one batch per chunk, and the end writes the clock.
 *   No stage and no second pass: nothing is there to join them with.
 * - **On the stage**, on a store with data: chunks are staged, and the end joins the stage in
 *   pages (snapshot-join.ts).
 *
 * Why the way into place is as safe as the stage:
 * - Before the first state is written, a marker `{ vc, phase: 0 }` is fsynced. The clock is
 *   written only in the last batch, which also removes the marker and is fsynced (LevelDB's log is
 *   ordered, so every chunk's batch before it is then durable too). So the clock never claims
 *   states that are not all written.
 * - A store that opens with a phase-0 marker was cut off midway: every state it holds came from
 *   that snapshot (it held none when the marker was written, and nothing else writes a state while
 *   the marker is there: see the next point). They are all removed with the marker, and the node
 *   is brand new again. A half snapshot is never kept, so never served.
 * - A commit (a client's write, a peer's change) that comes while states go into place would
 *   change states whose clock is not the node's yet. Before it runs, the intake moves the states
 *   written so far onto the stage (one pass, in the store's queue, where the commits wait),
 *   removes the marker with the last move, and goes on as a staged snapshot: the end joins it
 *   with the commits. A crash before that last move finds the phase-0 marker and removes
 *   everything; a move that fails rejects the commits that waited for it.
 * - While states go into place, reads go to a view of the store taken just before (empty, with
 *   the empty clock), as during a join: the node is served as empty until the clock is written.
 *   Garbage collection purges nothing meanwhile: the stable cut is at most the node's own clock,
 *   which is empty.
 * - If the move onto the stage fails (a storage error), the end or the drop of the intake tries
 *   it again first.
 *
 * Each intake counts where its time went (`stages`, reported in /v1/status `snapshot.last`).
 */
import type { Hlc, VectorClock } from '../clock/index.js'
import { HLC_ZERO, maxHlc, vcJoin } from '../clock/index.js'
import { decodeState } from '../codec/index.js'
import type { AnyState, RegisterState, Space } from '../crdt/index.js'
import { SPACES, isEmptyState } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Backend, BackendWrite, Sub } from './backend.js'
import type { StoreHead } from './layout.js'
import {
  SNAPSHOT_MARKER_DELETE,
  clockWrites,
  hlcWrite,
  isAllTombstones,
  snapshotMarkerWrite,
  stateId,
} from './layout.js'
import { SharedView } from './shared-view.js'
import type { SnapshotEntry } from './store-types.js'

/** Milliseconds a received snapshot spent in each stage (the receiver adds `waiting`). */
export interface SnapshotStages {
  /** Checking and decoding states. */
  decode: number
  /** Merging states with the node's (none into place). */
  join: number
  /** LevelDB reads and writes. */
  leveldb: number
  /** The receiver idle, waiting for the next chunk. */
  waiting: number
}

export function noStages(): SnapshotStages {
  return { decode: 0, join: 0, leveldb: 0, waiting: 0 }
}

/** Adds the time `run` takes (wall clock) to `stages[stage]`. */
export async function timed<T>(stages: SnapshotStages, stage: keyof SnapshotStages, run: () => Promise<T>): Promise<T> {
  const start = performance.now()
  try {
    return await run()
  } finally {
    stages[stage] += performance.now() - start
  }
}

export function timedSync<T>(stages: SnapshotStages, stage: keyof SnapshotStages, run: () => T): T {
  const start = performance.now()
  try {
    return run()
  } finally {
    stages[stage] += performance.now() - start
  }
}

/** Received states, each checked (it decodes as a state of its space): what an intake writes. */
export interface CheckedStates {
  /** The states as received, but for empty ones (nothing to write or join). */
  readonly entries: readonly SnapshotEntry[]
  /** Registers among them that are all tombstones (they go into the `tombs` index). */
  readonly tombs: readonly string[]
  /** The newest register sibling among them (the node's HLC must not fall behind it). */
  readonly hlc: Hlc
}

/**
 * Checks received states: each must decode as a state of its space (an unknown space or damaged
 * bytes is `MESHKV_ERR_DECODE`), so nothing is kept that a read would later fail on. Synchronous
 * and apart from the writes, so the receiver checks a chunk while the one before is written.
 */
export function checkStates(entries: readonly SnapshotEntry[]): CheckedStates {
  const kept: SnapshotEntry[] = []
  const tombs: string[] = []
  let hlc = HLC_ZERO
  for (const entry of entries) {
    const [space, key, bytes] = entry
    const state = checkedState(space, bytes)
    if (isEmptyState(space, state)) continue
    kept.push(entry)
    if (space !== 'kv') continue
    const register = state as RegisterState
    for (const sibling of register.siblings) hlc = maxHlc(hlc, sibling.hlc)
    if (isAllTombstones(register)) tombs.push(key)
  }
  return { entries: kept, tombs, hlc }
}

/** One snapshot being received, as the receiver sees it. */
export interface SnapshotIntake {
  /** Where its states go now: `place` (a brand-new store) or `stage`. */
  readonly into: 'place' | 'stage'
  readonly stages: SnapshotStages
  /** Takes one chunk's states; resolves once they are written (not fsynced). */
  write(states: CheckedStates): Promise<void>
  /** All states were written: makes the snapshot the node's (its states and clock, durably). */
  finish(): Promise<void>
  /** Drops it: what it wrote is removed. */
  abandon(): Promise<void>
}

/** What an intake needs of its store. */
export interface IntakeHost {
  readonly backend: Backend
  head(): StoreHead
  /** Runs `run` in the store's queue, alone (no commit before it ends). */
  exclusive(run: () => Promise<void>): Promise<void>
  /** Reads go to `view` until it is called with null. */
  readFrom(view: SharedView | null): void
  /** The states went into place: the store takes the new head (durable) and recounts tombstones. */
  placed(head: StoreHead): Promise<void>
  /** After the end, outside the queue: commit listeners hear an empty batch (states changed without log entries). */
  notifyJoined(): void
  /** The intake began: called in the queue, so no commit can be queued before the store knows it. */
  began(intake: SnapshotIntake): void
  /** The intake ended (finished or dropped). */
  ended(): void
  stage(states: CheckedStates, stages: SnapshotStages): Promise<void>
  applyStaged(vc: VectorClock, stages: SnapshotStages): Promise<void>
  clearStage(): Promise<void>
}

/** Sublevels an interrupted fill leaves to clean, and that a store must have empty to take one. */
const FILLED_SUBS: readonly Sub[] = [...SPACES, 'tombs', 'stage']
/** States moved or removed per batch. */
const PAGE = 2000
const NO_BYTES = new Uint8Array(0)

/** Decodes one received state, refusing an unknown space or a state that does not decode. */
export function checkedState(space: Space, bytes: Uint8Array): AnyState {
  if (!SPACES.includes(space))
    throw new MeshError('MESHKV_ERR_DECODE', `a snapshot names an unknown key space ${JSON.stringify(space)}`)
  return decodeState(space, bytes)
}

/** True when the store holds nothing at all: no clock, no log, no state. */
export async function isBrandNew(backend: Backend, head: StoreHead): Promise<boolean> {
  if (head.lsn !== 0 || Object.keys(head.vc).length > 0) return false
  for (const sub of SPACES) for await (const _ of backend.iterate(sub, { limit: 1 })) return false
  return true
}

/** Removes every entry of `sub`, a page per batch. */
export async function clearSub(backend: Backend, sub: Sub): Promise<void> {
  for (;;) {
    const writes: BackendWrite[] = []
    for await (const [key] of backend.iterate(sub, { limit: PAGE })) writes.push({ type: 'del', sub, key })
    if (writes.length === 0) return
    await backend.write(writes, { sync: false })
  }
}

/** At open, after a crash in the middle of a fill (a phase-0 marker): removes all it wrote, then the marker. */
export async function undoFill(backend: Backend): Promise<void> {
  for (const sub of FILLED_SUBS) await clearSub(backend, sub)
  await backend.write([SNAPSHOT_MARKER_DELETE], { sync: true })
}

/** Begins an intake of a snapshot reflecting `vc`: into place when the store is brand new. */
export async function beginIntake(host: IntakeHost, vc: VectorClock): Promise<SnapshotIntake> {
  let intake: SnapshotIntake | null = null
  await host.exclusive(async () => {
    await host.clearStage()
    if (await isBrandNew(host.backend, host.head())) {
      await host.backend.write([snapshotMarkerWrite(vc, 0)], { sync: true })
      const view = new SharedView(host.backend.snapshot())
      host.readFrom(view)
      intake = new PlaceIntake(host, vc, view)
    } else intake = new StageIntake(host, vc, noStages())
    host.began(intake)
  })
  return intake as unknown as SnapshotIntake
}

class StageIntake implements SnapshotIntake {
  readonly into = 'stage'
  #ended = false

  constructor(
    readonly host: IntakeHost,
    readonly vc: VectorClock,
    readonly stages: SnapshotStages,
  ) {}

  write(states: CheckedStates): Promise<void> {
    return this.host.stage(states, this.stages)
  }

  async finish(): Promise<void> {
    if (this.#ended) throw new MeshError('MESHKV_ERR_INTERNAL', 'a snapshot intake ended twice')
    this.#end()
    await this.host.applyStaged(this.vc, this.stages)
  }

  /** Drops it; after its end, nothing (a link lost while the end was queued). */
  async abandon(): Promise<void> {
    if (this.#ended) return
    this.#end()
    await this.host.clearStage()
  }

  #end(): void {
    this.#ended = true
    this.host.ended()
  }
}

/**
 * Into place. Every step runs in the store's queue, so commits are ordered with the chunks: the
 * store calls `beforeCommits` in its queue before it runs any, which moves the states onto the stage.
 */
class PlaceIntake implements SnapshotIntake {
  readonly stages = noStages()
  #hlc: Hlc
  /** Set once a commit moved it onto the stage: from then on it is that. */
  #staged: StageIntake | null = null
  #moving = false
  /** Finished or dropped: a move queued before that found out has nothing to do. */
  #done = false
  #view: SharedView | null

  constructor(
    readonly host: IntakeHost,
    readonly vc: VectorClock,
    view: SharedView,
  ) {
    this.#hlc = host.head().hlc
    this.#view = view
  }

  get into(): 'place' | 'stage' {
    return this.#staged === null && !this.#moving ? 'place' : 'stage'
  }

  write(states: CheckedStates): Promise<void> {
    return this.host.exclusive(async () => {
      if (this.#staged !== null) return this.#staged.write(states)
      this.#hlc = maxHlc(this.#hlc, states.hlc)
      // The bytes as received: they are a stored state's, and they decoded.
      const writes: BackendWrite[] = states.entries.map(([sub, key, value]) => ({ type: 'put', sub, key, value }))
      for (const key of states.tombs) writes.push({ type: 'put', sub: 'tombs', key, value: NO_BYTES })
      await timed(this.stages, 'leveldb', () => this.host.backend.write(writes, { sync: false }))
    })
  }

  /**
   * Commits are about to run (the store calls this in its queue, ahead of them): the states
   * written so far go onto the stage first, once. A failure rejects those commits.
   */
  async beforeCommits(): Promise<void> {
    if (this.#staged !== null || this.#done) return
    this.#moving = true
    await this.#moveToStage()
  }

  async finish(): Promise<void> {
    let staged: StageIntake | null = null
    await this.host.exclusive(async () => {
      if (this.#done) throw new MeshError('MESHKV_ERR_INTERNAL', 'a snapshot intake ended twice')
      staged = await this.#stagedNow()
      if (staged !== null) return
      const head = this.host.head()
      const vc = vcJoin(head.vc, this.vc)
      this.#hlc = maxHlc(this.#hlc, head.hlc)
      await timed(this.stages, 'leveldb', () =>
        this.host.backend.write([SNAPSHOT_MARKER_DELETE, hlcWrite(this.#hlc), ...clockWrites(head.vc, vc)], {
          sync: true,
        }),
      )
      await this.host.placed({ ...head, vc, hlc: this.#hlc })
      this.#done = true
      await this.release()
      this.host.ended()
    })
    if (staged !== null) await (staged as StageIntake).finish()
    else this.host.notifyJoined()
  }

  async abandon(): Promise<void> {
    let staged: StageIntake | null = null
    await this.host.exclusive(async () => {
      // Once finished, the states are the node's: a link lost as the end was queued drops nothing.
      if (this.#done) return
      staged = await this.#stagedNow()
      if (staged !== null) return
      await undoFill(this.host.backend)
      this.#done = true
      await this.release()
      this.host.ended()
    })
    if (staged !== null) await (staged as StageIntake).abandon()
  }

  /**
   * In the queue: the staged intake this became, if a commit came. A move that failed (a storage
   * error) is tried again here, before the end: commits may have run after it.
   */
  async #stagedNow(): Promise<StageIntake | null> {
    if (this.#moving && this.#staged === null) await this.#moveToStage()
    return this.#staged
  }

  /** Moves the states written so far onto the stage; the last batch removes the marker. */
  async #moveToStage(): Promise<void> {
    if (this.#done) return
    const backend = this.host.backend
    for (const sub of SPACES) {
      for (;;) {
        const writes: BackendWrite[] = []
        for await (const [key, value] of backend.iterate(sub, { limit: PAGE }))
          writes.push({ type: 'put', sub: 'stage', key: stateId(sub, key), value }, { type: 'del', sub, key })
        if (writes.length === 0) break
        await backend.write(writes, { sync: false })
      }
    }
    await clearSub(backend, 'tombs')
    await backend.write([SNAPSHOT_MARKER_DELETE], { sync: false })
    await this.release()
    this.#staged = new StageIntake(this.host, this.vc, this.stages)
    this.#moving = false
  }

  /** Reads go to the live states again (at the end, or as the store closes). */
  async release(): Promise<void> {
    const view = this.#view
    this.#view = null
    if (view === null) return
    this.host.readFrom(null)
    await view.release()
  }
}

/** The intake commits must wait for, if it is one going into place. */
export function placeIntake(
  intake: SnapshotIntake | null,
): { beforeCommits(): Promise<void>; release(): Promise<void> } | null {
  return intake instanceof PlaceIntake ? intake : null
}
