/**
 * Valid replica scripts, for the merge laws (L0). (Not the client-operation history the checkers
 * read: that format is test/checkers/history.ts.)
 *
 * A history is a script run against 2-4 in-memory replicas. Each step is either a local write —
 * client intents turned into ops by `prepareOp` against that replica's current state, bundled into
 * one change `{ dot, deps, hlc, ops }` and applied locally — or a sync from one replica to another,
 * which delivers the changes the receiver lacks in the sender's log order (a causal order). Every
 * delivery is checked: `VC[origin] == seq - 1` and `deps` covered, or the generator is broken.
 *
 * The script is plain JSON, so a failing case prints as `runHistory({...})` and replays as is.
 * Wall clocks move by random amounts, backwards too, and start close together so HLC ties happen.
 */
import fc from 'fast-check'
import type { Dot, Hlc, NodeId, VectorClock } from '../../src/clock/index.js'
import {
  HLC_ZERO,
  VC_EMPTY,
  encodeVersion,
  hlcObserve,
  hlcTick,
  nodeIdFromBytes,
  vcCovers,
  vcGet,
  vcJoin,
  vcSet,
} from '../../src/clock/index.js'
import type { AnyState, Change, Intent, Op, RegisterState, Space } from '../../src/crdt/index.js'
import {
  applyOp,
  emptyState,
  isEmptyState,
  joinState,
  opTarget,
  prepareOp,
  registerDots,
} from '../../src/crdt/index.js'
import { isMeshError } from '../../src/errors.js'

// ---------------------------------------------------------------------------------------------
// Pools: few keys and members, so writes collide often.

export const KV_KEYS = ['a', 'b', '__proto__'] as const
export const COUNTER_NAMES = ['hits', 'stock'] as const
export const SET_NAMES = ['tags', 'roles'] as const
// No empty member: no node takes an empty key or name from a peer (see isKey in src/codec/guards.ts).
export const MEMBERS = ['x', 'y', 'z', '__proto__', 'ü/☃'] as const
export const CONTENT_TYPES = ['application/json', 'application/octet-stream', 'text/plain; charset=utf-8'] as const

// ---------------------------------------------------------------------------------------------
// The script.

/** Which dots a register write names as what it replaces. */
export type ContextSpec =
  | { readonly kind: 'blind' }
  | { readonly kind: 'empty' }
  /** Some of the dots this replica holds for the key. */
  | { readonly kind: 'observed'; readonly mask: readonly boolean[] }
  /**
   * Dots a client read on another replica (which this one may not have seen yet), plus maybe a
   * made-up dot: the context of a client that fails over between nodes.
   */
  | {
      readonly kind: 'foreign'
      readonly replica: number
      readonly mask: readonly boolean[]
      readonly extra: { readonly node: number; readonly seq: number } | null
    }

export type PreconditionSpec = 'none' | 'ifMatchCurrent' | 'ifMatchStale' | 'ifNoneMatch'

export type IntentSpec =
  | {
      readonly type: 'kv.put'
      readonly key: number
      readonly value: readonly number[]
      readonly contentType: number
      readonly context: ContextSpec
      readonly precondition: PreconditionSpec
    }
  | {
      readonly type: 'kv.del'
      readonly key: number
      readonly context: ContextSpec
      readonly precondition: PreconditionSpec
    }
  | { readonly type: 'counter.add'; readonly name: number; readonly delta: number }
  | { readonly type: 'set.add'; readonly name: number; readonly member: number }
  | { readonly type: 'set.remove'; readonly name: number; readonly member: number }

/** Replica indices are taken modulo the number of replicas, so any number is valid. */
export type Step =
  | {
      readonly kind: 'write'
      readonly replica: number
      readonly wallDeltaMs: number
      readonly intents: readonly IntentSpec[]
    }
  | {
      readonly kind: 'sync'
      readonly from: number
      readonly to: number
      readonly count: number
      readonly wallDeltaMs: number
    }

