/**
 * The specification of each type, computed from the changes a state reflects (named by a vector
 * clock), over the JSON records of history.ts — not by the code under test:
 * - register: a write survives unless a write of the key in the clock names its dot in its
 *   context (or, for a delete, follows it: its deps hold the delete's dot); a plain read answers
 *   the survivor with the highest (HLC, node id, seq);
 * - counter: the sum of every increment in the clock;
 * - set (add-wins): an add's dot keeps its member unless an add or remove of that member in the
 *   clock names the dot in its context.
 */
import type { ChangeRecord, FinalSibling, OpRecord } from './history.js'
import { parseDot, vcHas } from './history.js'

type Vc = Readonly<Record<string, number>>

interface Stamped<O extends OpRecord> {
  change: ChangeRecord
  op: O
}

type RegisterOp = Extract<OpRecord, { type: 'put' | 'del' }>
type CounterOp = Extract<OpRecord, { type: 'incr' }>
type SetOp = Extract<OpRecord, { type: 'sadd' | 'srem' }>

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
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
    const replaced = new Set<string>()
    for (const { op } of writes) for (const dot of op.context) replaced.add(dot)
    return writes
      .filter(
        (item) =>
          !replaced.has(item.change.dot) &&
          !(item.op.type === 'del' && writes.some((other) => vcHas(other.change.deps, item.change.dot))),
      )
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
