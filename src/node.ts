/**
 * `MeshNode`: one meshkv node, embeddable in any Node.js app. Wiring only: it owns the store and
 * the clock, validates input through `node-values.ts`, and turns calls into intents for the
 * store. Merge logic lives in `crdt/`, durability and group commit in `storage/`.
 */
import { EventEmitter } from 'node:events'
import { randomBytes as cryptoRandomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import type { NodeId, VectorClock } from './clock/index.js'
import { decodeCausalToken, decodeVersion, encodeCausalToken, vcCovers } from './clock/index.js'
import type { CounterState, Intent, RegisterState, SetState } from './crdt/index.js'
import { counterValue, setHas, setMembers } from './crdt/index.js'
import { MeshError } from './errors.js'
import type {
  BatchOp,
  CounterHandle,
  Entry,
  ListOptions,
  ListPage,
  MeshNodeOptions,
  NodeStatus,
  ReadOptions,
  SetHandle,
  ValueInput,
  WatchEvent,
  WatchOptions,
  WriteOptions,
  WriteResult,
} from './node-types.js'
import type { Limits } from './node-values.js'
import {
  BATCH_OPS_MAX_DEFAULT,
  KEY_BYTES_MAX_DEFAULT,
  VALUE_BYTES_MAX_DEFAULT,
  checkDelta,
  checkKey,
  checkLimit,
  checkVersion,
  decodeListCursor,
  decodeWatchCursor,
  encodeListCursor,
  entryOf,
  toStoredValue,
  versionOf,
  watchEvents,
} from './node-values.js'
import type { CommitResult, Digest, Range } from './storage/index.js'
import { LevelBackend, MemoryBackend, Store, compareKeys, digestOf, followLog, stateId } from './storage/index.js'
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { Cluster } from './node-cluster.js'
import type { MemberStatus } from './node-cluster.js'
import {
  STATE_MEDIA_TYPE,
  PEER_AUTH_HEADER,
  decodeStateAnswer,
  parseReadConcern,
  requiredAnswers,
  signStateRequest,
  verifyStateRequest,
} from './node-quorum.js'
import type { AnyState, Space, StateOf } from './crdt/index.js'
import { SPACES, joinState } from './crdt/index.js'
import { isNodeId, vcJoin } from './clock/index.js'
import { encode } from './codec/index.js'
import { parseWriteConcern } from './api/concern.js'
import { KEY_BYTES_PROTOCOL_MAX } from './codec/guards.js'
import type { ConcernOptions, PeerStatus } from './node-types.js'

export * from './node-types.js'

export const PACKAGE_VERSION = '0.1.0'
const READ_AFTER_TIMEOUT_MS_DEFAULT = 5000

export interface MeshNodeEvents {
  change: [WatchEvent]
}

export class MeshNode extends EventEmitter<MeshNodeEvents> {
  readonly nodeId: NodeId
  readonly limits: Limits
  readonly #store: Store
  readonly #cluster: Cluster
  readonly #now: () => number
  readonly #startedMs: number
  readonly #closing = new AbortController()
  readonly #secret: string | undefined
  #closed = false

  private constructor(store: Store, cluster: Cluster, limits: Limits, now: () => number, secret: string | undefined) {
    super()
    this.#secret = secret
    this.#store = store
    this.#cluster = cluster
    this.nodeId = store.nodeId
    this.limits = limits
    this.#now = now
    this.#startedMs = now()
    store.onCommit((entries) => {
      if (this.listenerCount('change') === 0) return
      for (const { lsn, change } of entries)
        for (const event of watchEvents(change, lsn, this.nodeId, '')) this.emit('change', event)
    })
  }

  static async open(options: MeshNodeOptions): Promise<MeshNode> {
    const limits = checkLimits(options)
    const now = options.now ?? Date.now
    const randomBytes = options.randomBytes ?? ((size: number) => cryptoRandomBytes(size))
    if (options.memory !== true) {
      if (typeof options.dir !== 'string' || options.dir.length === 0)
        throw new MeshError('MESHKV_ERR_CONFIG', 'a data directory (dir) is required')
      await mkdir(options.dir, { recursive: true })
    }
    const backend = options.memory === true ? new MemoryBackend() : new LevelBackend(options.dir)
    const store = await Store.open({
      backend,
      now,
      randomBytes,
      sync: options.sync ?? false,
      maxClockOffsetMs: options.maxClockOffsetMs,
    })
    try {
      const cluster = await Cluster.open({
        store,
        peers: options.peers ?? [],
        secret: options.secret === '' ? undefined : options.secret,
        clusterId: options.clusterId ?? 'meshkv',
        selfUrl: options.selfUrl ?? null,
        now,
        randomBytes,
        ...(options.transport === undefined ? {} : { transport: options.transport }),
        ...(options.logger === undefined ? {} : { logger: options.logger }),
        ...(options.pingIntervalMs === undefined ? {} : { pingIntervalMs: options.pingIntervalMs }),
        ...(options.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: options.peerTimeoutMs }),
        ...(options.snapshotAfterChanges === undefined ? {} : { snapshotAfterChanges: options.snapshotAfterChanges }),
        ...(options.logRetainEntries === undefined ? {} : { logRetainEntries: options.logRetainEntries }),
        role: checkRole(options.role),
      })
      return new MeshNode(store, cluster, limits, now, options.secret === '' ? undefined : options.secret)
    } catch (error) {
      await store.close()
      throw error
    }
  }

  /** Open, and a member of its cluster: a brand-new node with peers first catches up with one. */
  get ready(): boolean {
    return !this.#closed && this.#cluster.ready
  }

  /** Accepts peer links on this HTTP(S) server, at `/v1/peer`. */
  attach(server: HttpServer | HttpsServer): void {
    this.#cluster.attach(server)
  }

  /** Each peer: link state, lag in changes and milliseconds, when last heard. */
  peers(): Promise<PeerStatus[]> {
    return this.#cluster.peers()
  }

  /** A hash of the node's whole state, equal on two nodes exactly when their states are equal. */
  async digest(): Promise<Digest> {
    this.#checkOpen()
    const snapshot = await this.#store.snapshot()
    try {
      return await digestOf(snapshot)
    } finally {
      await snapshot.close()
    }
  }

  /** The node's vector clock as a causal token. */
  token(): string {
    return encodeCausalToken(this.#store.vc)
  }

  get vc(): VectorClock {
    return this.#store.vc
  }

  async get(key: string, options: ReadOptions = {}): Promise<Entry | undefined> {
    checkKey(key, this.limits)
    const state = await this.#readState('kv', key, options)
    return entryOf(key, state, options.siblings === true)
  }

  /** `member` takes writes; `replica` serves reads and replicates, and refuses client writes. */
  get role(): 'member' | 'replica' {
    return this.#cluster.role
  }

  /** Every member of the cluster (from the replicated member set), this node included. */
  members(): Promise<MemberStatus[]> {
    this.#checkOpen()
    return this.#cluster.memberList()
  }

  /** Forgets a dead member for good (`kvctl forget`). Its changes so far stay. */
  async forget(nodeId: string): Promise<void> {
    this.#checkOpen()
    if (!isNodeId(nodeId))
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `a node id is 16 hex digits; got ${JSON.stringify(nodeId)}`)
    if (!this.#cluster.ready)
      throw new MeshError(
        'MESHKV_ERR_NOT_READY',
        'this node is joining its cluster; forget through a member that is ready',
      )
    await this.#cluster.forget(nodeId)
  }

  /**
   * A key's encoded state and this node's clock, for another member's quorum read. `auth` is the
   * request's signature header (see node-quorum.ts).
   */
  async localState(spaceName: string, key: string, auth: unknown): Promise<Uint8Array> {
    this.#checkOpen()
    if (!SPACES.includes(spaceName as Space))
      throw new MeshError('MESHKV_ERR_NOT_FOUND', `no key space ${JSON.stringify(spaceName)}`)
    const space = spaceName as Space
    verifyStateRequest(this.#secret, auth, this.#now(), space, key)
    checkKey(key, { ...this.limits, keyBytesMax: KEY_BYTES_PROTOCOL_MAX })
    const vc = this.#store.vc
    const state = await this.#store.getState(space, key)
    return encode({ state: encode(state), vc })
  }

  /** Reads a key's state: here, or joined from `r` members (this one included). */
  async #readState<S extends Space>(space: S, key: string, options: ReadOptions): Promise<StateOf[S]> {
    await this.#readyFor(options)
    const concern = parseReadConcern(options.r)
    const own = await this.#store.getState(space, key)
    const required = concern === 1 ? 1 : requiredAnswers(concern, this.#cluster.members())
    if (required <= 1) return own
    return this.#quorumRead(
      space,
      key,
      own,
      this.#store.vc,
      required,
      options.timeoutMs ?? READ_AFTER_TIMEOUT_MS_DEFAULT,
      options.signal,
    )
  }

  async #quorumRead<S extends Space>(
    space: S,
    key: string,
    own: StateOf[S],
    ownVc: VectorClock,
    required: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<StateOf[S]> {
    const secret = this.#secret
    const targets = this.#cluster.memberUrls()
    if (secret === undefined || targets.length + 1 < required) {
      throw new MeshError(
        'MESHKV_ERR_READ_QUORUM',
        `r asks for ${required} members, but this node can reach ${targets.length + 1} (members with a URL)`,
        { details: { required, answered: 1 } },
      )
    }
    let state: AnyState = own
    let vc = ownVc
    let answered = 1
    const timeout = AbortSignal.timeout(timeoutMs)
    const abort = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    await new Promise<void>((resolve) => {
      let pending = targets.length
      const done = (): void => {
        pending--
        if (answered >= required || pending === 0) resolve()
      }
      abort.addEventListener('abort', () => resolve(), { once: true })
      for (const target of targets) {
        const url = `${target.url.replace(/\/+$/, '')}/v1/internal/state/${space}/${encodeURIComponent(key)}`
        fetch(url, {
          headers: { [PEER_AUTH_HEADER]: signStateRequest(secret, this.nodeId, this.#now(), space, key) },
          signal: abort,
        })
          .then(async (response) => {
            if (response.status !== 200 || response.headers.get('content-type') !== STATE_MEDIA_TYPE)
              throw new Error(`answered ${response.status}`)
            const answer = decodeStateAnswer(space, new Uint8Array(await response.arrayBuffer()))
            if (answered >= required) return
            state = joinState(space, state as StateOf[S], vc, answer.state, answer.vc)
            vc = vcJoin(vc, answer.vc)
            answered++
          })
          .catch(() => undefined)
          .finally(done)
      }
    })
    if (answered < required) {
      throw new MeshError(
        'MESHKV_ERR_READ_QUORUM',
        `only ${answered} of the ${required} members asked for answered within ${timeoutMs} ms`,
        { details: { required, answered, timeoutMs } },
      )
    }
    return state as StateOf[S]
  }

  async put(key: string, value: ValueInput, options: WriteOptions = {}): Promise<WriteResult> {
    const [result] = await this.#batchResults([{ type: 'put', key, value, ...options }], options)
    return result as WriteResult
  }

  async del(key: string, options: Omit<WriteOptions, 'contentType' | 'ifNoneMatch'> = {}): Promise<WriteResult> {
    const [result] = await this.#batchResults([{ type: 'del', key, ...options }], options)
    return result as WriteResult
  }

  /** Several puts and deletes as one atomic change. Results follow the order of `ops`. */
  async batch(
    ops: readonly BatchOp[],
    options: ConcernOptions = {},
  ): Promise<{ token: string; results: WriteResult[] }> {
    const results = await this.#batchResults(ops, options)
    return { token: this.token(), results }
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const limit = checkLimit(options.limit)
    await this.#readyFor(options)
    const prefix = options.prefix ?? ''
    const range = listRange(options)
    const items: Entry[] = []
    let next: string | null = null
    for await (const [key, state] of this.#store.iterateStates('kv', range)) {
      if (!key.startsWith(prefix)) {
        // Forward from the prefix, the first key without it ends the range; in reverse, keys
        // above the prefix's range come first and are passed over.
        if (options.reverse !== true || compareKeys(key, prefix) < 0) break
        continue
      }
      const entry = entryOf(key, state, false)
      if (entry === undefined) continue
      if (items.length === limit) {
        next = encodeListCursor((items[items.length - 1] as Entry).key)
        break
      }
      items.push(entry)
    }
    return { items, next }
  }

  /**
   * Live entries of the `kv` space in key order over a raw range (`gt`, `gte`, `lt`, `lte`,
   * `reverse`, `limit`); deleted keys are passed over. The face of `MeshLevel`'s iterators.
   */
  async *entries(range: Range & { signal?: AbortSignal } = {}): AsyncGenerator<Entry> {
    this.#checkOpen()
    const limit = range.limit === undefined || range.limit < 0 ? Infinity : range.limit
    let count = 0
    const { limit: _limit, signal, ...bounds } = range
    for await (const [key, state] of this.#store.iterateStates('kv', bounds)) {
      if (count >= limit || signal?.aborted === true) return
      const entry = entryOf(key, state, false)
      if (entry === undefined) continue
      count++
      yield entry
    }
  }

  counter(name: string): CounterHandle {
    checkKey(name, this.limits, 'counter name')
    const add = async (delta: number, options: ConcernOptions): Promise<number> => {
      const result = await this.#commit([{ type: 'counter.add', name, delta: checkDelta(delta) }], options)
      return counterValue(result.states.get(stateId('counter', name)) as CounterState)
    }
    return {
      name,
      incr: (delta = 1, options = {}) => add(delta, options),
      // async, so a bad delta rejects like every other call instead of throwing.
      decr: async (delta = 1, options = {}) => add(-checkDelta(delta), options),
      value: async (options = {}) => counterValue(await this.#readState('counter', name, options)),
    }
  }

  set(name: string): SetHandle {
    checkKey(name, this.limits, 'set name')
    const update = async (
      changes: { add?: readonly string[]; remove?: readonly string[] },
      options: ConcernOptions = {},
    ): Promise<WriteResult> => {
      const add = [...new Set(changes.add ?? [])]
      const remove = [...new Set(changes.remove ?? [])]
      if (add.length + remove.length > this.limits.batchOpsMax)
        throw new MeshError('MESHKV_ERR_BATCH_INVALID', `at most ${this.limits.batchOpsMax} members per call`)
      if (add.some((member) => remove.includes(member)))
        throw new MeshError('MESHKV_ERR_BATCH_INVALID', 'a member cannot be added and removed in one call')
      const intents: Intent[] = [
        ...add.map((member) => ({
          type: 'set.add' as const,
          name,
          member: checkKey(member, this.limits, 'set member'),
        })),
        ...remove.map((member) => ({
          type: 'set.remove' as const,
          name,
          member: checkKey(member, this.limits, 'set member'),
        })),
      ]
      const result = await this.#commit(intents, options)
      return { version: String(result.lsn), token: encodeCausalToken(result.vc), changed: result.change !== null }
    }
    const read = (options: ReadOptions): Promise<SetState> => this.#readState('set', name, options)
    return {
      name,
      add: (...members) => update({ add: members }),
      remove: (...members) => update({ remove: members }),
      update,
      members: async (options = {}) => setMembers(await read(options)),
      has: async (member, options = {}) => setHas(await read(options), checkKey(member, this.limits, 'set member')),
    }
  }

  /** Changes as they commit, from `since` (a cursor of an earlier event) or from now on. */
  watch(options: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    // "Now" is when watch() is called, not when iteration begins (a generator body starts late).
    return this.#watch(options, this.#store.lsn)
  }

  async *#watch(options: WatchOptions, nowLsn: number): AsyncGenerator<WatchEvent> {
    this.#checkOpen()
    const prefix = options.prefix ?? ''
    const since = options.since === undefined ? { lsn: nowLsn, op: null } : decodeWatchCursor(options.since)
    const signal =
      options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal])
    // Inside a change (`L.i`), follow from just before it and leave out the ops already seen.
    const after = since.op === null ? since.lsn : since.lsn - 1
    for await (const { lsn, change } of followLog(this.#store, after, signal)) {
      const seenOp = since.op !== null && lsn === since.lsn ? since.op : -1
      for (const event of watchEvents(change, lsn, this.nodeId, prefix, seenOp)) yield event
    }
  }

  /** Resolves once this node has seen everything `token` covers, or fails with `MESHKV_ERR_READ_TIMEOUT`. */
  async waitFor(token: string, timeoutMs = READ_AFTER_TIMEOUT_MS_DEFAULT, signal?: AbortSignal): Promise<void> {
    const wanted = decodeCausalToken(token)
    if (vcCovers(this.#store.vc, wanted)) return
    await new Promise<void>((resolve, reject) => {
      const finish = (error?: MeshError): void => {
        clearTimeout(timer)
        unsubscribe()
        signal?.removeEventListener('abort', onAbort)
        if (error === undefined) resolve()
        else reject(error)
      }
      const onAbort = (): void => finish(new MeshError('MESHKV_ERR_ABORTED', 'the read was aborted'))
      const timer = setTimeout(
        () =>
          finish(
            new MeshError(
              'MESHKV_ERR_READ_TIMEOUT',
              `this node has not seen the causal token's writes within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      )
      const unsubscribe = this.#store.onCommit(() => {
        if (vcCovers(this.#store.vc, wanted)) finish()
      })
      signal?.addEventListener('abort', onAbort)
    })
  }

  status(): NodeStatus {
    return {
      nodeId: this.nodeId,
      ready: this.ready,
      vc: this.#store.vc,
      token: this.token(),
      lsn: this.#store.lsn,
      hlc: this.#store.hlc,
      version: PACKAGE_VERSION,
      uptimeMs: this.#now() - this.#startedMs,
      storage: this.#store.kind,
      limits: { ...this.limits },
      members: this.#cluster.members(),
      role: this.#cluster.role,
      linked: this.#cluster.linked(),
      replication: this.#cluster.replicator.counters,
      snapshot: this.#cluster.replicator.snapshotStatus(),
    }
  }

  /** Garbage collection: log size, tombstones not yet purged, the stable cut, what was purged. */
  async gcStatus(): Promise<{
    logEntries: number
    tombstones: number
    stableCut: VectorClock
    heldByAll: VectorClock
    logPurged: number
    tombstonesPurged: number
  }> {
    this.#checkOpen()
    const gc = this.#cluster.replicator.gcStatus
    return {
      logEntries: await this.#store.logSize(),
      tombstones: await this.#store.tombstoneCount(),
      stableCut: gc.stableCut,
      heldByAll: gc.heldByAll,
      logPurged: gc.logPurged,
      tombstonesPurged: gc.tombstonesPurged,
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#closing.abort()
    await this.#cluster.close()
    await this.#store.close()
  }

  async #readyFor(options: { after?: string; timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    this.#checkOpen()
    if (options.after !== undefined) await this.waitFor(options.after, options.timeoutMs, options.signal)
  }

  async #batchResults(ops: readonly BatchOp[], options: ConcernOptions): Promise<WriteResult[]> {
    if (!Array.isArray(ops) || ops.length === 0 || ops.length > this.limits.batchOpsMax) {
      throw new MeshError('MESHKV_ERR_BATCH_INVALID', `a batch holds 1 to ${this.limits.batchOpsMax} operations`)
    }
    const intents = ops.map((op) => this.#intentOf(op))
    const result = await this.#commit(intents, options)
    const token = encodeCausalToken(result.vc)
    return ops.map((op) => {
      const state = result.states.get(stateId('kv', op.key)) as RegisterState
      return {
        version: versionOf(state),
        token,
        changed: result.change !== null && result.change.ops.some((done) => 'key' in done && done.key === op.key),
      }
    })
  }

  #intentOf(op: BatchOp): Intent {
    const key = checkKey(op.key, this.limits)
    checkVersion(op.context, 'context')
    checkVersion(op.ifMatch, 'If-Match version')
    const context = op.context === undefined ? undefined : decodeVersion(op.context)
    const preconditions = {
      ...(op.ifMatch === undefined ? {} : { ifMatch: op.ifMatch }),
      ...(context === undefined ? {} : { context }),
    }
    if (op.type === 'del') return { type: 'kv.del', key, ...preconditions }
    const stored = toStoredValue(op.value, op.contentType, this.limits)
    return {
      type: 'kv.put',
      key,
      value: stored.bytes,
      contentType: stored.contentType,
      ...preconditions,
      ...(op.ifNoneMatch === true ? { ifNoneMatch: true } : {}),
    }
  }

  /** Commits intents as one change, then waits for the write concern (the change stays committed if that times out). */
  async #commit(intents: readonly Intent[], options: ConcernOptions = {}): Promise<CommitResult> {
    this.#checkOpen()
    if (options.signal?.aborted === true)
      throw new MeshError('MESHKV_ERR_ABORTED', 'the write was aborted before it was committed')
    if (this.#cluster.role === 'replica') {
      throw new MeshError(
        'MESHKV_ERR_READ_ONLY',
        'this node is a read-only replica (--role replica); write through a member',
      )
    }
    if (!this.#cluster.ready) {
      throw new MeshError(
        'MESHKV_ERR_NOT_READY',
        'this node is joining its cluster and takes writes once it has caught up with a peer; retry, or write through another node',
      )
    }
    const concern = parseWriteConcern(options.w)
    this.#cluster.checkConcern(concern)
    const result = await this.#store.commitLocal(intents)
    if (result.change !== null && concern !== 1)
      await this.#cluster.awaitConcern(result.change.dot, concern, options.timeoutMs)
    return result
  }

  #checkOpen(): void {
    if (this.#closed) throw new MeshError('MESHKV_ERR_CLOSED', 'the node is closed')
  }
}

function checkRole(role: unknown): 'member' | 'replica' {
  if (role === undefined || role === 'member' || role === 'replica') return role ?? 'member'
  throw new MeshError('MESHKV_ERR_CONFIG', `role must be "member" or "replica"; got ${JSON.stringify(role)}`)
}

function checkLimits(options: MeshNodeOptions): Limits {
  const limits = {
    keyBytesMax: options.keyBytesMax ?? KEY_BYTES_MAX_DEFAULT,
    valueBytesMax: options.valueBytesMax ?? VALUE_BYTES_MAX_DEFAULT,
    batchOpsMax: options.batchOpsMax ?? BATCH_OPS_MAX_DEFAULT,
  }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new MeshError('MESHKV_ERR_CONFIG', `${name} must be a positive integer`)
  }
  if (limits.keyBytesMax > KEY_BYTES_PROTOCOL_MAX)
    throw new MeshError(
      'MESHKV_ERR_CONFIG',
      `keyBytesMax may be at most ${KEY_BYTES_PROTOCOL_MAX} (what every node takes from a peer)`,
    )
  // A write must fit in one 4 MiB replication frame (see CHANGE_BYTES_MAX_DEFAULT).
  if (limits.valueBytesMax > 3 * 1024 * 1024)
    throw new MeshError(
      'MESHKV_ERR_CONFIG',
      'valueBytesMax may be at most 3 MiB (a write must fit in one replication frame)',
    )
  return limits
}

/** The store range for a listing: start/end bounds, narrowed by the prefix and the page cursor. */
function listRange(options: ListOptions): Range {
  const range: Range = { reverse: options.reverse === true }
  const prefix = options.prefix ?? ''
  const lower = [options.start, prefix].filter((bound): bound is string => bound !== undefined && bound !== '')
  if (lower.length > 0) range.gte = lower.reduce((a, b) => (compareKeys(a, b) >= 0 ? a : b))
  if (options.end !== undefined) range.lt = options.end
  if (options.cursor !== undefined) {
    // One bound per side: LevelDB takes gte over gt when both are given, so keep the tighter one.
    const after = decodeListCursor(options.cursor)
    if (options.reverse === true) {
      if (range.lt === undefined || compareKeys(after, range.lt) < 0) range.lt = after
    } else if (range.gte === undefined || compareKeys(after, range.gte) >= 0) {
      delete range.gte
      range.gt = after
    }
  }
  return range
}
