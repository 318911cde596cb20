/**
 * The store: durable node state over a `Backend`. Applying a change is ONE atomic batch of
 * log entry + new key states + vector clock entry + dot index + meta. Concurrent commits are
 * group-committed: while one batch is being written, new commits queue up and the next batch
 * takes them all. Local intents become changes inside the commit, so a precondition and the
 * write it guards are one atomic step, and a blind write replaces exactly what the node holds.
 *
 * Layout (all keys UTF-8 strings, values msgpack unless noted):
 *   meta/nodeId  utf8 node id        meta/format  utf8 "1"
 *   meta/lsn     utf8 decimal        meta/hlc     {wallMs, logical}
 *   log/<lsn as 16 hex digits>       the change
 *   dots/<node>:<seq as 16 hex>      utf8 decimal lsn
 *   vc/<node>                        utf8 decimal seq
 *   kv|counter|set/<key>             the key's state
 *   tombs/<key>                      empty: the kv key's state was all tombstones when written
 *                                    (garbage collection checks it again before purging)
 *   stage/<space>\0<key>             a state of a snapshot being received (joined at its end)
 *   meta/snapshot                    {vc}: a received snapshot is being joined (resumed at open)
 */
import type { Dot, Hlc, NodeId, VectorClock } from '../clock/index.js'
import {
  HLC_ZERO,
  hlcObserve,
  hlcTick,
  maxHlc,
  isHlc,
  isNodeId,
  isVectorClock,
  nodeIdFromBytes,
  vcGet,
  vcHasDot,
  vcCovers,
  vcJoin,
  vcNormalize,
  vcSet,
} from '../clock/index.js'
import { decodeChange, decodeChecked, decodeState, encode, encodeChange, encodeState } from '../codec/index.js'
import type { AnyState, Change, Intent, Op, RegisterState, Space, StateOf } from '../crdt/index.js'
import { SPACES, applyOp, emptyState, isEmptyState, joinState, opTarget, prepareOp } from '../crdt/index.js'
import { MeshError, assert, isMeshError } from '../errors.js'
import type { Backend, BackendReader, BackendWrite, Range } from './backend.js'

export const STORE_FORMAT = '1'
/** Most changes one group commit takes; the rest wait for the next batch. */
export const GROUP_CHANGES_MAX = 512
/** Largest encoded change this node makes: a peer frame is at most 4 MiB, with room for framing. */
export const CHANGE_BYTES_MAX_DEFAULT = 3.5 * 1024 * 1024

export interface StoreOptions {
  backend: Backend
  /** fsync each batch. */
  sync?: boolean
  now: () => number
  randomBytes: (size: number) => Uint8Array
  maxClockOffsetMs?: number
  /** Largest encoded change this node may make (it must fit in a 4 MiB peer frame). */
  changeBytesMax?: number
}

export interface LogEntry {
  readonly lsn: number
  readonly change: Change
}

export interface CommitResult {
  /** `null` when the intents changed nothing. */
  readonly change: Change | null
  /** The LSN of the change, or the current LSN when nothing changed. */
  readonly lsn: number
  /** The store's vector clock right after this commit. */
  readonly vc: VectorClock
  /** States after the commit of every key the intents touched, by `space\0key`. */
  readonly states: ReadonlyMap<string, AnyState>
}

export interface StateReader {
  readonly vc: VectorClock
  readonly lsn: number
  getState<S extends Space>(space: S, key: string): Promise<StateOf[S]>
  iterateStates<S extends Space>(space: S, range: Range): AsyncIterable<[string, StateOf[S]]>
}

export interface StoreSnapshot extends StateReader {
  /** Encoded states of one space, as stored (what a snapshot sender ships without re-encoding). */
  iterateRaw(space: Space, range: Range): AsyncIterable<[string, Uint8Array]>
  close(): Promise<void>
}

/** One state of a snapshot on the wire: its space, key and encoded state. */
export type SnapshotEntry = readonly [space: Space, key: string, state: Uint8Array]

/** What one garbage collection pass did and found. */
export interface PurgeResult {
  logPurged: number
  tombstonesPurged: number
}

type Commit =
  | {
      kind: 'local'
      intents: readonly Intent[]
      resolve: (result: CommitResult) => void
      reject: (error: unknown) => void
    }
  | { kind: 'remote'; change: Change; resolve: (result: CommitResult) => void; reject: (error: unknown) => void }

