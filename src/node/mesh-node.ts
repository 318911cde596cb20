/**
 * `MeshNode`: one meshkv node, embeddable in any Node.js app. Wiring only: it owns the store and
 * the cluster, validates input through `values.ts`, and turns calls into intents for the store.
 * Reads, listing, watching and membership each live in their own file of this folder; merge
 * logic lives in `crdt/`, durability and group commit in `storage/` (docs/architecture.md).
 */
import { EventEmitter } from 'node:events'
import type * as Y from 'yjs'
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { parseReadConcern, requiredMembers } from '../api/concern.js'
import type { Role } from '../api/role.js'
import type { NodeId, VectorClock } from '../clock/index.js'
import { LastCausalToken, decodeCausalToken, isNodeId } from '../clock/index.js'
import type { DocState, DocTypeKind, Space, StateOf } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Digest, Range } from '../storage/index.js'
import type { Store } from '../storage/index.js'
import { DigestCache } from '../storage/index.js'
import type { Bounds } from './bounds.js'
import { Parking, checkBounds } from './bounds.js'
import type { DocParts, DocRead, DocReadOptions } from './docs.js'
import { applyDocUpdate, deleteDoc, readDoc, readDocJson } from './docs.js'
import { DocSync } from './doc-sync.js'
import type { ExportOptions } from './export.js'
import { exportLines } from './export.js'
import type { Cluster } from './cluster.js'
import { checkLimit, listPage, rangeEntries } from './list.js'
import type { MemberStatus } from './members.js'
import { memberList } from './members.js'
import type { Limits } from './options.js'
import { openParts } from './open.js'
import { READ_TIMEOUT_MS_DEFAULT } from './options.js'
import { answerStateRequest, quorumRead } from './quorum.js'
import type { GcReport } from './status.js'
import { gcReport, nodeStatus } from './status.js'
import { Tokens } from './tokens.js'
import type {
  BatchOp,
  ConcernOptions,
  CounterHandle,
  Entry,
  ListOptions,
  ListPage,
  MeshNodeOptions,
  NodeStatus,
  PeerStatus,
  ReadOptions,
  SetHandle,
  ValueInput,
  WatchEvent,
  WatchOptions,
  WriteOptions,
  WriteResult,
} from './types.js'
import { checkKey, entryOf } from './values.js'
import { followEvents, waitForClock, watchEvents } from './watch.js'
import { Writer } from './writes.js'

/** A Yjs awareness update a peer relayed (node/yjs-rooms.ts): presence, never stored. */
export interface AwarenessRelay {
  room: string
  update: Uint8Array
  from: NodeId
}

export interface MeshNodeEvents {
  change: [WatchEvent]
  /** A local edit of a `doc(name)` Y.Doc the node refused (`details.doc` names the document). */
  error: [MeshError]
  awareness: [AwarenessRelay]
}

export class MeshNode extends EventEmitter<MeshNodeEvents> {
  readonly nodeId: NodeId
  readonly limits: Limits
  /** The cluster's client tokens (create, list, revoke, authenticate): see tokens.ts. */
  readonly tokens: Tokens
  readonly #store: Store
  readonly #cluster: Cluster
  readonly #writer: Writer
  readonly #now: () => number
  readonly #startedMs: number
  readonly #closing = new AbortController()
  readonly #secret: string | undefined
  readonly #bounds: Bounds
  /** Causal waits (`after`) and quorum reads parked now (`parkedReadsMax`). */
  readonly #parkedReads: Parking
  readonly #digests: DigestCache
  readonly #docSync: DocSync = new DocSync(this)
  readonly #token = new LastCausalToken()
  #closed = false

