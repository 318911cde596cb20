/**
 * The store: durable node state over a `Backend`, behind one face. This file holds what the
 * parts share (the node's head — vector clock, LSN, HLC — where the log starts, the tombstone
 * count, the commit listeners) and wires the parts, each in its own file:
 *   group-commit.ts   the queue that batches concurrent commits and runs exclusive work between
 *   commit-group.ts   one group: local intents and remote changes into one atomic batch
 *   log-reads.ts      the log and its dot index
 *   gc.ts             purging the covered log and stable tombstones
 *   snapshot-intake.ts taking a received snapshot in: into place on a brand-new store, else staged
 *   snapshot-join.ts  staging a received snapshot and joining it, resumable after a crash
 *   shared-view.ts    the view every read goes to while a snapshot is joined
 *   layout.ts         the on-disk layout: sublevels, key encodings, meta records
 * Public methods check that the store is open; the parts assume it.
 *
 * Durability. A batch holding a change of this node, or any batch with `sync`, is fsynced. Without
 * `sync`, batches of peers' changes are not: the store keeps the head as of the last fsynced batch
 * (`durableVc`), and `makeDurable` fsyncs everything committed so far in one step that every
 * caller waiting at that time shares. Replication acknowledges only `durableVc`.
 */
import type { Dot, Hlc, NodeId, VectorClock } from '../clock/index.js'
import type { Change, Intent, Space, StateOf } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Backend, BackendReader, Range } from './backend.js'
import type { Commit, SiblingsCreated } from './commit-group.js'
import type { GroupBase } from './commit-group.js'
import { CHANGE_BYTES_MAX_DEFAULT, stageGroup } from './commit-group.js'
import { countTombstones, purgeLog, purgeTombstones } from './gc.js'
import { GroupQueue } from './group-commit.js'
import type { StoreHead } from './layout.js'
import {
  iterateStates,
  lsnWrite,
  readLsn,
  readOrInitMeta,
  readState,
  readUserMeta,
  readVc,
  userMetaWrite,
} from './layout.js'
import { findLogStart, lsnInLog, readLog } from './log-reads.js'
import { SharedView } from './shared-view.js'
import type { CheckedStates, SnapshotIntake, SnapshotStages } from './snapshot-intake.js'
import { beginIntake, checkStates, placeIntake } from './snapshot-intake.js'
import { applyStagedSnapshot, clearStage, recoverSnapshot, stageSnapshot } from './snapshot-join.js'
import type {
  CommitResult,
  LogEntry,
  PurgeResult,
  RemoteRefused,
  SnapshotEntry,
  StateReader,
  StoreOptions,
  StoreSnapshot,
} from './store-types.js'

export type * from './store-types.js'
export { CHANGE_BYTES_MAX_DEFAULT } from './commit-group.js'
export { stateId } from './layout.js'

/** Most changes one group commit takes; the rest wait for the next batch. */
export const GROUP_CHANGES_MAX = 512

export class Store implements StateReader {
  readonly nodeId: NodeId
  readonly kind: 'level' | 'memory'
  readonly #backend: Backend
  readonly #options: StoreOptions
  readonly #queue: GroupQueue<Commit>
  #head: StoreHead
  /** The head as of the last fsynced batch: what survives a power loss. */
  #durable: StoreHead
  /** The queued "make durable" step that has not begun: callers until it begins share it. */
  #durableStep: Promise<void> | null = null
  /** The oldest LSN the log holds, or `lsn + 1` when it is empty. */
  #logStart: number
  /** Entries in the tombstone index, kept as commits, purges and joins change it. */
  #tombstones: number
  #listeners = new Set<(entries: readonly LogEntry[]) => void>()
  #closed = false
  /** Where the next tombstone scan resumes (garbage collection walks the index a slice per pass). */
  #tombCursor: string | null = null
  /**
   * While a received snapshot is joined: the states and clock as they were before the join, which
   * every read goes to, so the join is one step to readers as it is to `vc` (shared-view.ts).
   */
  #beforeJoin: SharedView | null = null
  /** The received snapshot being taken in, if any (snapshot-intake.ts). */
  #intake: SnapshotIntake | null = null
  /**
   * The last group staged while its batch is not yet written (group-commit.ts pipelines one deep):
   * the next group is staged on it. Null when every staged group is written.
   */
  #tip: { next: GroupBase; failed: unknown } | null = null
  /** Per origin, its last change staged: for the sparse dot index (commit-group.ts). */
  readonly #lastStaged = new Map<NodeId, { seq: number; lsn: number }>()
  /** Asked before each own seq is minted (`guardOwnWrites`). */
  #mintGuard: (() => void) | null = null
  /** Writes that left their key with siblings since the store opened (commit-group.ts). */
  readonly siblingsCreated: SiblingsCreated = { put: 0, del: 0 }