/** Work that must see no commit in flight (purging, joining a snapshot): it runs between groups. */
interface Task {
  kind: 'task'
  run: () => Promise<void>
  resolve: () => void
  reject: (error: unknown) => void
}

type Pending = Commit | Task

/** Log entries or tombstones one purge batch takes. */
const PURGE_BATCH_MAX = 2000
/** States joined per batch when a snapshot is applied. */
const SNAPSHOT_JOIN_BATCH = 1000

/** What one group commit has built so far, before its batch is durable. */
interface Group {
  vc: VectorClock
  lsn: number
  hlc: Hlc
  overlay: Map<string, AnyState>
  writes: BackendWrite[]
  entries: LogEntry[]
  settled: { item: Pending; result: CommitResult }[]
}

export class Store implements StateReader {
  readonly nodeId: NodeId
  readonly kind: 'level' | 'memory'
  readonly #backend: Backend
  readonly #options: StoreOptions
  #vc: VectorClock
  #lsn: number
  #hlc: Hlc
  #queue: Pending[] = []
  #flushing: Promise<void> | null = null
  #listeners = new Set<(entries: readonly LogEntry[]) => void>()
  #closed = false
  /** Every log entry below this LSN is purged (0: not known yet on this run). */
  #purgedBelow = 0
  /** Where the next tombstone scan resumes (garbage collection walks the index a slice per pass). */
  #tombCursor: string | null = null

  private constructor(
    backend: Backend,
    options: StoreOptions,
    state: { nodeId: NodeId; vc: VectorClock; lsn: number; hlc: Hlc },
  ) {
    this.#backend = backend
    this.#options = options
    this.kind = backend.kind
    this.nodeId = state.nodeId
    this.#vc = state.vc
    this.#lsn = state.lsn
    this.#hlc = state.hlc
  }

  static async open(options: StoreOptions): Promise<Store> {
    const backend = options.backend
    await backend.open()
    try {
      const state = await readOrInitMeta(backend, options)
      const store = new Store(backend, options, state)
      await store.#recoverSnapshot()
      return store
    } catch (error) {
      await backend.close()
      throw error
    }
  }

  get vc(): VectorClock {
    return this.#vc
  }

  get lsn(): number {
    return this.#lsn
  }

  get hlc(): Hlc {
    return this.#hlc
  }

  /** Turns local intents into one change and commits it (or nothing, if they change nothing). */
  commitLocal(intents: readonly Intent[]): Promise<CommitResult> {
    return this.#enqueue((resolve, reject) => ({ kind: 'local', intents, resolve, reject }))
  }

  /**
   * Applies a change from a peer. The caller (replication) delivers in causal order: the change
   * must be next for its origin and its deps applied. A duplicate resolves with `change: null`.
   */
  applyRemote(change: Change): Promise<CommitResult> {
    return this.#enqueue((resolve, reject) => ({ kind: 'remote', change, resolve, reject }))
  }

