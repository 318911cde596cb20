/**
 * One group commit: local intents become changes, remote changes are admitted, and each change's
 * ops are applied to the states the group sees; then everything goes to disk as ONE atomic batch
 * (log entries, new key states, dot index, vector clock, meta). Local intents become changes
 * inside the commit, so a precondition and the write it guards are one atomic step, and a blind
 * write replaces exactly what the node holds.
 */
import type { Hlc, NodeId, VectorClock } from '../clock/index.js'
import { hlcObserve, hlcTick, maxHlc, vcCovers, vcGet, vcHasDot, vcSet } from '../clock/index.js'
import { decodeState, encodeChange } from '../codec/index.js'
import type { AnyState, Change, Intent, Op, RegisterState, Space } from '../crdt/index.js'
import { applyOp, emptyState, opTarget, prepareOp } from '../crdt/index.js'
import { MeshError, assert, isMeshError } from '../errors.js'
import type { Backend, BackendWrite } from './backend.js'
import type { StoreHead } from './layout.js'
import {
  clockWrites,
  dotIndexKey,
  hlcWrite,
  isIndexed,
  lsnKey,
  lsnWrite,
  parseStateId,
  putUtf8,
  stateId,
  stateWrites,
} from './layout.js'
import type { CommitResult, LogEntry } from './store-types.js'

/** Largest encoded change this node makes: a peer frame is at most 4 MiB, with room for framing. */
export const CHANGE_BYTES_MAX_DEFAULT = 3.5 * 1024 * 1024

interface Settle {
  resolve: (result: CommitResult) => void
  reject: (error: unknown) => void
}

export type Commit =
  | ({ kind: 'local'; intents: readonly Intent[] } & Settle)
  | ({ kind: 'remote'; change: Change; sync: boolean } & Settle)

/** What a group needs of the store around it. */
export interface CommitContext {
  readonly backend: Backend
  readonly nodeId: NodeId
  readonly now: () => number
  /** fsync this group's batch (`--sync`, or a "make durable" step waits behind it). */
  readonly sync: boolean
  readonly maxClockOffsetMs: number | undefined
  readonly changeBytesMax: number
  /** Throws when this node may not mint a seq of its own now (the replicator's seq guard). */
  readonly mintGuard: (() => void) | null
  /**
   * Per origin, its last change staged (seq and LSN), for the sparse dot index (layout.ts,
   * `isIndexed`). Staging adds to it; the store clears it when a batch fails.
   */
  readonly lastStaged: Map<NodeId, { seq: number; lsn: number }>
}

/** What one group commit has built so far, before its batch is durable. */
interface Group {
  vc: VectorClock
  lsn: number
  hlc: Hlc
  overlay: Map<string, AnyState>
  writes: BackendWrite[]
  entries: LogEntry[]
  /** kv keys this group indexes as all tombstones (some may already be indexed). */
  tombed: Set<string>
  siblings: SiblingsCreated
  settled: { item: Commit; result: CommitResult }[]
}

/** What a durable group changed: the new head, its log entries, and index entries it added. */
export interface GroupOutcome {
  readonly head: StoreHead
  /** The batch was fsynced: it and every batch before it survive a power loss. */
  readonly synced: boolean
  readonly entries: readonly LogEntry[]
  readonly tombsAdded: number
  readonly siblings: Readonly<SiblingsCreated>
}

/**
 * kv writes (puts) and deletes that left their key with more than one sibling: each was concurrent
 * with a write of the key that it did not replace (docs/consistency.md). For metrics.
 */
export interface SiblingsCreated {
  put: number
  del: number
}

/**
 * What a group is staged on: the head the group before it leaves, and while that group's batch is
 * still being written (group-commit.ts pipelines one deep), the states it staged, which are not
 * on disk yet.
 */
export interface GroupBase {
  readonly head: StoreHead
  /** Every state the group in flight read or wrote; null when none is in flight. */
  readonly overlay: ReadonlyMap<string, AnyState> | null
}

/** What the written batch gave: the outcome (null: nothing to write, or `failed`), and `settle`. */
export interface GroupWritten {
  readonly outcome: GroupOutcome | null
  /** The batch was not written (every item is rejected by `settle`): a group staged on it must fail too. */
  readonly failed: unknown
  readonly settle: () => void
}

/** A staged group: its batch is built and its items turned into changes, nothing written yet. */
export interface StagedGroup {
  /** What a group staged while this one is written is staged on. */
  readonly next: GroupBase
  /** Writes the batch. The caller must take the outcome's head before calling `settle`. */
  write(): Promise<GroupWritten>
  /** Rejects every item unwritten: the group it was staged on failed. */
  abandon(error: unknown): void
}

/**
 * Builds one group on `base`. Every item is settled: rejected on its own when its change is
 * refused, all rejected when the batch cannot be read or written. The caller must take the
 * outcome's head as its own before calling `settle`, so a resolved commit sees its own write.
 */