  private constructor(
    backend: Backend,
    options: StoreOptions,
    opened: { nodeId: NodeId; head: StoreHead; logStart: number; tombstones: number },
  ) {
    this.#backend = backend
    this.#options = options
    this.kind = backend.kind
    this.nodeId = opened.nodeId
    this.#head = opened.head
    this.#durable = opened.head
    this.#logStart = opened.logStart
    this.#tombstones = opened.tombstones
    this.#queue = new GroupQueue((items, previous) => this.#stageGroup(items, previous), GROUP_CHANGES_MAX)
  }

  static async open(options: StoreOptions): Promise<Store> {
    const backend = options.backend
    await backend.open()
    try {
      const { nodeId, head: stored } = await readOrInitMeta(backend, options.randomBytes)
      const recovered = await recoverSnapshot(backend, stored)
      const head = recovered === null ? stored : { ...stored, ...recovered }
      // Batches a killed process wrote without fsync are still in the page cache: make them
      // durable before anything is acknowledged from them.
      await backend.write([lsnWrite(head.lsn)], { sync: true })
      const logStart = await findLogStart(backend, head.lsn)
      return new Store(backend, options, { nodeId, head, logStart, tombstones: await countTombstones(backend) })
    } catch (error) {
      await backend.close()
      throw error
    }
  }

  get vc(): VectorClock {
    return this.#head.vc
  }

  get lsn(): number {
    return this.#head.lsn
  }

  get hlc(): Hlc {
    return this.#head.hlc
  }

  /** The vector clock as of the last fsynced batch: changes that survive a power loss. */
  get durableVc(): VectorClock {
    return this.#durable.vc
  }

  /**
   * Resolves once every change committed before the call is fsynced. One step serves every caller
   * until it begins; it runs after the commits queued before it, and those groups are fsynced
   * themselves (so the step usually finds nothing left to do). Otherwise it is one small synced
   * write, which makes every batch before it durable (as an fsync of LevelDB's write-ahead log does).
   */
  makeDurable(): Promise<void> {
    if (this.#durable.lsn >= this.#head.lsn) return Promise.resolve()
    this.#durableStep ??= this.#exclusive(async () => {
      this.#durableStep = null
      const head = this.#head
      if (this.#durable.lsn >= head.lsn) return
      await this.#backend.write([lsnWrite(head.lsn)], { sync: true })
      this.#durable = head
    })
    return this.#durableStep
  }

  /**
   * From now on, `check` is called as each change of this node's own is made, and a throw refuses
   * that change (the replicator's seq guard: replication/seq-guard.ts). Null removes it.
   */
  guardOwnWrites(check: (() => void) | null): void {
    this.#mintGuard = check
  }

  /** Turns local intents into one change and commits it (or nothing, if they change nothing). */
  commitLocal(intents: readonly Intent[]): Promise<CommitResult> {
    return this.#enqueue((resolve, reject) => ({ kind: 'local', intents, resolve, reject }))
  }

  /**
   * Applies a change from a peer. The caller (replication) delivers in causal order: the change
   * must be next for its origin and its deps applied. A duplicate resolves with `change: null`.
   * With `sync` the batch it goes in is fsynced (a peer waits for its ack): one trip to the disk
   * rather than a batch and then a `makeDurable` step. One change through `applyRemoteMany`; a
   * refusal is thrown.
   */
  async applyRemote(change: Change, sync = false): Promise<CommitResult> {
    const outcome = (await this.applyRemoteMany([change], () => sync))[0] as CommitResult | RemoteRefused
    if ('refused' in outcome) throw outcome.refused
    return outcome
  }

