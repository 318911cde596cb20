/**
 * The one oracle: the specification of each type, computed from the changes a state reflects
 * (named by a vector clock) — not by the code under test. Two faces over one register rule
 * (`survivingWrites`): `ChangeIndex` over the JSON records of history.ts, for the checkers of the
 * simulator (L1) and chaos (L2); `expectedView` over the `Change`s themselves, for the merge laws
 * (L0, test/crdt), with `changeProblems`, the checks every change must pass whoever made it.
 *
 * - register: a write survives unless a write of the key in the clock names its dot in its
 *   context (or, for a delete, follows it: its deps hold the delete's dot); a plain read answers
 *   the survivor with the highest (HLC, node id, seq);
 * - counter: the sum of every increment in the clock;
 * - set (add-wins): an add's dot keeps its member unless an add or remove of that member in the
 *   clock names the dot in its context.
 */
import type { Dot, NodeId, VectorClock } from '../../src/clock/index.js'
import { compareDots, dotKey, vcGet, vcHasDot } from '../../src/clock/index.js'
import type {
  AnyState,
  Change,
  CounterAddOp,
  KvDelOp,
  KvPutOp,
  SetAddOp,
  SetRemoveOp,
  Sibling,
} from '../../src/crdt/index.js'
import { opTarget } from '../../src/crdt/index.js'
import type { View } from '../helpers/replicas.js'
import { sortedRecord, stateKey } from '../helpers/replicas.js'
import type { ChangeRecord, FinalSibling, OpRecord } from './history.js'
import { parseDot, vcHas } from './history.js'

type Vc = Readonly<Record<string, number>>

interface Stamped<O extends OpRecord> {
  change: ChangeRecord
  op: O
}

/** An op of a `Change`, with the change it came in. */
interface ChangeStamped<O> {
  readonly change: Change
  readonly op: O
}

type RegisterOp = Extract<OpRecord, { type: 'put' | 'del' }>
type CounterOp = Extract<OpRecord, { type: 'incr' }>
type SetOp = Extract<OpRecord, { type: 'sadd' | 'srem' }>

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/** How the register rule sees a write, whatever its record looks like. */
interface WriteView<W> {
  dot(write: W): string
  context(write: W): readonly string[]
  isDelete(write: W): boolean
  /** Is `dot` in the causal past (`deps`) of `write`? */
  pastHas(write: W, dot: string): boolean
}

/**
 * The register rule: of the writes of one key, a write survives unless another names its dot in
 * its context; a delete also goes once another write follows it (holds its dot in its deps).
 */
function survivingWrites<W>(writes: readonly W[], view: WriteView<W>): W[] {
  const replaced = new Set<string>()
  for (const write of writes) for (const dot of view.context(write)) replaced.add(dot)
  return writes.filter(
    (write) =>
      !replaced.has(view.dot(write)) &&
      !(view.isDelete(write) && writes.some((other) => view.pastHas(other, view.dot(write)))),
  )
}

/** Orders siblings as a plain read does: HLC, then node id, then seq. */
export function compareLwwRecords(
  a: { dot: string; hlc: readonly [number, number] },
  b: { dot: string; hlc: readonly [number, number] },
): number {
  if (a.hlc[0] !== b.hlc[0]) return a.hlc[0] - b.hlc[0]
  if (a.hlc[1] !== b.hlc[1]) return a.hlc[1] - b.hlc[1]
  const x = parseDot(a.dot)
  const y = parseDot(b.dot)
  if (x.node !== y.node) return x.node < y.node ? -1 : 1
  return x.seq - y.seq
}

/** What a plain read of these siblings answers: the value of the LWW-highest, null if none or a tombstone. */
export function plainRead(siblings: readonly FinalSibling[]): string | null {
  let best: FinalSibling | undefined
  for (const sibling of siblings) if (best === undefined || compareLwwRecords(sibling, best) > 0) best = sibling
  return best?.value ?? null
}

const RECORD_WRITES: WriteView<Stamped<RegisterOp>> = {
  dot: ({ change }) => change.dot,
  context: ({ op }) => op.context,
  isDelete: ({ op }) => op.type === 'del',
  pastHas: ({ change }, dot) => vcHas(change.deps, dot),
}

export class ChangeIndex {
  readonly byDot = new Map<string, ChangeRecord>()
  /** Dots met twice with different contents: one node made two changes under one identity. */
  readonly conflicts: string[] = []
  readonly #registers = new Map<string, Stamped<RegisterOp>[]>()
  readonly #counters = new Map<string, Stamped<CounterOp>[]>()
  readonly #sets = new Map<string, Stamped<SetOp>[]>()