  private constructor(
    store: Store,
    cluster: Cluster,
    limits: Limits,
    now: () => number,
    secret: string | undefined,
    bounds: Bounds,
  ) {
    super()
    this.#secret = secret
    this.#bounds = bounds
    this.#parkedReads = new Parking('reads', bounds.parkedReadsMax)
    this.#digests = new DigestCache(store)
    this.#store = store
    this.#cluster = cluster
    this.nodeId = store.nodeId
    this.limits = limits
    this.#now = now
    this.#startedMs = now()
    this.#writer = new Writer(
      store,
      cluster,
      limits,
      () => this.#checkOpen(),
      new Parking('writes', bounds.parkedWritesMax),
    )
    this.tokens = new Tokens({ store, cluster, limits, now, checkOpen: () => this.#checkOpen() })
    cluster.replicator.onAwareness = (room, update, from) => void this.emit('awareness', { room, update, from })
    store.onCommit((entries) => {
      if (this.listenerCount('change') === 0) return
      for (const { lsn, change } of entries)
        for (const event of watchEvents(change, lsn, this.nodeId, '')) this.emit('change', event)
    })
  }

  static async open(options: MeshNodeOptions): Promise<MeshNode> {
    const bounds = checkBounds(options)
    const { store, cluster, settings } = await openParts(options)
    return new MeshNode(store, cluster, settings.limits, settings.now, settings.secret, bounds)
  }

  /** Open, and a member of its cluster: a brand-new node with peers first catches up with one. */
  get ready(): boolean {
    return !this.#closed && this.#cluster.ready
  }

  /** `member` takes writes; `replica` serves reads and replicates, and refuses client writes. */
  get role(): Role {
    return this.#cluster.role
  }

  get vc(): VectorClock {
    return this.#store.vc
  }

  /** Accepts peer links on this HTTP(S) server, at `/v1/peer`. */
  attach(server: HttpServer | HttpsServer): void {
    this.#cluster.attach(server)
  }

  /** Relays a Yjs awareness update to every linked peer, whose rooms pass it to their clients. */
  relayAwareness(room: string, update: Uint8Array): void {
    this.#cluster.relayAwareness(room, update)
  }

  /** Each peer: link state, lag in changes and milliseconds, when last heard. */
  peers(): Promise<PeerStatus[]> {
    return this.#cluster.peers()
  }

  /**
   * A hash of the node's whole state, equal on two nodes exactly when their states are equal.
   * Kept until the state changes, so asking again costs no walk over the states.
   */
  async digest(): Promise<Digest> {
    this.#checkOpen()
    return this.#digests.digest()
  }

  /** The node's vector clock as a causal token (the last one kept until the clock moves). */
  token(): string {
    return this.#token.of(this.#store.vc)
  }

  async get(key: string, options: ReadOptions = {}): Promise<Entry | undefined> {
    checkKey(key, this.limits)
    const state = await this.#readState('kv', key, options)
    return entryOf(key, state, options.siblings === true)
  }

  /** Every member of the cluster (from the replicated member set), this node included. */
  members(): Promise<MemberStatus[]> {
    this.#checkOpen()
    return memberList(this.#cluster, this.nodeId)
  }

  /**
   * Forgets a dead member for good (`kvctl forget`). Its changes so far stay. A member that is
   * linked or was heard from recently is refused (`MESHKV_ERR_MEMBER_ALIVE`) unless `force`.
   */
  async forget(nodeId: string, options: { force?: boolean } = {}): Promise<void> {
    this.#checkOpen()
    if (!isNodeId(nodeId))
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `a node id is 16 hex digits; got ${JSON.stringify(nodeId)}`)
    this.#cluster.checkWrites('forget')
    await this.#cluster.forget(nodeId, options)
  }

  /** A key's encoded state and this node's clock, for another member's quorum read (see quorum.ts). */
  localState(space: string, key: string, auth: unknown): Promise<Uint8Array> {
    this.#checkOpen()
    return answerStateRequest(
      { store: this.#store, secret: this.#secret, now: this.#now(), limits: this.limits },
      space,
      key,
      auth,
    )
  }

  put(key: string, value: ValueInput, options: WriteOptions = {}): Promise<WriteResult> {
    return this.#writer.put(key, value, options)
  }

  del(key: string, options: Omit<WriteOptions, 'contentType' | 'ifNoneMatch'> = {}): Promise<WriteResult> {
    return this.#writer.del(key, options)
  }

  /** Several puts and deletes as one atomic change. Results follow the order of `ops`. */
  batch(ops: readonly BatchOp[], options: ConcernOptions = {}): Promise<{ token: string; results: WriteResult[] }> {
    return this.#writer.batch(ops, options)
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const limit = checkLimit(options.limit)
    await this.#readyFor(options)
    return listPage(this.#store, options, limit, this.#bounds.listPageBytesMax)
  }

  /** Live entries of the `kv` space in key order over a raw range: the face of `MeshLevel`'s iterators. */
  async *entries(range: Range & { signal?: AbortSignal } = {}): AsyncGenerator<Entry> {
    this.#checkOpen()
    yield* rangeEntries(this.#store, range)
  }

  counter(name: string): CounterHandle {
    return this.#writer.counter(name, (options) => this.#readState('counter', name, options))
  }

  set(name: string): SetHandle {
    return this.#writer.set(name, (options) => this.#readState('set', name, options))
  }

  /**
   * Applies a Yjs update (v1) to document `name` as one change: the seam for a sync room. The
   * change is committed and replicated like any write, and a 'change' event carries the update.
   */
  applyDocUpdate(name: string, update: Uint8Array, options: ConcernOptions = {}): Promise<WriteResult> {
    return applyDocUpdate(this.#docParts, name, update, options)
  }

  /** Deletes the document's content this node holds; content written concurrently elsewhere stays. */
  deleteDoc(name: string, options: ConcernOptions = {}): Promise<WriteResult> {
    return deleteDoc(this.#docParts, name, options)
  }

  /** The document as a Yjs update (or, with `sv`, what a peer holding that state vector lacks). */
  docState(name: string, options: DocReadOptions = {}): Promise<DocRead> {
    return readDoc(this.#docParts, name, options)
  }

  /** The document's top-level types as JSON, or undefined when it does not exist (crdt/doc-json.ts). */
  docJson(
    name: string,
    options: ReadOptions & { types?: ReadonlyMap<string, DocTypeKind> } = {},
  ): Promise<Record<string, unknown> | undefined> {
    return readDocJson(this.#docParts, name, options)
  }

  /**
   * The document as a `Y.Doc` kept in sync with the cluster: local edits are written (and
   * replicate), updates the node commits are applied. One Y.Doc per name (a second call answers
   * the same one) until `doc.destroy()` or `close()`. A local edit the node refuses is an
   * 'error' event on the node: listen for it.
   */
  async doc(name: string): Promise<Y.Doc> {
    this.#checkOpen()
    return this.#docSync.doc(name)
  }

  get #docParts(): DocParts {
    return {
      limits: this.limits,
      commit: (intents, options) => this.#writer.commitDoc(intents, options),
      read: (name, options): Promise<DocState> => this.#readState('doc', name, options),
    }
  }

  /** Changes as they commit, from `since` (a cursor of an earlier event) or from now on. */
  watch(options: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    // "Now" is when watch() is called, not when iteration begins (a generator body starts late).
    return this.#watch(options, this.#store.lsn)
  }

  async *#watch(options: WatchOptions, nowLsn: number): AsyncGenerator<WatchEvent> {
    this.#checkOpen()
    yield* followEvents(this.#store, options, nowLsn, this.#signal(options.signal))
  }

  /** Resolves once this node has seen everything `token` covers, or fails with `MESHKV_ERR_READ_TIMEOUT`. */
  waitFor(token: string, timeoutMs = READ_TIMEOUT_MS_DEFAULT, signal?: AbortSignal): Promise<void> {
    const wanted = decodeCausalToken(token)
    return waitForClock(this.#store, wanted, timeoutMs, this.#signal(signal), this.#parkedReads)
  }

  status(): NodeStatus {
    return nodeStatus({
      store: this.#store,
      cluster: this.#cluster,
      ready: this.ready,
      limits: this.limits,
      uptimeMs: this.#now() - this.#startedMs,
      parked: { reads: this.#parkedReads.status, writes: this.#writer.parked.status },
    })
  }

  /**
   * A consistent export of this node (api/export-format.ts) as lines ending in newlines: every
   * state from one store snapshot, which stays open until the generator ends or is returned.
   */
  async *export(options: ExportOptions = {}): AsyncGenerator<string> {
    this.#checkOpen()
    const snapshot = await this.#store.snapshot()
    try {
      yield* exportLines(snapshot, { node: this.nodeId, createdAt: new Date(this.#now()).toISOString() }, options)
    } finally {
      await snapshot.close()
    }
  }

  /** Garbage collection: log size, tombstones not yet purged, the stable cut, what was purged. */
  gcStatus(): Promise<GcReport> {
    this.#checkOpen()
    return gcReport(this.#store, this.#cluster.replicator)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#docSync.close()
    this.#closing.abort()
    this.#digests.close()
    this.tokens.close()
    await this.#cluster.close()
    await this.#store.close()
  }

  /** Reads a key's state: here, or joined from `r` members (this one included). */
  async #readState<S extends Space>(space: S, key: string, options: ReadOptions): Promise<StateOf[S]> {
    await this.#readyFor(options)
    const concern = parseReadConcern(options.r)
    // The clock is taken before the state: a commit landing between the two may only make the
    // state newer than its clock, never older, so the join below cannot drop a sibling it holds.
    const ownVc = this.#store.vc
    const own = await this.#store.getState(space, key)
    const required = concern === 1 ? 1 : requiredMembers(concern, this.#cluster.members(), 'r')
    if (required <= 1) return own
    return quorumRead({
      space,
      key,
      own,
      ownVc,
      required,
      targets: this.#cluster.memberUrls(),
      secret: this.#secret,
      self: this.nodeId,
      now: this.#now,
      timeoutMs: options.timeoutMs ?? READ_TIMEOUT_MS_DEFAULT,
      signal: this.#signal(options.signal),
      parked: this.#parkedReads,
      dispatcher: this.#cluster.peerFetch.dispatcher,
    })
  }

  async #readyFor(options: { after?: string; timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    this.#checkOpen()
    if (options.after !== undefined) await this.waitFor(options.after, options.timeoutMs, options.signal)
  }

  /** The caller's signal joined with the node's own, which aborts on close. */
  #signal(signal: AbortSignal | undefined): AbortSignal {
    return signal === undefined ? this.#closing.signal : AbortSignal.any([signal, this.#closing.signal])
  }

  #checkOpen(): void {
    if (this.#closed) throw new MeshError('MESHKV_ERR_CLOSED', 'the node is closed')
  }
}