  /**
   * Applies changes from peers in order (each as `applyRemote` describes), with one promise for all:
   * each one's result, or what refused it. A catch-up hands the store thousands at once, and a
   * promise with its two closures per change was a tenth of what the receiving side allocated.
   */
  applyRemoteMany(
    changes: readonly Change[],
    sync: (change: Change) => boolean,
  ): Promise<readonly (CommitResult | RemoteRefused)[]> {
    return new Promise((resolve) => {
      this.#checkOpen()
      const batch = new RemoteBatch(changes.length, resolve)
      for (let index = 0; index < changes.length; index++) {
        const change = changes[index] as Change
        this.#queue.push(new RemoteItem(change, sync(change), batch, index))
      }
    })
  }

  /** Calls `listener` with each durable batch of log entries, in LSN order. Returns an unsubscribe. */
  onCommit(listener: (entries: readonly LogEntry[]) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  async getState<S extends Space>(space: S, key: string): Promise<StateOf[S]> {
    this.#checkOpen()
    return readState(this.#stateReader(), space, key)
  }

  iterateStates<S extends Space>(space: S, range: Range): AsyncIterable<[string, StateOf[S]]> {
    this.#checkOpen()
    // layout.ts asks for the entries at once: an iteration begun during a join keeps its view.
    return iterateStates(this.#stateReader(), space, range)
  }

  /**
   * Log entries with LSN greater than `afterLsn`: at most `limit`, and no more once `bytesMax`
   * encoded bytes are read (at least one entry), so a reader of large values stays bounded.
   */
  async readLog(afterLsn: number, limit: number, bytesMax = Infinity): Promise<LogEntry[]> {
    this.#checkOpen()
    return readLog(this.#backend, afterLsn, limit, bytesMax)
  }

  /** The oldest LSN still in the log (1 before any purge), or `lsn + 1` for an empty log. */
  async firstLsn(): Promise<number> {
    this.#checkOpen()
    return this.#logStart
  }

  /** A node-level fact kept with the data (e.g. that this node has joined a cluster). */
  async getMeta(key: string): Promise<string | undefined> {
    this.#checkOpen()
    return readUserMeta(this.#backend, key)
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.#checkOpen()
    await this.#backend.write([userMetaWrite(key, value)], { sync: true })
  }

  /** The LSN of the change `dot`, or undefined when the log does not hold it (purged, or joined from a snapshot). */
  async lsnOfDot(dot: Dot): Promise<number | undefined> {
    this.#checkOpen()
    return lsnInLog(this.#backend, dot, this.#logStart)
  }

  /** Log entries held (the log is purged from its start, so it is one contiguous range). */
  async logSize(): Promise<number> {
    this.#checkOpen()
    return this.#head.lsn + 1 - this.#logStart
  }

  /**
   * Keys whose state is all tombstones and not yet purged: the entries of the tombstone index, so
   * a key written again since it was deleted counts until a garbage collection pass reaches it.
   */
  async tombstoneCount(): Promise<number> {
    this.#checkOpen()
    return this.#tombstones
  }

  /**
   * One garbage collection pass (docs/protocol.md, "Garbage collection"), run between group commits:
   * - log entries from the start of the log whose dots `logCovered` holds (every member has
   *   them) are deleted with their dot index entries, but the last `keepLast` stay (so a watch
   *   can resume from a recent cursor);
   * - kv keys whose siblings are all tombstones with dots at or below `stableCut` are deleted:
   *   no change concurrent with them can arrive any more, so nothing they hide can come back.
   */
  purge(logCovered: VectorClock, stableCut: VectorClock, keepLast = 0): Promise<PurgeResult> {
    const result: PurgeResult = { logPurged: 0, tombstonesPurged: 0 }
    return this.#exclusive(async () => {
      const before = this.#logStart
      const upToLsn = this.#head.lsn - keepLast
      for await (const start of purgeLog(this.#backend, this.#head, before, logCovered, upToLsn)) {
        this.#logStart = start
        result.logPurged = start - before
      }
      const pass = await purgeTombstones(this.#backend, this.#tombCursor, stableCut)
      this.#tombCursor = pass.cursor
      this.#tombstones -= pass.entriesDeleted
      result.tombstonesPurged = pass.purged
    }).then(() => result)
  }

  /**
   * Begins taking in a snapshot that reflects `vc`, chunk by chunk: straight into place when
   * this store holds nothing, else on the stage (snapshot-intake.ts). One at a time: a new one
   * drops the one under way.
   */
  async receiveSnapshot(vc: VectorClock): Promise<SnapshotIntake> {
    this.#checkOpen()
    await this.#intake?.abandon()
    return beginIntake(
      {
        backend: this.#backend,
        head: () => this.#head,
        exclusive: (run) => this.#exclusive(run),
        readFrom: (view) => (this.#beforeJoin = view),
        placed: async (head) => {
          this.#head = head
          this.#durable = head
          this.#tombstones = await countTombstones(this.#backend)
        },
        notifyJoined: () => {
          for (const listener of this.#listeners) notify(listener, [])
        },
        began: (intake) => (this.#intake = intake),
        ended: () => (this.#intake = null),
        stage: (entries, stages) => stageSnapshot(this.#backend, entries, stages),
        applyStaged: (joinVc, stages) => this.applyStagedSnapshot(joinVc, stages),
        clearStage: () => clearStage(this.#backend),
      },
      vc,
    )
  }

  checkSnapshotStates(entries: readonly SnapshotEntry[]): CheckedStates {
    return checkStates(entries)
  }

  /**
   * Writes states of a snapshot being received to the stage (they change nothing until applied),
   * refusing any that does not decode (`MESHKV_ERR_DECODE`).
   */
  async stageSnapshot(entries: readonly SnapshotEntry[]): Promise<void> {
    this.#checkOpen()
    await stageSnapshot(this.#backend, checkStates(entries))
  }

  /** Drops a snapshot that was not completed. */
  async clearStage(): Promise<void> {
    this.#checkOpen()
    await clearStage(this.#backend)
  }

  /**
   * Joins the staged snapshot, which reflects the vector clock `vc`, into the node's states with
   * the types' state-based merges, then takes the join of the clocks (snapshot-join.ts). Commit
   * listeners then hear an empty batch: states changed without log entries.
   *
   * The join writes the states a page at a time and the clock last, so until it ends, reads go to
   * a view taken before it began (`#beforeJoin`); the new clock and the joined states become
   * visible in one step. A join that fails midway leaves reads on the live states (its marker
   * finishes it at the next open).
   */
  applyStagedSnapshot(vc: VectorClock, stages?: SnapshotStages): Promise<void> {
    return this.#exclusive(async () => {
      const before = new SharedView(this.#backend.snapshot())
      this.#beforeJoin = before
      try {
        const joined = await applyStagedSnapshot(this.#backend, this.#head, vc, stages)
        const tombstones = await countTombstones(this.#backend)
        this.#head = { ...this.#head, ...joined }
        // The join's last write (the clock) is fsynced, and with it every batch before it.
        this.#durable = this.#head
        this.#tombstones = tombstones
      } finally {
        this.#beforeJoin = null
        await before.release()
      }
    }).then(() => {
      for (const listener of this.#listeners) notify(listener, [])
    })
  }

  /**
   * A consistent view: states, vector clock and LSN as of one moment (during a join, the moment
   * before it).
   */
  async snapshot(): Promise<StoreSnapshot> {
    this.#checkOpen()
    const view = this.#beforeJoin?.share() ?? this.#backend.snapshot()
    try {
      const lsn = await readLsn(view)
      const vc = await readVc(view)
      return {
        vc,
        lsn,
        getState: (space, key) => readState(view, space, key),
        iterateStates: (space, range) => iterateStates(view, space, range),
        iterateRaw: (space, range) => view.iterate(space, range),
        close: () => view.close(),
      }
    } catch (error) {
      await view.close()
      throw error
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#queue.idle()
    // A snapshot going into place is finished by no one now: its marker removes it at the next open.
    await placeIntake(this.#intake)?.release()
    this.#listeners.clear()
    await this.#backend.close()
  }

  /** Where states are read: the live ones, or during a join the ones before it. */
  #stateReader(): BackendReader {
    return this.#beforeJoin ?? this.#backend
  }

  #checkOpen(): void {
    if (this.#closed) throw new MeshError('MESHKV_ERR_CLOSED', 'the store is closed')
  }

  #enqueue(
    make: (resolve: (result: CommitResult) => void, reject: (error: unknown) => void) => Commit,
  ): Promise<CommitResult> {
    return new Promise<CommitResult>((resolve, reject) => {
      // Inside the executor, so a closed store rejects rather than throws.
      this.#checkOpen()
      this.#queue.push(make(resolve, reject))
    })
  }

  /**
   * A snapshot going into place moves onto the stage before any commit runs (snapshot-intake.ts).
   * False (every item rejected) if that failed: no commit may run beside its states.
   */
  async #beforeCommits(items: readonly Commit[]): Promise<boolean> {
    try {
      await placeIntake(this.#intake)?.beforeCommits()
      return true
    } catch (error) {
      for (const item of items) item.reject(error)
      return false
    }
  }

  #exclusive(run: () => Promise<void>): Promise<void> {
    try {
      this.#checkOpen()
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#queue.exclusive(run)
  }

  /**
   * Stages a group on the one in flight (or on the head when none is) and returns its write.
   * The write fails the group without writing when the one it was staged on failed.
   */
  async #stageGroup(items: Commit[], previous: Promise<void>): Promise<() => Promise<void>> {
    // A snapshot going into place moves to the stage first, with nothing in flight beside it.
    if (this.#intake !== null) await previous
    if (!(await this.#beforeCommits(items))) return () => Promise.resolve()
    const parent = this.#tip
    const staged = await stageGroup(
      {
        backend: this.#backend,
        nodeId: this.nodeId,
        now: this.#options.now,
        // A waiting "make durable" step runs after this group: fsyncing the group does its work.
        sync:
          (this.#options.sync ?? false) ||
          this.#durableStep !== null ||
          items.some((item) => item.kind === 'remote' && item.sync),
        maxClockOffsetMs: this.#options.maxClockOffsetMs,
        changeBytesMax: this.#options.changeBytesMax ?? CHANGE_BYTES_MAX_DEFAULT,
        mintGuard: this.#mintGuard,
        lastStaged: this.#lastStaged,
      },
      parent?.next ?? { head: this.#head, overlay: null },
      items,
    )
    const tip = { next: staged.next, failed: null as unknown }
    this.#tip = tip
    return async () => {
      if (parent !== null && parent.failed !== null) {
        // Checked before any await: a group staged after this point stands on the head again.
        tip.failed = parent.failed
        if (this.#tip === tip) this.#tip = null
        staged.abandon(parent.failed)
        return
      }
      const { outcome, failed, settle } = await staged.write()
      if (failed !== null) {
        tip.failed = failed
        // What it staged was not written: each origin's next change gets an index entry.
        this.#lastStaged.clear()
      }
      if (this.#tip === tip || failed !== null) this.#tip = null
      if (outcome !== null) {
        this.#head = outcome.head
        if (outcome.synced) this.#durable = outcome.head
        this.#tombstones += outcome.tombsAdded
        this.siblingsCreated.put += outcome.siblings.put
        this.siblingsCreated.del += outcome.siblings.del
      }
      settle()
      if (outcome !== null) for (const listener of this.#listeners) notify(listener, outcome.entries)
    }
  }
}

/**
 * Calls one commit listener. A listener that throws (an app's 'change' handler) must neither stall
 * the commit loop nor keep the other listeners (log followers) from waking: its error is rethrown
 * on its own, as an uncaught exception, the way an EventEmitter listener's error would surface.
 */
function notify(listener: (entries: readonly LogEntry[]) => void, entries: readonly LogEntry[]): void {
  try {
    listener(entries)
  } catch (error) {
    queueMicrotask(() => {
      throw error
    })
  }
}

/** The outcomes of one `applyRemoteMany`, resolved once every change is settled. */
class RemoteBatch {
  readonly #outcomes: (CommitResult | RemoteRefused)[]
  #left: number

  constructor(
    size: number,
    readonly done: (outcomes: readonly (CommitResult | RemoteRefused)[]) => void,
  ) {
    this.#outcomes = new Array<CommitResult | RemoteRefused>(size)
    this.#left = size
    if (size === 0) done(this.#outcomes)
  }

  settle(index: number, outcome: CommitResult | RemoteRefused): void {
    this.#outcomes[index] = outcome
    if (--this.#left === 0) this.done(this.#outcomes)
  }
}

/** One change of a `RemoteBatch` in the commit queue: a remote commit that settles its slot. */
class RemoteItem {
  readonly kind = 'remote'

  constructor(
    readonly change: Change,
    readonly sync: boolean,
    readonly batch: RemoteBatch,
    readonly index: number,
  ) {}

  resolve(result: CommitResult): void {
    this.batch.settle(this.index, result)
  }

  reject(error: unknown): void {
    this.batch.settle(this.index, { refused: error })
  }
}
