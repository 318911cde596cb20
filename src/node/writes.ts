/**
 * The node's writes: puts, deletes, batches, counters, sets and documents become intents, are committed as
 * one change each, and then wait for their write concern. A replica refuses them, and so does a
 * node still joining its cluster (docs/consistency.md).
 */
import { parseWriteConcern, requiredMembers } from '../api/concern.js'
import { decodeVersion, encodeCausalToken } from '../clock/index.js'
import type { CounterState, DocIntent, Intent, RegisterState, SetState } from '../crdt/index.js'
import { counterValue, setHas, setMembers } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { CommitResult, Store } from '../storage/index.js'
import { stateId } from '../storage/index.js'
import type { Parking } from './bounds.js'
import type { Cluster } from './cluster.js'
import type { Limits } from './options.js'
import type {
  BatchOp,
  ConcernOptions,
  CounterHandle,
  ReadOptions,
  SetHandle,
  ValueInput,
  WriteOptions,
  WriteResult,
} from './types.js'
import { checkDelta, checkKey, checkVersion, toStoredValue, versionOf } from './values.js'

export class Writer {
  constructor(
    readonly store: Store,
    readonly cluster: Cluster,
    readonly limits: Limits,
    readonly checkOpen: () => void,
    /** Writes waiting for their write concern (`parkedWritesMax`). */
    readonly parked: Parking,
  ) {}

  async put(key: string, value: ValueInput, options: WriteOptions): Promise<WriteResult> {
    const [result] = await this.#batchResults([{ type: 'put', key, value, ...options }], options)
    return result as WriteResult
  }

  async del(key: string, options: Omit<WriteOptions, 'contentType' | 'ifNoneMatch'>): Promise<WriteResult> {
    const [result] = await this.#batchResults([{ type: 'del', key, ...options }], options)
    return result as WriteResult
  }

  async batch(ops: readonly BatchOp[], options: ConcernOptions): Promise<{ token: string; results: WriteResult[] }> {
    const results = await this.#batchResults(ops, options)
    return { token: encodeCausalToken(this.store.vc), results }
  }

  /** A counter's handle; `read` reads its state through the node's read path (causal wait, quorum). */
  counter(name: string, read: (options: ReadOptions) => Promise<CounterState>): CounterHandle {
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
      value: async (options = {}) => counterValue(await read(options)),
    }
  }

  /** A set's handle; `read` reads its state through the node's read path (causal wait, quorum). */
  set(name: string, read: (options: ReadOptions) => Promise<SetState>): SetHandle {
    checkKey(name, this.limits, 'set name')
    const update = (
      changes: { add?: readonly string[]; remove?: readonly string[] },
      options: ConcernOptions = {},
    ): Promise<WriteResult> => this.#updateSet(name, changes, options)
    return {
      name,
      add: (...members) => update({ add: members }),
      remove: (...members) => update({ remove: members }),
      update,
      members: async (options = {}) => setMembers(await read(options)),
      has: async (member, options = {}) => setHas(await read(options), checkKey(member, this.limits, 'set member')),
    }
  }

  async #updateSet(
    name: string,
    changes: { add?: readonly string[]; remove?: readonly string[] },
    options: ConcernOptions,
  ): Promise<WriteResult> {
    const add = [...new Set(changes.add ?? [])]
    const remove = [...new Set(changes.remove ?? [])]
    if (add.length + remove.length > this.limits.batchOpsMax)
      throw new MeshError('MESHKV_ERR_BATCH_INVALID', `at most ${this.limits.batchOpsMax} members per call`)
    if (add.some((member) => remove.includes(member)))
      throw new MeshError('MESHKV_ERR_BATCH_INVALID', 'a member cannot be added and removed in one call')
    const checked = (member: string): string => checkKey(member, this.limits, 'set member')
    const intents: Intent[] = [
      ...add.map((member) => ({ type: 'set.add' as const, name, member: checked(member) })),
      ...remove.map((member) => ({ type: 'set.remove' as const, name, member: checked(member) })),
    ]
    const result = await this.#commit(intents, options)
    return { version: String(result.lsn), token: encodeCausalToken(result.vc), changed: result.change !== null }
  }

  /** Commits document writes (node/docs.ts) through the same path: checks, concern, parking. */
  commitDoc(intents: readonly DocIntent[], options: ConcernOptions): Promise<CommitResult> {
    return this.#commit(intents, options)
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
    this.checkOpen()
    if (options.signal?.aborted === true)
      throw new MeshError('MESHKV_ERR_ABORTED', 'the write was aborted before it was committed')
    this.cluster.checkWrites('write')
    const concern = parseWriteConcern(options.w)
    this.cluster.checkConcern(concern)
    // A write that would wait for other members takes its place BEFORE it is committed: one
    // refused with MESHKV_ERR_BUSY was never written, so the caller may simply retry it.
    const waits = concern !== 1 && requiredMembers(concern, this.cluster.members(), 'w') > 1
    const release = waits ? this.parked.take() : undefined
    // And peers are asked to ack the frame that carries it at once, not gathered (replication/acks.ts).
    const expected = waits ? this.cluster.replicator.expectAcks() : undefined
    try {
      const result = await this.store.commitLocal(intents)
      if (result.change !== null && concern !== 1)
        await this.cluster.awaitConcern(result.change.dot, concern, options.timeoutMs)
      return result
    } finally {
      expected?.()
      release?.()
    }
  }
}