  /** Calls `listener` with each durable batch of log entries, in LSN order. Returns an unsubscribe. */
  onCommit(listener: (entries: readonly LogEntry[]) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  async getState<S extends Space>(space: S, key: string): Promise<StateOf[S]> {
    this.#checkOpen()
    return readState(this.#backend, space, key)
  }

  iterateStates<S extends Space>(space: S, range: Range): AsyncIterable<[string, StateOf[S]]> {
    this.#checkOpen()
    return iterateStates(this.#backend, space, range)
  }

  /** Log entries with LSN greater than `afterLsn`, at most `limit`. */
  /**
   * Log entries with LSN greater than `afterLsn`: at most `limit`, and no more once `bytesMax`
   * encoded bytes are read (at least one entry), so a reader of large values stays bounded.
   */
  async readLog(afterLsn: number, limit: number, bytesMax = Infinity): Promise<LogEntry[]> {
    this.#checkOpen()
    const entries: LogEntry[] = []
    let bytesRead = 0
    for await (const [key, bytes] of this.#backend.iterate('log', { gt: lsnKey(afterLsn), limit })) {
      entries.push({ lsn: parseLsnKey(key), change: decodeChange(bytes) })
      bytesRead += bytes.length
      if (bytesRead >= bytesMax) break
    }
    return entries
  }

  /** The oldest LSN still in the log (1 before any purge), or `lsn + 1` for an empty log. */
  async firstLsn(): Promise<number> {
    this.#checkOpen()
    // Purged up to here: a seek starts past the deleted keys (LevelDB would step over each
    // deletion marker until compaction drops them).
    const purgedBelow = this.#purgedBelow
    for await (const [key] of this.#backend.iterate(
      'log',
      purgedBelow === 0 ? { limit: 1 } : { gte: lsnKey(purgedBelow), limit: 1 },
    ))
      return parseLsnKey(key)
    return this.#lsn + 1
  }

  /** A node-level fact kept with the data (e.g. that this node has joined a cluster). */
  async getMeta(key: string): Promise<string | undefined> {
    this.#checkOpen()
    return readUtf8(this.#backend, 'meta', `user:${key}`)
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.#checkOpen()
    await this.#backend.write([putUtf8('meta', `user:${key}`, value)], { sync: true })
  }

  /** The LSN of the change `dot`, or undefined when the log does not hold it (purged, or joined from a snapshot). */
  async lsnOfDot(dot: Dot): Promise<number | undefined> {
    this.#checkOpen()
    const bytes = await this.#backend.get('dots', dotIndexKey(dot))
    if (bytes === undefined) return undefined
    const lsn = Number(Buffer.from(bytes).toString('utf8'))
    // A purge deletes log entries before their index entries (two batches): one cut off between
    // them leaves index entries of purged changes behind.
    return lsn >= (await this.firstLsn()) ? lsn : undefined
  }

  /** Log entries held (the log is purged from its start, so it is one contiguous range). */
  async logSize(): Promise<number> {
    return this.#lsn + 1 - (await this.firstLsn())
  }

  /** Keys whose state is all tombstones and not yet purged (stale index entries included until the next pass). */
  async tombstoneCount(): Promise<number> {
    this.#checkOpen()
    let count = 0
    for await (const _ of this.#backend.iterate('tombs', {})) count++
    return count
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
      result.logPurged = await this.#purgeLog(logCovered, this.#lsn - keepLast)
      result.tombstonesPurged = await this.#purgeTombstones(stableCut)
    }).then(() => result)
  }

  /** Writes states of a snapshot being received to the stage (they change nothing until applied). */
  async stageSnapshot(entries: readonly SnapshotEntry[]): Promise<void> {
    this.#checkOpen()
    const writes: BackendWrite[] = []
    for (const [space, key, bytes] of entries) {
      if (!SPACES.includes(space))
        throw new MeshError('MESHKV_ERR_DECODE', `a snapshot names an unknown key space ${JSON.stringify(space)}`)
      decodeState(space, bytes) // refuses a damaged or malformed state before it is kept
      writes.push({ type: 'put', sub: 'stage', key: stateId(space, key), value: bytes })
    }
    await this.#backend.write(writes, { sync: false })
  }

  /** Drops a snapshot that was not completed. */
  async clearStage(): Promise<void> {
    this.#checkOpen()
    await clearSub(this.#backend, 'stage')
  }

  /**
   * Joins the staged snapshot, which reflects the vector clock `vc`, into the node's states with
   * the types' state-based merges, then takes the join of the clocks. A marker written first
   * makes it resumable: a crash midway finishes the join at the next open (joins are idempotent),
   * so the clock never claims changes whose states were not all joined.
   */
  applyStagedSnapshot(vc: VectorClock): Promise<void> {
    return this.#exclusive(async () => {
      await this.#backend.write([{ type: 'put', sub: 'meta', key: 'snapshot', value: encode({ vc, phase: 1 }) }], {
        sync: true,
      })
      await this.#joinStage(vc, 1)
    }).then(() => {
      for (const listener of this.#listeners) notify(listener, [])
    })
  }

  /** A consistent view: states, vector clock and LSN as of one moment. */
  async snapshot(): Promise<StoreSnapshot> {
    this.#checkOpen()
    const view = this.#backend.snapshot()
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
    while (this.#flushing !== null) await this.#flushing
    this.#listeners.clear()
    await this.#backend.close()
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
      if (this.#flushing === null) this.#flushing = this.#flush()
    })
  }

