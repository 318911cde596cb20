import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { vcHasDot, vcJoin } from '../../src/clock/index.js'
import type { Change, CounterAddOp, CounterState } from '../../src/crdt/index.js'
import {
  COUNTER_EMPTY,
  applyCounter,
  counterAddIsExact,
  counterValue,
  joinCounter,
  prepareOp,
} from '../../src/crdt/index.js'
import type { History } from '../helpers/replicas.js'
import {
  COUNTER_NAMES,
  historyArb,
  joinViews,
  newReplica,
  receiveInAnyOrder,
  stateOf,
  viewOf,
} from '../helpers/replicas.js'
import { PROPERTY, meshErrorCode } from '../helpers/runs.js'
import { viewTripleArb } from '../helpers/views.js'

const A = '00000000000000aa' as NodeId
const B = '00000000000000bb' as NodeId

/** The sum of every delta to `name` among the changes `vc` names. */
function sumOfDeltas(changes: readonly Change[], vc: VectorClock, name: string): number {
  let total = 0
  for (const change of changes) {
    if (!vcHasDot(vc, change.dot)) continue
    for (const op of change.ops) if (op.type === 'counter.add' && op.name === name) total += op.delta
  }
  return total
}

function valueIn(view: { states: Readonly<Record<string, unknown>> }, name: string): number {
  const state = view.states[`counter/${name}`] as CounterState | undefined
  return state === undefined ? 0 : counterValue(state)
}

const allApplied = (history: History): VectorClock =>
  history.replicas.reduce<VectorClock>((vc, r) => vcJoin(vc, r.vc), {})

describe('joinCounter', () => {
  it('is commutative, associative and idempotent over replica states', () => {
    fc.assert(
      fc.property(viewTripleArb(historyArb(), 'counter'), ({ a, b, c }) => {
        expect(joinViews(a, b)).toEqual(joinViews(b, a))
        expect(joinViews(joinViews(a, b), c)).toEqual(joinViews(a, joinViews(b, c)))
        expect(joinViews(a, a)).toEqual(a)
      }),
      PROPERTY,
    )
  })

  it('counts each increment once: a join of replicas is worth the deltas of the union of their changes', () => {
    fc.assert(
      fc.property(historyArb(), (history) => {
        for (const a of history.replicas) {
          for (const b of history.replicas) {
            const joined = joinViews(joinViews(viewOf(a, 'counter'), viewOf(b, 'counter')), viewOf(a, 'counter'))
            for (const name of COUNTER_NAMES)
              expect(valueIn(joined, name)).toBe(sumOfDeltas(history.changes, vcJoin(a.vc, b.vc), name))
          }
        }
      }),
      PROPERTY,
    )
  })
})

describe('counterValue', () => {
  it('equals the sum of all deltas applied, on every replica', () => {
    fc.assert(
      fc.property(historyArb(), (history) => {
        for (const replica of history.replicas) {
          for (const name of COUNTER_NAMES) {
            expect(counterValue(stateOf(replica, 'counter', name) as CounterState)).toBe(
              sumOfDeltas(history.changes, replica.vc, name),
            )
          }
        }
      }),
      PROPERTY,
    )
  })

  it('equals the sum of all deltas whatever order (and how often) the changes arrive', () => {
    fc.assert(
      fc.property(historyArb(), fc.gen(), (history, g) => {
        const incoming: Change[] = []
        for (const change of history.changes)
          for (let n = g(fc.integer, { min: 1, max: 2 }); n > 0; n--)
            incoming.splice(g(fc.nat, incoming.length), 0, change)
        const replica = newReplica(history.nodes[0] as NodeId)
        expect(receiveInAnyOrder(replica, incoming).held).toEqual([])
        for (const name of COUNTER_NAMES) {
          expect(counterValue(stateOf(replica, 'counter', name) as CounterState)).toBe(
            sumOfDeltas(history.changes, allApplied(history), name),
          )
        }
      }),
      PROPERTY,
    )
  })

  it('keeps increments and decrements per origin, and joins by pointwise maximum', () => {
    let a = applyCounter(COUNTER_EMPTY, { type: 'counter.add', name: 'c', delta: 5 }, { node: A, seq: 1 })
    a = applyCounter(a, { type: 'counter.add', name: 'c', delta: -2 }, { node: A, seq: 2 })
    const b = applyCounter(COUNTER_EMPTY, { type: 'counter.add', name: 'c', delta: 7 }, { node: B, seq: 1 })
    expect(a).toEqual({ p: { [A]: 5 }, n: { [A]: 2 } })
    const joined = joinCounter(a, b)
    expect(joined).toEqual({ p: { [A]: 5, [B]: 7 }, n: { [A]: 2 } })
    expect(counterValue(joined)).toBe(10)
    expect(joinCounter(joined, a)).toEqual(joined)
    expect(Object.keys(joinCounter(b, a).p)).toEqual([A, B])
  })
})

describe('counter overflow', () => {
  const op = (delta: number) => ({ type: 'counter.add', name: 'c', delta }) as const

  it('refuses a delta that would take a part or a total past the exact integers', () => {
    const full = applyCounter(COUNTER_EMPTY, op(Number.MAX_SAFE_INTEGER - 1), { node: A, seq: 1 })
    expect(prepareOp(op(1), full, A)).toEqual(op(1))
    expect(meshErrorCode(() => prepareOp(op(2), full, A))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
    // The total of all origins counts too, not only this origin's part.
    expect(meshErrorCode(() => prepareOp(op(2), full, B))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
    // Decrements have their own part.
    expect(prepareOp(op(-Number.MAX_SAFE_INTEGER), full, A)).toEqual(op(-Number.MAX_SAFE_INTEGER))
    const low = applyCounter(COUNTER_EMPTY, op(-Number.MAX_SAFE_INTEGER), { node: B, seq: 1 })
    expect(meshErrorCode(() => prepareOp(op(-1), low, A))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
  })

  it('refuses deltas that are not safe integers', () => {
    for (const delta of [2 ** 53, -(2 ** 53), 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(meshErrorCode(() => prepareOp(op(delta), COUNTER_EMPTY, A))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
      expect(counterAddIsExact(COUNTER_EMPTY, A, delta)).toBe(false)
    }
  })

  it('agrees with counterAddIsExact for any state and delta', () => {
    const big = fc.oneof(
      fc.integer({ min: -1000, max: 1000 }),
      fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
    )
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.constantFrom(A, B),
            big.filter((d) => d !== 0),
          ),
          { maxLength: 4 },
        ),
        fc.constantFrom(A, B),
        big,
        (history, node, delta) => {
          let state = COUNTER_EMPTY
          const seqs = new Map<NodeId, number>()
          for (const [origin, d] of history) {
            if (!counterAddIsExact(state, origin, d)) continue
            const seq = (seqs.get(origin) ?? 0) + 1
            seqs.set(origin, seq)
            state = applyCounter(state, op(d) as CounterAddOp, { node: origin, seq })
          }
          if (delta === 0) expect(prepareOp(op(delta), state, node)).toBeNull()
          else if (counterAddIsExact(state, node, delta)) {
            const next = applyCounter(state, prepareOp(op(delta), state, node) as CounterAddOp, { node, seq: 99 })
            expect(counterValue(next)).toBe(counterValue(state) + delta)
            for (const part of [next.p, next.n])
              for (const total of Object.values(part)) expect(Number.isSafeInteger(total)).toBe(true)
          } else expect(meshErrorCode(() => prepareOp(op(delta), state, node))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
        },
      ),
      PROPERTY,
    )
  })
})
