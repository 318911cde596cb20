/**
 * What a replica must hold, computed from the set of changes it applied by the types'
 * specifications, not by their code:
 * - register: a write survives unless another write of the key names its dot in its context (a
 *   delete also goes once another write of the key follows it: its deps hold the delete's dot);
 * - counter: per origin, the sums of its increments (`p`) and decrements (`n`);
 * - set (add-wins): an add of a member survives unless another add or remove of that member was
 *   made after it (its dot is in that change's causal past, `deps`).
 * Also the checks every change must pass whoever made it.
 */
import type { Dot, NodeId, VectorClock } from '../../src/clock/index.js'
import { compareDots, dotEquals, vcGet, vcHasDot } from '../../src/clock/index.js'
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
import type { View } from './history.js'
import { sortedRecord, stateKey } from './history.js'

interface Stamped<O> {
  readonly change: Change
  readonly op: O
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/** The view a replica must have after applying exactly the changes named by `vc`. */
export function expectedView(changes: readonly Change[], vc: VectorClock): View {
  const writes = new Map<string, Stamped<KvPutOp | KvDelOp>[]>()
  const increments = new Map<string, Stamped<CounterAddOp>[]>()
  const setOps = new Map<string, Map<string, Stamped<SetAddOp | SetRemoveOp>[]>>()
  for (const change of changes) {
    if (!vcHasDot(vc, change.dot)) continue
    for (const op of change.ops) {
      switch (op.type) {
        case 'kv.put':
        case 'kv.del':
          push(writes, op.key, { change, op })
          break
        case 'counter.add':
          push(increments, op.name, { change, op })
          break
        case 'set.add':
        case 'set.remove': {
          const members = setOps.get(op.name) ?? new Map<string, Stamped<SetAddOp | SetRemoveOp>[]>()
          setOps.set(op.name, members)
          push(members, op.member, { change, op })
          break
        }
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

function expectedSiblings(list: readonly Stamped<KvPutOp | KvDelOp>[]): Sibling[] {
  const replaced = (dot: Dot, isDelete: boolean): boolean =>
    list.some(
      ({ change, op }) =>
        !dotEquals(change.dot, dot) &&
        (op.context.some((seen) => dotEquals(seen, dot)) || (isDelete && vcHasDot(change.deps, dot))),
    )
  return list
    .filter(({ change, op }) => !replaced(change.dot, op.type === 'kv.del'))
    .map(({ change, op }) => ({
      dot: change.dot,
      hlc: change.hlc,
      value: op.type === 'kv.put' ? op.value : null,
      contentType: op.type === 'kv.put' ? op.contentType : null,
    }))
    .sort((x, y) => compareDots(x.dot, y.dot))
}

function survivingAdds(list: readonly Stamped<SetAddOp | SetRemoveOp>[]): Dot[] {
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
    } else {
      for (const dot of op.context) {
        if (!vcHasDot(change.deps, dot))
          problems.push(`${op.type} context names ${dot.node}:${dot.seq}, outside the change's causal past`)
      }
    }
  }
  return problems
}