  #exclusive(run: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#checkOpen()
      this.#queue.push({ kind: 'task', run, resolve, reject })
      if (this.#flushing === null) this.#flushing = this.#flush()
    })
  }

  async #flush(): Promise<void> {
    // Let the calls of this tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve))
    while (this.#queue.length > 0) {
      const first = this.#queue[0] as Pending
      if (first.kind === 'task') {
        this.#queue.shift()
        await first.run().then(first.resolve, first.reject)
        continue
      }
      let end = this.#queue.findIndex((item) => item.kind === 'task')
      if (end === -1) end = this.#queue.length
      const items = this.#queue.splice(0, Math.min(end, GROUP_CHANGES_MAX)) as Commit[]
      await this.#commitGroup(items)
    }
    this.#flushing = null
  }

  /**
   * Purges the log up to (not including) the first change `logCovered` lacks, and at most up to
   * `upToLsn`. The bound comes from the dot index, so no entry is read: the keys are made.
   */
  async #purgeLog(logCovered: VectorClock, upToLsn: number): Promise<number> {
    const first = await this.firstLsn()
    let bound = Math.min(this.#lsn + 1, upToLsn + 1)
    for (const [node, seq] of Object.entries(this.#vc) as [NodeId, number][]) {
      const held = vcGet(logCovered, node)
      if (held >= seq) continue
      const lsn = await this.lsnOfDot({ node, seq: held + 1 })
      if (lsn !== undefined) bound = Math.min(bound, lsn)
    }
    if (bound <= first) return 0
    for (let from = first; from < bound; from += PURGE_BATCH_MAX) {
      const writes: BackendWrite[] = []
      for (let lsn = from; lsn < Math.min(bound, from + PURGE_BATCH_MAX); lsn++)
        writes.push({ type: 'del', sub: 'log', key: lsnKey(lsn) })
      await this.#backend.write(writes, { sync: false })
    }
    // Their index entries: per origin, in seq order (which is LSN order), up to the bound.
    for (const [node, seq] of Object.entries(this.#vc) as [NodeId, number][]) {
      const stale: BackendWrite[] = []
      const upTo = Math.min(seq, vcGet(logCovered, node))
      for await (const [key, bytes] of this.#backend.iterate('dots', {
        gte: `${node}:`,
        lte: dotIndexKey({ node, seq: upTo }),
      })) {
        if (Number(Buffer.from(bytes).toString('utf8')) >= bound) break
        stale.push({ type: 'del', sub: 'dots', key })
        if (stale.length >= PURGE_BATCH_MAX) await this.#backend.write(stale.splice(0), { sync: false })
      }
      if (stale.length > 0) await this.#backend.write(stale, { sync: false })
    }
    this.#purgedBelow = bound
    return bound - first
  }

  /** Walks a slice of the tombstone index: purges stable tombstones, drops stale index entries. */
  async #purgeTombstones(stableCut: VectorClock): Promise<number> {
    const writes: BackendWrite[] = []
    let purged = 0
    let scanned = 0
    let last: string | null = null
    const range: Range =
      this.#tombCursor === null ? { limit: PURGE_BATCH_MAX } : { gt: this.#tombCursor, limit: PURGE_BATCH_MAX }
    for await (const [key] of this.#backend.iterate('tombs', range)) {
      scanned++
      last = key
      const state = await readState(this.#backend, 'kv', key)
      if (!isAllTombstones(state)) {
        writes.push({ type: 'del', sub: 'tombs', key })
      } else if (state.siblings.every((sibling) => vcHasDot(stableCut, sibling.dot))) {
        writes.push({ type: 'del', sub: 'tombs', key }, { type: 'del', sub: 'kv', key })
        purged++
      }
    }
    // The next pass goes on after the last key seen, and starts over once the index is walked.
    this.#tombCursor = scanned < PURGE_BATCH_MAX ? null : last
    if (writes.length > 0) await this.#backend.write(writes, { sync: false })
    return purged
  }

  async #recoverSnapshot(): Promise<void> {
    const marker = await this.#backend.get('meta', 'snapshot')
    if (marker === undefined) {
      // A snapshot cut off before its end left states on the stage only: they are dropped.
      await clearSub(this.#backend, 'stage')
      return
    }
    const { vc, phase } = decodeChecked(marker, isSnapshotMarker, 'snapshot marker')
    await this.#joinStage(vc, phase)
  }

  /**
   * Joins the staged snapshot in two phases, each idempotent, the marker saying which one runs:
   * 1. keys this node holds that the snapshot lacks are joined with the empty state under the
   *    snapshot's clock (what the sender removed or purged goes here too);
   * 2. each staged state is joined into the node's state and taken off the stage.
   * Then the clock becomes the join of both clocks.
   */
  async #joinStage(vc: VectorClock, phase: 1 | 2 = 1): Promise<void> {
    const ownVc = this.#vc
    if (phase === 1) {
      await this.#joinAbsent(ownVc, vc)
      await this.#backend.write([{ type: 'put', sub: 'meta', key: 'snapshot', value: encode({ vc, phase: 2 }) }], {
        sync: true,
      })
    }
    let hlc = this.#hlc
    for (;;) {
      const page: [string, Uint8Array][] = []
      for await (const entry of this.#backend.iterate('stage', { limit: SNAPSHOT_JOIN_BATCH })) page.push(entry)
      if (page.length === 0) break
      // One read per space for the page's live states (stage keys sort by space first).
      const targets = page.map(([id]) => parseStateId(id))
      const live = new Map<string, Uint8Array | undefined>()
      for (const space of SPACES) {
        const keys = targets.filter((target) => target.space === space).map((target) => target.key)
        if (keys.length === 0) continue
        const values = await this.#backend.getMany(space, keys)
        keys.forEach((key, index) => live.set(stateId(space, key), values[index]))
      }
      const writes: BackendWrite[] = []
      page.forEach(([id, bytes], index) => {
        const { space, key } = targets[index] as { space: Space; key: string }
        const held = live.get(id)
        const joined = joinState(
          space,
          held === undefined ? emptyState(space) : decodeState(space, held),
          ownVc,
          decodeState(space, bytes),
          vc,
        )
        if (space === 'kv') for (const sibling of (joined as RegisterState).siblings) hlc = maxHlc(hlc, sibling.hlc)
        writes.push(...stateWrites(space, key, joined), { type: 'del', sub: 'stage', key: id })
      })
      await this.#backend.write(writes, { sync: false })
    }
    const newVc = vcJoin(ownVc, vc)
    const writes: BackendWrite[] = [
      { type: 'del', sub: 'meta', key: 'snapshot' },
      { type: 'put', sub: 'meta', key: 'hlc', value: encode(hlc) },
    ]
    for (const [node, seq] of Object.entries(newVc) as [NodeId, number][])
      if (seq !== vcGet(ownVc, node)) writes.push(putUtf8('vc', node, String(seq)))
    await this.#backend.write(writes, { sync: true })
    this.#vc = newVc
    this.#hlc = hlc
  }

  /** Phase 1 of joining a snapshot: the node's registers and sets the snapshot does not hold. */
  async #joinAbsent(ownVc: VectorClock, vc: VectorClock): Promise<void> {
    for (const space of ['kv', 'set'] as const) {
      let after: string | null = null
      for (;;) {
        const page: [string, Uint8Array][] = []
        for await (const entry of this.#backend.iterate(
          space,
          after === null ? { limit: SNAPSHOT_JOIN_BATCH } : { gt: after, limit: SNAPSHOT_JOIN_BATCH },
        ))
          page.push(entry)
        if (page.length === 0) break
        after = (page[page.length - 1] as [string, Uint8Array])[0]
        const staged = await this.#backend.getMany(
          'stage',
          page.map(([key]) => stateId(space, key)),
        )
        const writes: BackendWrite[] = []
        page.forEach(([key, bytes], index) => {
          if (staged[index] !== undefined) return
          const joined = joinState(space, decodeState(space, bytes), ownVc, emptyState(space), vc)
          const encoded = isEmptyState(space, joined) ? null : encodeState(joined as never)
          if (encoded === null || Buffer.compare(encoded, bytes) !== 0) writes.push(...stateWrites(space, key, joined))
        })
        if (writes.length > 0) await this.#backend.write(writes, { sync: false })
      }
    }
  }

  async #commitGroup(items: Commit[]): Promise<void> {
    const group: Group = {
      vc: this.#vc,
      lsn: this.#lsn,
      hlc: this.#hlc,
      overlay: new Map(),
      writes: [],
      entries: [],
      settled: [],
    }
    try {
      await this.#prefetch(group, items)
    } catch (error) {
      for (const item of items) item.reject(error)
      return
    }
    for (const item of items) {
      try {
        const change =
          item.kind === 'local' ? await this.#prepareLocal(group, item.intents) : this.#checkRemote(group, item.change)
        const staged = change === null ? new Map<string, AnyState>() : await this.#stage(group, change)
        // A local commit answers with every key it named, including those it left unchanged.
        const states = item.kind === 'local' ? await this.#readTouched(group, item) : staged
        group.settled.push({ item, result: { change, lsn: group.lsn, vc: group.vc, states } })
      } catch (error) {
        item.reject(error)
      }
    }
    if (group.entries.length > 0) {
      group.writes.push(putUtf8('meta', 'lsn', String(group.lsn)), {
        type: 'put',
        sub: 'meta',
        key: 'hlc',
        value: encode(group.hlc),
      })
      // The clock once per group: one entry per origin that moved, not one per change.
      for (const [node, seq] of Object.entries(group.vc) as [NodeId, number][])
        if (seq !== vcGet(this.#vc, node)) group.writes.push(putUtf8('vc', node, String(seq)))
      // A change this node made is synced even when batches are not: lost to a power loss, its
      // dot would be given to another change (peers would drop that one as a duplicate), and no
      // peer would send it back (peers never echo a node's own changes), so the node would stall.
      const holdsOwn = group.entries.some((entry) => entry.change.dot.node === this.nodeId)
      try {
        await this.#backend.write(group.writes, { sync: (this.#options.sync ?? false) || holdsOwn })
      } catch (error) {
        const failure =
          error instanceof MeshError
            ? error
            : new MeshError('MESHKV_ERR_STORAGE', 'the store failed to write', { cause: error })
        for (const { item } of group.settled) item.reject(failure)
        return
      }
      this.#vc = group.vc
      this.#lsn = group.lsn
      this.#hlc = group.hlc
    }
    for (const { item, result } of group.settled) item.resolve(result)
    if (group.entries.length > 0) for (const listener of this.#listeners) notify(listener, group.entries)
  }

  async #prepareLocal(group: Group, intents: readonly Intent[]): Promise<Change | null> {
    checkDistinctTargets(intents)
    const ops: Op[] = []
    for (const intent of intents) {
      const target = opTarget(intent)
      const state = await this.#read(group, target.space, target.key)
      const op = prepareOp(intent, state as never, this.nodeId)
      if (op !== null) ops.push(op)
    }
    if (ops.length === 0) return null
    const seq = vcGet(group.vc, this.nodeId) + 1
    const hlc = hlcTick(group.hlc, this.#options.now())
    return { dot: { node: this.nodeId, seq }, deps: group.vc, hlc, ops }
  }

  /**
   * A remote change that is a duplicate gives `null`. One that is not next for its origin, or
   * whose deps are missing, is refused with `MESHKV_ERR_OUT_OF_ORDER`: replication delivers in
   * causal order, but an earlier change of the same batch may have been refused (clock skew), and
   * then what follows it must wait too.
   */
  #checkRemote(group: Group, change: Change): Change | null {
    if (vcHasDot(group.vc, change.dot)) return null
    if (vcGet(group.vc, change.dot.node) !== change.dot.seq - 1 || !vcCovers(group.vc, change.deps)) {
      throw new MeshError(
        'MESHKV_ERR_OUT_OF_ORDER',
        `change ${change.dot.node}:${change.dot.seq} arrived before the changes it follows`,
      )
    }
    // Refuses (and the caller counts) a change stamped too far ahead; our clock is left unchanged.
    hlcObserve(group.hlc, change.hlc, this.#options.now(), this.#options.maxClockOffsetMs)
    return change
  }

  /** Applies a change to the group: new states into the overlay, all its writes into the batch. */
  async #stage(group: Group, change: Change): Promise<Map<string, AnyState>> {
    const states = new Map<string, AnyState>()
    for (const op of change.ops) {
      const { space, key } = opTarget(op)
      const id = stateId(space, key)
      const before = states.get(id) ?? (await this.#read(group, space, key))
      states.set(id, applyOp(before, op, change.dot, change.hlc, change.deps))
    }
    // Encode everything before touching the group, so a failure leaves the group as it was.
    const lsn = group.lsn + 1
    const writes: BackendWrite[] = [
      { type: 'put', sub: 'log', key: lsnKey(lsn), value: this.#encodeChange(change) },
      putUtf8('dots', dotIndexKey(change.dot), String(lsn)),
    ]
    for (const [id, state] of states) {
      const { space, key } = parseStateId(id)
      writes.push(...stateWrites(space, key, state))
    }
    for (const [id, state] of states) group.overlay.set(id, state)
    group.writes.push(...writes)
    group.entries.push({ lsn, change })
    group.lsn = lsn
    group.vc = vcSet(group.vc, change.dot.node, change.dot.seq)
    group.hlc = maxHlc(group.hlc, change.hlc)
    return states
  }

  async #readTouched(group: Group, item: Commit): Promise<Map<string, AnyState>> {
    const states = new Map<string, AnyState>()
    if (item.kind !== 'local') return states
    for (const intent of item.intents) {
      const { space, key } = opTarget(intent)
      states.set(stateId(space, key), await this.#read(group, space, key))
    }
    return states
  }

  /**
   * A change this node makes must fit in one peer frame, or it could never replicate: it is
   * refused here, before anything is written. A peer's change already crossed in a frame.
   */
  #encodeChange(change: Change): Uint8Array {
    if (change.dot.node !== this.nodeId) return encodeChange(change)
    const limit = this.#options.changeBytesMax ?? CHANGE_BYTES_MAX_DEFAULT
    try {
      return encodeChange(change, limit)
    } catch (error) {
      if (!isMeshError(error, 'MESHKV_ERR_FRAME_TOO_LARGE')) throw error
      throw new MeshError(
        'MESHKV_ERR_VALUE_TOO_LARGE',
        `one write (a batch counts as one) may carry at most ${limit} bytes, so that it fits in a replication frame`,
        {
          details: error.details,
        },
      )
    }
  }

  /** Reads every key the group will touch in one call per space, instead of one read per key. */
  async #prefetch(group: Group, items: readonly Commit[]): Promise<void> {
    const wanted = new Map<Space, Set<string>>()
    for (const item of items) {
      const targets = item.kind === 'local' ? item.intents.map(opTarget) : item.change.ops.map(opTarget)
      for (const { space, key } of targets) {
        const keys = wanted.get(space) ?? new Set<string>()
        keys.add(key)
        wanted.set(space, keys)
      }
    }
    for (const [space, keySet] of wanted) {
      const keys = [...keySet]
      const values = await this.#backend.getMany(space, keys)
      keys.forEach((key, index) => {
        const bytes = values[index]
        group.overlay.set(stateId(space, key), bytes === undefined ? emptyState(space) : decodeState(space, bytes))
      })
    }
  }

  /** The state as this group sees it; a read from the backend is kept so it is read once. */
  async #read(group: Group, space: Space, key: string): Promise<AnyState> {
    const id = stateId(space, key)
    const staged = group.overlay.get(id)
    if (staged !== undefined) return staged
    const state = await readState(this.#backend, space, key)
    group.overlay.set(id, state)
    return state
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

/** The writes that store a key's new state (and index it when it is all tombstones). */
function stateWrites(space: Space, key: string, state: AnyState): BackendWrite[] {
  if (isEmptyState(space, state)) return [{ type: 'del', sub: space, key }]
  const put: BackendWrite = { type: 'put', sub: space, key, value: encodeState(state as never) }
  return space === 'kv' && isAllTombstones(state as RegisterState)
    ? [put, { type: 'put', sub: 'tombs', key, value: EMPTY_BYTES }]
    : [put]
}

const EMPTY_BYTES = new Uint8Array(0)

function isSnapshotMarker(value: unknown): value is { vc: VectorClock; phase: 1 | 2 } {
  const marker = value as { vc?: unknown; phase?: unknown }
  return (
    typeof value === 'object' &&
    value !== null &&
    isVectorClock(marker.vc) &&
    (marker.phase === 1 || marker.phase === 2)
  )
}

function isAllTombstones(state: RegisterState): boolean {
  return state.siblings.length > 0 && state.siblings.every((sibling) => sibling.value === null)
}

async function clearSub(backend: Backend, sub: 'stage'): Promise<void> {
  for (;;) {
    const writes: BackendWrite[] = []
    for await (const [key] of backend.iterate(sub, { limit: PURGE_BATCH_MAX })) writes.push({ type: 'del', sub, key })
    if (writes.length === 0) return
    await backend.write(writes, { sync: false })
  }
}

/** One intent per key (per member for sets): two writes of one key in one change are refused. */
function checkDistinctTargets(intents: readonly Intent[]): void {
  const seen = new Set<string>()
  for (const intent of intents) {
    const { space, key } = opTarget(intent)
    const id =
      intent.type === 'set.add' || intent.type === 'set.remove'
        ? `${space}\0${key}\0${intent.member}`
        : `${space}\0${key}`
    if (seen.has(id)) {
      throw new MeshError('MESHKV_ERR_BATCH_INVALID', `a batch writes ${space} ${JSON.stringify(key)} more than once`)
    }
    seen.add(id)
  }
}

export function stateId(space: Space, key: string): string {
  return `${space}\0${key}`
}

function parseStateId(id: string): { space: Space; key: string } {
  const at = id.indexOf('\0')
  return { space: id.slice(0, at) as Space, key: id.slice(at + 1) }
}

export function lsnKey(lsn: number): string {
  return lsn.toString(16).padStart(16, '0')
}

function parseLsnKey(key: string): number {
  const lsn = Number.parseInt(key, 16)
  assert(Number.isSafeInteger(lsn) && lsn >= 1, `bad log key ${key}`)
  return lsn
}

function dotIndexKey(dot: Dot): string {
  return `${dot.node}:${dot.seq.toString(16).padStart(16, '0')}`
}

function putUtf8(sub: BackendWrite['sub'], key: string, text: string): BackendWrite {
  return { type: 'put', sub, key, value: Buffer.from(text, 'utf8') }
}

async function readState<S extends Space>(reader: BackendReader, space: S, key: string): Promise<StateOf[S]> {
  const bytes = await reader.get(space, key)
  return bytes === undefined ? emptyState(space) : decodeState(space, bytes)
}

async function* iterateStates<S extends Space>(
  reader: BackendReader,
  space: S,
  range: Range,
): AsyncGenerator<[string, StateOf[S]]> {
  for await (const [key, bytes] of reader.iterate(space, range)) yield [key, decodeState(space, bytes)]
}

async function readUtf8(reader: BackendReader, sub: BackendWrite['sub'], key: string): Promise<string | undefined> {
  const bytes = await reader.get(sub, key)
  return bytes === undefined ? undefined : Buffer.from(bytes).toString('utf8')
}

async function readLsn(reader: BackendReader): Promise<number> {
  const text = await readUtf8(reader, 'meta', 'lsn')
  const lsn = text === undefined ? 0 : Number(text)
  if (!Number.isSafeInteger(lsn) || lsn < 0)
    throw new MeshError('MESHKV_ERR_CORRUPT', `the stored log position ${text} is damaged`)
  return lsn
}

async function readVc(reader: BackendReader): Promise<VectorClock> {
  const entries: [NodeId, number][] = []
  for await (const [node, bytes] of reader.iterate('vc', {})) {
    const seq = Number(Buffer.from(bytes).toString('utf8'))
    if (!isNodeId(node) || !Number.isSafeInteger(seq) || seq < 1)
      throw new MeshError('MESHKV_ERR_CORRUPT', `the stored vector clock entry ${node} is damaged`)
    entries.push([node, seq])
  }
  return vcNormalize(entries)
}

async function readOrInitMeta(
  backend: Backend,
  options: StoreOptions,
): Promise<{ nodeId: NodeId; vc: VectorClock; lsn: number; hlc: Hlc }> {
  const format = await readUtf8(backend, 'meta', 'format')
  if (format !== undefined && format !== STORE_FORMAT) {
    throw new MeshError(
      'MESHKV_ERR_CORRUPT',
      `the store was written in format ${format}; this meshkv reads format ${STORE_FORMAT}`,
    )
  }
  let nodeId = await readUtf8(backend, 'meta', 'nodeId')
  if (nodeId === undefined) {
    nodeId = nodeIdFromBytes(options.randomBytes(8))
    await backend.write([putUtf8('meta', 'format', STORE_FORMAT), putUtf8('meta', 'nodeId', nodeId)], { sync: true })
  }
  if (!isNodeId(nodeId))
    throw new MeshError('MESHKV_ERR_CORRUPT', `the stored node id ${JSON.stringify(nodeId)} is damaged`)
  const hlcBytes = await backend.get('meta', 'hlc')
  const hlc = hlcBytes === undefined ? HLC_ZERO : decodeChecked(hlcBytes, isHlc, 'stored clock')
  return { nodeId, vc: await readVc(backend), lsn: await readLsn(backend), hlc }
}