export async function stageGroup(
  context: CommitContext,
  base: GroupBase,
  items: readonly Commit[],
): Promise<StagedGroup> {
  const group: Group = {
    ...base.head,
    overlay: new Map(),
    writes: [],
    entries: [],
    tombed: new Set(),
    siblings: { put: 0, del: 0 },
    settled: [],
  }
  try {
    await prefetch(context.backend, group, items, base.overlay)
  } catch (error) {
    // Nothing staged: the next group stands on what this one stood on.
    const written: GroupWritten = { outcome: null, failed: null, settle: () => rejectAll(items, error) }
    return { next: base, write: () => Promise.resolve(written), abandon: (cause) => rejectAll(items, cause) }
  }
  for (const item of items) addToGroup(context, group, item)
  const next: GroupBase = {
    head: { vc: group.vc, lsn: group.lsn, hlc: group.hlc },
    overlay: group.overlay,
  }
  const settle = (): void => group.settled.forEach(({ item, result }) => item.resolve(result))
  const abandon = (error: unknown): void =>
    rejectAll(
      group.settled.map(({ item }) => item),
      error,
    )
  if (group.entries.length === 0)
    return { next, write: () => Promise.resolve({ outcome: null, failed: null, settle }), abandon }
  group.writes.push(lsnWrite(group.lsn), hlcWrite(group.hlc), ...clockWrites(base.head.vc, group.vc))
  // A change this node made is synced even when batches are not: lost to a power loss, its
  // dot would be given to another change (peers would drop that one as a duplicate), and no
  // peer would send it back (peers never echo a node's own changes), so the node would stall.
  const holdsOwn = group.entries.some((entry) => entry.change.dot.node === context.nodeId)
  const synced = context.sync || holdsOwn
  const write = async (): Promise<GroupWritten> => {
    let tombsAdded: number
    try {
      tombsAdded = await countNewTombs(context.backend, group.tombed)
      await context.backend.write(group.writes, { sync: synced })
    } catch (error) {
      const failure = isMeshError(error)
        ? error
        : new MeshError('MESHKV_ERR_STORAGE', 'the store failed to write', { cause: error })
      return { outcome: null, failed: failure, settle: () => abandon(failure) }
    }
    const outcome: GroupOutcome = {
      head: next.head,
      synced,
      entries: group.entries,
      tombsAdded,
      siblings: group.siblings,
    }
    return { outcome, failed: null, settle }
  }
  return { next, write, abandon }
}

function rejectAll(items: readonly Commit[], error: unknown): void {
  for (const item of items) item.reject(error)
}

/**
 * Turns one item into a change (or none) and stages it; a refused item is rejected at once. Every
 * state it reads was read for the whole group first (`prefetch`), so nothing here waits.
 */
function addToGroup(context: CommitContext, group: Group, item: Commit): void {
  try {
    const change =
      item.kind === 'local' ? prepareLocal(context, group, item.intents) : checkRemote(context, group, item.change)
    const staged = change === null ? new Map<string, AnyState>() : stage(context, group, change)
    // A local commit answers with every key it named, including those it left unchanged.
    const states = item.kind === 'local' ? readTouched(group, item.intents) : staged
    group.settled.push({ item, result: { change, lsn: group.lsn, vc: group.vc, states } })
  } catch (error) {
    item.reject(error)
  }
}

function prepareLocal(context: CommitContext, group: Group, intents: readonly Intent[]): Change | null {
  checkDistinctTargets(intents)
  const ops: Op[] = []
  for (const intent of intents) {
    const target = opTarget(intent)
    const state = read(group, target.space, target.key)
    const op = prepareOp(intent, state as never, context.nodeId)
    if (op !== null) ops.push(op)
  }
  if (ops.length === 0) return null
  // Asked at the moment a seq is minted, not when the write was queued: a fault seen meanwhile counts.
  context.mintGuard?.()
  const seq = vcGet(group.vc, context.nodeId) + 1
  const hlc = hlcTick(group.hlc, context.now())
  return { dot: { node: context.nodeId, seq }, deps: group.vc, hlc, ops }
}

/**
 * A remote change that is a duplicate gives `null`. One that is not next for its origin, or
 * whose deps are missing, is refused with `MESHKV_ERR_OUT_OF_ORDER`: replication delivers in
 * causal order, but an earlier change of the same batch may have been refused (clock skew), and
 * then what follows it must wait too.
 */
function checkRemote(context: CommitContext, group: Group, change: Change): Change | null {
  if (vcHasDot(group.vc, change.dot)) return null
  if (vcGet(group.vc, change.dot.node) !== change.dot.seq - 1 || !vcCovers(group.vc, change.deps)) {
    throw new MeshError(
      'MESHKV_ERR_OUT_OF_ORDER',
      `change ${change.dot.node}:${change.dot.seq} arrived before the changes it follows`,
    )
  }
  // Refuses (and the caller counts) a change stamped too far ahead; our clock is left unchanged.
  hlcObserve(group.hlc, change.hlc, context.now(), context.maxClockOffsetMs)
  return change
}