export interface Script {
  readonly nodes: readonly string[]
  readonly steps: readonly Step[]
}

// ---------------------------------------------------------------------------------------------
// Replicas.

export interface Replica {
  readonly node: NodeId
  vc: VectorClock
  hlc: Hlc
  wallMs: number
  /** Key states by `stateKey(space, key)`. */
  readonly states: Map<string, AnyState>
  /** Every change applied, in application order: a causal order. */
  readonly log: Change[]
}

export function stateKey(space: Space, key: string): string {
  return `${space}/${key}`
}

export function spaceOf(stateKeyText: string): Space {
  const space = stateKeyText.slice(0, stateKeyText.indexOf('/'))
  if (space !== 'kv' && space !== 'counter' && space !== 'set') throw new Error(`not a state key: ${stateKeyText}`)
  return space
}

export function newReplica(node: NodeId, wallMs = 1_000): Replica {
  return { node, vc: VC_EMPTY, hlc: HLC_ZERO, wallMs, states: new Map(), log: [] }
}

export function stateOf(replica: Replica, space: Space, key: string): AnyState {
  return replica.states.get(stateKey(space, key)) ?? emptyState(space)
}

/** Has the replica applied this change already? (`seq <= VC[origin]`) */
export function isDuplicate(replica: Replica, change: Change): boolean {
  return change.dot.seq <= vcGet(replica.vc, change.dot.node)
}

/** Is this change next for its origin, with its dependencies applied? */
export function canDeliver(replica: Replica, change: Change): boolean {
  return vcGet(replica.vc, change.dot.node) === change.dot.seq - 1 && vcCovers(replica.vc, change.deps)
}

/** Applies a change in causal order; anything else is a broken generator or test. */
export function applyChange(replica: Replica, change: Change): void {
  if (!canDeliver(replica, change)) {
    throw new Error(
      `causal delivery broken: ${change.dot.node}:${change.dot.seq} (deps ${JSON.stringify(change.deps)}) at VC ${JSON.stringify(replica.vc)}`,
    )
  }
  for (const op of change.ops) {
    const { space, key } = opTarget(op)
    replica.states.set(
      stateKey(space, key),
      applyOp(stateOf(replica, space, key), op, change.dot, change.hlc, change.deps),
    )
  }
  replica.vc = vcSet(replica.vc, change.dot.node, change.dot.seq)
  replica.log.push(change)
  if (change.dot.node !== replica.node) {
    // A receiver follows the highest clock it has seen (no skew bound in these histories).
    replica.hlc = hlcObserve(replica.hlc, change.hlc, replica.wallMs, Number.MAX_SAFE_INTEGER)
  }
}

/**
 * A causal buffer: takes changes in any order, duplicates included, drops duplicates, holds a
 * change until it is deliverable, and applies it then. Returns the changes still held.
 */
export function receiveInAnyOrder(
  replica: Replica,
  arrivals: readonly Change[],
): { held: Change[]; duplicates: number } {
  const held: Change[] = []
  let duplicates = 0
  const drain = (): void => {
    for (let progress = true; progress;) {
      progress = false
      for (let i = 0; i < held.length; i++) {
        const change = held[i] as Change
        if (isDuplicate(replica, change)) {
          held.splice(i--, 1)
          duplicates++
        } else if (canDeliver(replica, change)) {
          held.splice(i, 1)
          applyChange(replica, change)
          progress = true
          break
        }
      }
    }
  }
  for (const change of arrivals) {
    if (isDuplicate(replica, change)) duplicates++
    else if (canDeliver(replica, change)) {
      applyChange(replica, change)
      drain()
    } else held.push(change)
  }
  drain()
  return { held, duplicates }
}

/** Sends `to` up to `count` changes it lacks, in `from`'s log order. */
export function syncReplicas(from: Replica, to: Replica, count = Number.POSITIVE_INFINITY): number {
  let sent = 0
  for (const change of from.log) {
    if (sent >= count) break
    if (isDuplicate(to, change)) continue
    applyChange(to, change)
    sent++
  }
  return sent
}