  constructor(changes: Iterable<ChangeRecord>) {
    for (const change of changes) {
      const known = this.byDot.get(change.dot)
      if (known !== undefined) {
        if (JSON.stringify(known) !== JSON.stringify(change)) this.conflicts.push(change.dot)
        continue
      }
      this.byDot.set(change.dot, change)
      for (const op of change.ops) {
        if (op.type === 'put' || op.type === 'del') push(this.#registers, op.key, { change, op })
        else if (op.type === 'incr') push(this.#counters, op.name, { change, op })
        else push(this.#sets, op.name, { change, op })
      }
    }
  }

  registerKeys(): string[] {
    return [...this.#registers.keys()]
  }

  counterNames(): string[] {
    return [...this.#counters.keys()]
  }

  setNames(): string[] {
    return [...this.#sets.keys()]
  }

  /** The siblings of `key` after exactly the changes in `vc`, sorted by dot text. */
  registerSiblings(key: string, vc: Vc): FinalSibling[] {
    const writes = (this.#registers.get(key) ?? []).filter((item) => vcHas(vc, item.change.dot))
    return survivingWrites(writes, RECORD_WRITES)
      .map(({ change, op }) => ({ dot: change.dot, hlc: change.hlc, value: op.type === 'put' ? op.value : null }))
      .sort((a, b) => (a.dot < b.dot ? -1 : a.dot > b.dot ? 1 : 0))
  }

  /** Changes in `vc` that wrote `key` naming `dot` in their context (or following it, when it is a delete): what replaced it. */
  replacersOf(key: string, dot: string, vc: Vc, isDelete = false): ChangeRecord[] {
    return (this.#registers.get(key) ?? [])
      .filter(
        (item) =>
          vcHas(vc, item.change.dot) && (item.op.context.includes(dot) || (isDelete && vcHas(item.change.deps, dot))),
      )
      .map((item) => item.change)
  }

  counterValue(name: string, vc: Vc): number {
    let total = 0
    for (const { change, op } of this.#counters.get(name) ?? []) if (vcHas(vc, change.dot)) total += op.delta
    return total
  }

  /** member → dots (sorted by text) after exactly the changes in `vc`; absent members are left out. */
  setState(name: string, vc: Vc): Map<string, string[]> {
    const ops = (this.#sets.get(name) ?? []).filter((item) => vcHas(vc, item.change.dot))
    const seen = new Map<string, Set<string>>()
    for (const { op } of ops) {
      const set = seen.get(op.member) ?? new Set<string>()
      for (const dot of op.context) set.add(dot)
      seen.set(op.member, set)
    }
    const out = new Map<string, string[]>()
    for (const { change, op } of ops) {
      if (op.type !== 'sadd' || seen.get(op.member)?.has(change.dot) === true) continue
      push(out, op.member, change.dot)
    }
    for (const dots of out.values()) dots.sort()
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  }

  /** Changes in `vc` that added or removed `member` of set `name` naming `dot` in their context. */
  setObserversOf(name: string, member: string, dot: string, vc: Vc): ChangeRecord[] {
    return (this.#sets.get(name) ?? [])
      .filter((item) => item.op.member === member && vcHas(vc, item.change.dot) && item.op.context.includes(dot))
      .map((item) => item.change)
  }

  /** Every value any change put under any key (a failed write's value must be none of them). */
  putValues(): Set<string> {
    const out = new Set<string>()
    for (const list of this.#registers.values()) for (const { op } of list) if (op.type === 'put') out.add(op.value)
    return out
  }

  /** Dots named by `vc` that no record holds. */
  missingFrom(vc: Vc): string[] {
    const out: string[] = []
    for (const [node, seq] of Object.entries(vc)) {
      for (let s = 1; s <= seq; s++) if (!this.byDot.has(`${node}:${s}`)) out.push(`${node}:${s}`)
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// Over `Change`s: the view a replica must have (L0).

const CHANGE_WRITES: WriteView<ChangeStamped<KvPutOp | KvDelOp>> = {
  dot: ({ change }) => dotKey(change.dot),
  context: ({ op }) => op.context.map(dotKey),
  isDelete: ({ op }) => op.type === 'kv.del',
  pastHas: ({ change }, dot) => vcHas(change.deps, dot),
}

/**
 * The view a replica must have after applying exactly the changes named by `vc`:
 * - register: the surviving writes (`survivingWrites`);
 * - counter: per origin, the sums of its increments (`p`) and decrements (`n`);
 * - set (add-wins): an add of a member survives unless another add or remove of that member was
 *   made after it (its dot is in that change's causal past, `deps`).
 */
export function expectedView(changes: readonly Change[], vc: VectorClock): View {
  const writes = new Map<string, ChangeStamped<KvPutOp | KvDelOp>[]>()
  const increments = new Map<string, ChangeStamped<CounterAddOp>[]>()
  const setOps = new Map<string, Map<string, ChangeStamped<SetAddOp | SetRemoveOp>[]>>()
  for (const change of changes) {
    if (!vcHasDot(vc, change.dot)) continue
    for (const op of change.ops) {
      if (op.type === 'kv.put' || op.type === 'kv.del') push(writes, op.key, { change, op })
      else if (op.type === 'counter.add') push(increments, op.name, { change, op })
      else if (op.type === 'doc.update')
        continue // the workload writes no documents
      else {
        const members = setOps.get(op.name) ?? new Map<string, ChangeStamped<SetAddOp | SetRemoveOp>[]>()
        setOps.set(op.name, members)
        push(members, op.member, { change, op })
      }
    }
  }
  const entries: [string, AnyState][] = []
  for (const [key, list] of writes) {
    const siblings = expectedSiblings(list)
    if (siblings.length > 0) entries.push([stateKey('kv', key), { siblings }])
  }
  for (const [name, list] of increments) {
    const p = new Map<NodeId, number>()
    const n = new Map<NodeId, number>()
    for (const { change, op } of list) {
      if (op.delta === 0) continue
      const part = op.delta >= 0 ? p : n
      part.set(change.dot.node, (part.get(change.dot.node) ?? 0) + Math.abs(op.delta))
    }
    if (p.size + n.size > 0) entries.push([stateKey('counter', name), { p: sortedRecord(p), n: sortedRecord(n) }])
  }
  for (const [name, members] of setOps) {
    const setEntries = [...members]
      .map(([member, list]) => ({ member, dots: survivingAdds(list) }))
      .filter((entry) => entry.dots.length > 0)
      .sort((x, y) => (x.member < y.member ? -1 : x.member > y.member ? 1 : 0))
    if (setEntries.length > 0) entries.push([stateKey('set', name), { entries: setEntries }])
  }
  return { vc, states: sortedRecord(entries) }
}

function expectedSiblings(list: readonly ChangeStamped<KvPutOp | KvDelOp>[]): Sibling[] {
  return survivingWrites(list, CHANGE_WRITES)
    .map(({ change, op }) => ({
      dot: change.dot,
      hlc: change.hlc,
      value: op.type === 'kv.put' ? op.value : null,
      contentType: op.type === 'kv.put' ? op.contentType : null,
    }))
    .sort((x, y) => compareDots(x.dot, y.dot))
}

function survivingAdds(list: readonly ChangeStamped<SetAddOp | SetRemoveOp>[]): Dot[] {
  return list
    .filter(({ op }) => op.type === 'set.add')
    .filter(({ change: add }) => !list.some(({ change }) => change !== add && vcHasDot(change.deps, add.dot)))
    .map(({ change }) => change.dot)
    .sort(compareDots)
}

/**
 * What every change must satisfy for causal delivery to make all replicas agree: it is its
 * origin's next change after `deps`, a context names only dots in its causal past (so they are
 * applied before it everywhere), a counter delta is a non-zero safe integer, one op per key.
 * Returns the broken rules (empty when the change is sound).
 */
export function changeProblems(change: Change): string[] {
  const problems: string[] = []
  if (vcGet(change.deps, change.dot.node) !== change.dot.seq - 1) problems.push('seq is not deps[origin] + 1')
  const targets = new Set<string>()
  for (const op of change.ops) {
    const { space, key } = opTarget(op)
    if (targets.has(`${space}/${key}`)) problems.push(`two ops on ${space}/${key}`)
    targets.add(`${space}/${key}`)
    if (op.type === 'counter.add') {
      if (!Number.isSafeInteger(op.delta) || op.delta === 0)
        problems.push(`counter delta ${op.delta} is not a non-zero safe integer`)
    } else if (op.type !== 'doc.update') {
      for (const dot of op.context) {
        if (!vcHasDot(change.deps, dot))
          problems.push(`${op.type} context names ${dot.node}:${dot.seq}, outside the change's causal past`)
      }
    }
  }
  return problems
}