/** Applies a change to the group: new states into the overlay, all its writes into the batch. */
function stage(context: CommitContext, group: Group, change: Change): Map<string, AnyState> {
  const states = new Map<string, AnyState>()
  const siblings: SiblingsCreated = { put: 0, del: 0 }
  for (const op of change.ops) {
    const { space, key } = opTarget(op)
    const id = stateId(space, key)
    const before = states.get(id) ?? read(group, space, key)
    const after = applyOp(before, op, change.dot, change.hlc, change.deps)
    if (op.type.startsWith('kv.') && (after as RegisterState).siblings.length > 1)
      siblings[op.type === 'kv.put' ? 'put' : 'del']++
    states.set(id, after)
  }
  // Encode everything before touching the group, so a failure leaves the group as it was.
  const lsn = group.lsn + 1
  const writes: BackendWrite[] = [
    { type: 'put', sub: 'log', key: lsnKey(lsn), value: encodeOwnChange(context, change) },
  ]
  if (isIndexed(change.dot, lsn, context.lastStaged.get(change.dot.node)))
    writes.push(putUtf8('dots', dotIndexKey(change.dot), String(lsn)))
  for (const [id, state] of states) {
    const { space, key } = parseStateId(id)
    writes.push(...stateWrites(space, key, state))
  }
  for (const [id, state] of states) group.overlay.set(id, state)
  for (const write of writes) if (write.sub === 'tombs') group.tombed.add(write.key)
  group.siblings.put += siblings.put
  group.siblings.del += siblings.del
  group.writes.push(...writes)
  group.entries.push({ lsn, change })
  context.lastStaged.set(change.dot.node, { seq: change.dot.seq, lsn })
  group.lsn = lsn
  group.vc = vcSet(group.vc, change.dot.node, change.dot.seq)
  group.hlc = maxHlc(group.hlc, change.hlc)
  return states
}

/**
 * How many of the keys the group indexes as all tombstones have no index entry on disk yet: what
 * the group adds to the tombstone count. One read per group that deletes anything, made when the
 * group before it is written.
 */
async function countNewTombs(backend: Backend, tombed: ReadonlySet<string>): Promise<number> {
  if (tombed.size === 0) return 0
  const held = await backend.getMany('tombs', [...tombed])
  return held.filter((bytes) => bytes === undefined).length
}

function readTouched(group: Group, intents: readonly Intent[]): Map<string, AnyState> {
  const states = new Map<string, AnyState>()
  for (const intent of intents) {
    const { space, key } = opTarget(intent)
    states.set(stateId(space, key), read(group, space, key))
  }
  return states
}

/**
 * A change this node makes must fit in one peer frame, or it could never replicate: it is
 * refused here, before anything is written. A peer's change already crossed in a frame.
 */
function encodeOwnChange(context: CommitContext, change: Change): Uint8Array {
  if (change.dot.node !== context.nodeId) return encodeChange(change)
  const limit = context.changeBytesMax
  try {
    return encodeChange(change, limit)
  } catch (error) {
    if (!isMeshError(error, 'MESHKV_ERR_FRAME_TOO_LARGE')) throw error
    throw new MeshError(
      'MESHKV_ERR_VALUE_TOO_LARGE',
      `one write (a batch counts as one) may carry at most ${limit} bytes, so that it fits in a replication frame`,
      { details: error.details },
    )
  }
}

/**
 * Reads every key the group will touch in one call per space, instead of one read per key. A key
 * the group in flight staged is taken from it: its batch may not be on disk yet. Any other key is
 * one that group does not write, so the disk has it as it will be.
 */
async function prefetch(
  backend: Backend,
  group: Group,
  items: readonly Commit[],
  inFlight: ReadonlyMap<string, AnyState> | null,
): Promise<void> {
  const wanted = new Map<Space, Set<string>>()
  for (const item of items) {
    const targets = item.kind === 'local' ? item.intents.map(opTarget) : item.change.ops.map(opTarget)
    for (const { space, key } of targets) {
      const id = stateId(space, key)
      if (group.overlay.has(id)) continue
      const staged = inFlight?.get(id)
      if (staged !== undefined) {
        group.overlay.set(id, staged)
        continue
      }
      const keys = wanted.get(space) ?? new Set<string>()
      keys.add(key)
      wanted.set(space, keys)
    }
  }
  for (const [space, keySet] of wanted) {
    const keys = [...keySet]
    const values = await backend.getMany(space, keys)
    keys.forEach((key, index) => {
      const bytes = values[index]
      group.overlay.set(stateId(space, key), bytes === undefined ? emptyState(space) : decodeState(space, bytes))
    })
  }
}

/** The state as this group sees it: `prefetch` read every key the group's items name. */
function read(group: Group, space: Space, key: string): AnyState {
  const state = group.overlay.get(stateId(space, key))
  assert(state !== undefined, `the group did not read ${space} ${JSON.stringify(key)} first`)
  return state
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