/** A fresh replica that applied exactly the changes named by `vc`, in the given (causal) order. */
export function replayUpTo(node: NodeId, changes: readonly Change[], vc: VectorClock): Replica {
  const replica = newReplica(node)
  for (const change of changes) {
    if (change.dot.seq <= vcGet(vc, change.dot.node)) applyChange(replica, change)
  }
  return replica
}

// ---------------------------------------------------------------------------------------------
// Local writes.

function pick<T>(pool: readonly T[], index: number): T {
  return pool[((index % pool.length) + pool.length) % pool.length] as T
}

function masked<T>(items: readonly T[], mask: readonly boolean[]): T[] {
  return items.filter((_, i) => mask[i % Math.max(1, mask.length)] ?? true)
}

function contextFor(
  spec: ContextSpec,
  replica: Replica,
  replicas: readonly Replica[],
  key: string,
): readonly Dot[] | undefined {
  const held = registerDots(stateOf(replica, 'kv', key) as RegisterState)
  switch (spec.kind) {
    case 'blind':
      return undefined
    case 'empty':
      return []
    case 'observed':
      return masked(held, spec.mask)
    case 'foreign': {
      const other = pick(replicas, spec.replica)
      const dots = masked(registerDots(stateOf(other, 'kv', key) as RegisterState), spec.mask)
      if (spec.extra !== null) dots.push({ node: pick(replicas, spec.extra.node).node, seq: spec.extra.seq })
      return dots
    }
  }
}

function preconditionsFor(
  spec: PreconditionSpec,
  replica: Replica,
  key: string,
): { ifMatch?: string; ifNoneMatch?: boolean } {
  const held = registerDots(stateOf(replica, 'kv', key) as RegisterState)
  switch (spec) {
    case 'none':
      return {}
    case 'ifMatchCurrent':
      return { ifMatch: encodeVersion(held) }
    case 'ifMatchStale':
      return { ifMatch: encodeVersion([...held, { node: replica.node, seq: vcGet(replica.vc, replica.node) + 1 }]) }
    case 'ifNoneMatch':
      return { ifNoneMatch: true }
  }
}

/** The client intent a spec stands for, against this replica (and, for foreign contexts, the others). */
export function toIntent(spec: IntentSpec, replica: Replica, replicas: readonly Replica[]): Intent {
  switch (spec.type) {
    case 'kv.put': {
      const key = pick(KV_KEYS, spec.key)
      const context = contextFor(spec.context, replica, replicas, key)
      return {
        type: 'kv.put',
        key,
        value: Uint8Array.from(spec.value),
        contentType: pick(CONTENT_TYPES, spec.contentType),
        ...(context === undefined ? {} : { context }),
        ...preconditionsFor(spec.precondition, replica, key),
      }
    }
    case 'kv.del': {
      const key = pick(KV_KEYS, spec.key)
      const context = contextFor(spec.context, replica, replicas, key)
      return {
        type: 'kv.del',
        key,
        ...(context === undefined ? {} : { context }),
        ...preconditionsFor(spec.precondition, replica, key),
      }
    }
    case 'counter.add':
      return { type: 'counter.add', name: pick(COUNTER_NAMES, spec.name), delta: spec.delta }
    case 'set.add':
      return { type: 'set.add', name: pick(SET_NAMES, spec.name), member: pick(MEMBERS, spec.member) }
    case 'set.remove':
      return { type: 'set.remove', name: pick(SET_NAMES, spec.name), member: pick(MEMBERS, spec.member) }
  }
}

/**
 * One local write: each intent becomes an op through `prepareOp` against the replica's current
 * state (one op per key, as a batch requires); refused intents (failed precondition, overflow) and
 * no-ops are left out. The ops become one change, applied locally. Null when nothing changes.
 */
