import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { SetRemoveOp, SetState } from '../../src/crdt/index.js'
import { SET_EMPTY, applySet, joinSet, prepareOp, setHas, setMemberDots, setMembers } from '../../src/crdt/index.js'
import type { Replica } from '../helpers/replicas.js'
import {
  MEMBERS,
  SET_NAMES,
  historyArb,
  joinViews,
  localWrite,
  newReplica,
  stateOf,
  syncAll,
  syncReplicas,
  viewOf,
} from '../helpers/replicas.js'
import { PROPERTY } from '../helpers/runs.js'
import { viewTripleArb } from '../helpers/views.js'

const A = '00000000000000aa' as NodeId
const B = '00000000000000bb' as NodeId

const has = (replica: Replica, name: string, member: string): boolean =>
  setHas(stateOf(replica, 'set', name) as SetState, member)
const memberArb = fc.constantFrom(...MEMBERS)
const nameArb = fc.constantFrom(...SET_NAMES)

describe('joinSet', () => {
  it('is commutative, associative and idempotent over replica states', () => {
    fc.assert(
      fc.property(viewTripleArb(historyArb(), 'set'), ({ a, b, c }) => {
        expect(joinViews(a, b)).toEqual(joinViews(b, a))
        expect(joinViews(joinViews(a, b), c)).toEqual(joinViews(a, joinViews(b, c)))
        expect(joinViews(a, a)).toEqual(a)
      }),
      PROPERTY,
    )
  })
})

describe('add wins', () => {
  it('an add concurrent with a remove of the same member leaves it present, after delivery and after join', () => {
    fc.assert(
      fc.property(historyArb(), fc.nat(), fc.nat(), nameArb, memberArb, (history, i, j, name, member) => {
        const adder = history.replicas[i % history.replicas.length] as Replica
        const others = history.replicas.filter((r) => r !== adder)
        const remover = others[j % others.length] as Replica
        // The remover first learns what the adder has, so its remove observes every add of the member there.
        syncReplicas(adder, remover)
        const add = localWrite(adder, [{ type: 'set.add', name, member }])
        const remove = localWrite(remover, [{ type: 'set.remove', name, member }])
        expect(add).not.toBeNull()
        const joined = joinViews(viewOf(adder, 'set'), viewOf(remover, 'set'))
        expect(setHas((joined.states[`set/${name}`] ?? SET_EMPTY) as SetState, member)).toBe(true)
        syncReplicas(adder, remover)
        syncReplicas(remover, adder)
        expect(has(adder, name, member)).toBe(true)
        expect(has(remover, name, member)).toBe(true)
        expect(viewOf(adder, 'set')).toEqual(viewOf(remover, 'set'))
        // The concurrent add's own dot is what survives the remove.
        const dots = setMemberDots(stateOf(adder, 'set', name) as SetState, member)
        expect(dots).toContainEqual(add?.dot)
        if (remove !== null)
          for (const op of remove.ops) expect((op as SetRemoveOp).context).not.toContainEqual(add?.dot)
      }),
      PROPERTY,
    )
  })

  it('a remove that observed every add removes the member everywhere', () => {
    fc.assert(
      fc.property(historyArb(), fc.nat(), nameArb, memberArb, (history, i, name, member) => {
        syncAll(history.replicas)
        const remover = history.replicas[i % history.replicas.length] as Replica
        const remove = localWrite(remover, [{ type: 'set.remove', name, member }])
        expect(remove === null).toBe(!history.replicas.some((r) => has(r, name, member)))
        syncAll(history.replicas)
        for (const replica of history.replicas) {
          expect(has(replica, name, member)).toBe(false)
          expect(viewOf(replica)).toEqual(viewOf(remover))
        }
      }),
      PROPERTY,
    )
  })
})

describe('set operations', () => {
  it('an add of a present member replaces the dots it saw with its own', () => {
    const a = newReplica(A)
    const b = newReplica(B)
    localWrite(a, [{ type: 'set.add', name: 's', member: 'm' }])
    localWrite(b, [{ type: 'set.add', name: 's', member: 'm' }])
    syncReplicas(b, a)
    expect(setMemberDots(stateOf(a, 'set', 's') as SetState, 'm')).toHaveLength(2)
    const again = localWrite(a, [{ type: 'set.add', name: 's', member: 'm' }])
    expect(setMemberDots(stateOf(a, 'set', 's') as SetState, 'm')).toEqual([again?.dot])
  })

  it('a remove drops only the dots it saw', () => {
    const a = applySet(SET_EMPTY, { type: 'set.add', name: 's', member: 'm', context: [] }, { node: A, seq: 1 })
    const ab = applySet(a, { type: 'set.add', name: 's', member: 'm', context: [] }, { node: B, seq: 1 })
    const removed = applySet(
      ab,
      { type: 'set.remove', name: 's', member: 'm', context: [{ node: A, seq: 1 }] },
      { node: A, seq: 2 },
    )
    expect(removed).toEqual({ entries: [{ member: 'm', dots: [{ node: B, seq: 1 }] }] })
    const gone = applySet(
      removed,
      { type: 'set.remove', name: 's', member: 'm', context: [{ node: B, seq: 1 }] },
      { node: A, seq: 3 },
    )
    expect(gone).toEqual(SET_EMPTY)
  })

  it('a remove of an absent member is no op (null)', () => {
    expect(prepareOp({ type: 'set.remove', name: 's', member: 'm' }, SET_EMPTY, A)).toBeNull()
    const withOther = applySet(SET_EMPTY, { type: 'set.add', name: 's', member: 'n', context: [] }, { node: A, seq: 1 })
    expect(prepareOp({ type: 'set.remove', name: 's', member: 'm' }, withOther, A)).toBeNull()
    expect(prepareOp({ type: 'set.remove', name: 's', member: 'n' }, withOther, A)).toEqual({
      type: 'set.remove',
      name: 's',
      member: 'n',
      context: [{ node: A, seq: 1 }],
    })
  })

  it('lists members in code-unit order, whatever order they were added', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ unit: 'grapheme', maxLength: 4 }), { maxLength: 8 }), (members) => {
        let state = SET_EMPTY
        members.forEach((member, i) => {
          state = applySet(state, { type: 'set.add', name: 's', member, context: [] }, { node: A, seq: i + 1 })
        })
        expect(setMembers(state)).toEqual([...members].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)))
        for (const member of members) expect(setHas(state, member)).toBe(true)
        expect(joinSet(state, { [A]: members.length }, SET_EMPTY, {})).toEqual(state)
      }),
      PROPERTY,
    )
  })
})