export function localWrite(replica: Replica, intents: readonly Intent[]): Change | null {
  const ops: Op[] = []
  const targets = new Set<string>()
  for (const intent of intents) {
    const { space, key } = opTarget(intent)
    if (targets.has(stateKey(space, key))) continue
    let op: Op | null
    try {
      op = prepareOp(intent, stateOf(replica, space, key), replica.node)
    } catch (error) {
      if (isMeshError(error, 'MESHKV_ERR_PRECONDITION_FAILED') || isMeshError(error, 'MESHKV_ERR_COUNTER_OVERFLOW'))
        continue
      throw error
    }
    if (op === null) continue
    targets.add(stateKey(space, key))
    ops.push(op)
  }
  if (ops.length === 0) return null
  const hlc = hlcTick(replica.hlc, replica.wallMs)
  const change: Change = {
    dot: { node: replica.node, seq: vcGet(replica.vc, replica.node) + 1 },
    deps: replica.vc,
    hlc,
    ops,
  }
  replica.hlc = hlc
  applyChange(replica, change)
  return change
}

// ---------------------------------------------------------------------------------------------
// Running a script.

export interface History {
  readonly script: Script
  readonly nodes: readonly NodeId[]
  /** The replicas at the end of the script (not necessarily converged). */
  readonly replicas: readonly Replica[]
  /** Every change made, in creation order: a causal order. */
  readonly changes: readonly Change[]
}

export function runHistory(script: Script): History {
  const nodes = script.nodes as readonly NodeId[]
  const replicas = nodes.map((node, i) => newReplica(node, 1_000 + 7 * i))
  const changes: Change[] = []
  for (const step of script.steps) {
    if (step.kind === 'write') {
      const replica = pick(replicas, step.replica)
      replica.wallMs = Math.max(0, replica.wallMs + step.wallDeltaMs)
      const change = localWrite(
        replica,
        step.intents.map((spec) => toIntent(spec, replica, replicas)),
      )
      if (change !== null) changes.push(change)
    } else {
      const from = pick(replicas, step.from)
      const to = pick(replicas, step.to)
      if (from === to) continue
      to.wallMs = Math.max(0, to.wallMs + step.wallDeltaMs)
      syncReplicas(from, to, step.count)
    }
  }
  const history: History = { script, nodes, replicas, changes }
  // A failing case prints as a replayable call rather than as a heap of replica objects.
  Object.defineProperty(history, fc.toStringMethod, {
    value: () => `runHistory(${JSON.stringify(script)})`,
    enumerable: false,
  })
  return history
}

/** Brings every replica up to date with every other (a full mesh exchange until quiet). */
export function syncAll(replicas: readonly Replica[]): void {
  for (let changed = true; changed;) {
    changed = false
    for (const from of replicas) {
      for (const to of replicas) if (from !== to && syncReplicas(from, to) > 0) changed = true
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries.

export const nodeIdArb: fc.Arbitrary<NodeId> = fc.uint8Array({ minLength: 8, maxLength: 8 }).map(nodeIdFromBytes)

export const nodeIdsArb = (minLength = 2, maxLength = 4): fc.Arbitrary<NodeId[]> =>
  fc.uniqueArray(nodeIdArb, { minLength, maxLength })

const maskArb = fc.array(fc.boolean(), { minLength: 1, maxLength: 4 })

export const contextSpecArb: fc.Arbitrary<ContextSpec> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'blind' as const }), weight: 4 },
  { arbitrary: fc.constant({ kind: 'empty' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('observed' as const), mask: maskArb }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('foreign' as const),
      replica: fc.nat(3),
      mask: maskArb,
      extra: fc.option(fc.record({ node: fc.nat(3), seq: fc.integer({ min: 1, max: 6 }) })),
    }),
    weight: 1,
  },
)

export const preconditionSpecArb: fc.Arbitrary<PreconditionSpec> = fc.oneof(
  { arbitrary: fc.constant('none' as const), weight: 8 },
  { arbitrary: fc.constantFrom('ifMatchCurrent' as const, 'ifMatchStale' as const, 'ifNoneMatch' as const), weight: 2 },
)

export const deltaArb: fc.Arbitrary<number> = fc.oneof(
  { arbitrary: fc.integer({ min: -5, max: 5 }), weight: 4 },
  { arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), weight: 1 },
)

export const intentSpecArb: fc.Arbitrary<IntentSpec> = fc.oneof(
  {
    arbitrary: fc.record({
      type: fc.constant('kv.put' as const),
      key: fc.nat(2),
      value: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 4 }),
      contentType: fc.nat(2),
      context: contextSpecArb,
      precondition: preconditionSpecArb,
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      type: fc.constant('kv.del' as const),
      key: fc.nat(2),
      context: contextSpecArb,
      precondition: preconditionSpecArb,
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ type: fc.constant('counter.add' as const), name: fc.nat(1), delta: deltaArb }), weight: 3 },
  { arbitrary: fc.record({ type: fc.constant('set.add' as const), name: fc.nat(1), member: fc.nat(5) }), weight: 3 },
  { arbitrary: fc.record({ type: fc.constant('set.remove' as const), name: fc.nat(1), member: fc.nat(5) }), weight: 2 },
)

const wallDeltaArb = fc.integer({ min: -40, max: 60 })

export const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      replica: fc.nat(3),
      wallDeltaMs: wallDeltaArb,
      intents: fc.array(intentSpecArb, { minLength: 1, maxLength: 3 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('sync' as const),
      from: fc.nat(3),
      to: fc.nat(3),
      count: fc.integer({ min: 1, max: 12 }),
      wallDeltaMs: wallDeltaArb,
    }),
    weight: 2,
  },
)

export interface HistoryOptions {
  readonly minReplicas?: number
  readonly maxReplicas?: number
  readonly maxSteps?: number
}

export function scriptArb(options: HistoryOptions = {}): fc.Arbitrary<Script> {
  return fc.record({
    nodes: nodeIdsArb(options.minReplicas ?? 2, options.maxReplicas ?? 4),
    steps: fc.array(stepArb, { maxLength: options.maxSteps ?? 30, size: 'max' }),
  })
}

/** Valid histories: 2-4 replicas, up to 30 steps of local writes and partial syncs. */
export function historyArb(options: HistoryOptions = {}): fc.Arbitrary<History> {
  return scriptArb(options).map(runHistory)
}

// ---------------------------------------------------------------------------------------------
// Views: a replica's states as plain data, and their state-based join.

/** What a replica holds: its VC and its non-empty key states, keys sorted. */
export interface View {
  readonly vc: VectorClock
  readonly states: Readonly<Record<string, AnyState>>
}

export function viewOf(replica: Replica, space?: Space): View {
  const entries = [...replica.states].filter(
    ([key, state]) => (space === undefined || spaceOf(key) === space) && !isEmptyState(spaceOf(key), state),
  )
  return { vc: replica.vc, states: sortedRecord(entries) }
}

/** The state-based join of two views, key by key (an absent key is the empty state). */
export function joinViews(a: View, b: View): View {
  const keys = new Set([...Object.keys(a.states), ...Object.keys(b.states)])
  const entries: [string, AnyState][] = []
  for (const key of keys) {
    const space = spaceOf(key)
    const joined = joinState(space, a.states[key] ?? emptyState(space), a.vc, b.states[key] ?? emptyState(space), b.vc)
    if (!isEmptyState(space, joined)) entries.push([key, joined])
  }
  return { vc: vcJoin(a.vc, b.vc), states: sortedRecord(entries) }
}

export function sortedRecord<T>(entries: Iterable<[string, T]>): Record<string, T> {
  const out: Record<string, T> = {}
  for (const [key, value] of [...entries].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) out[key] = value
  return out
}
