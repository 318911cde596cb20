/**
 * The laws every merge obeys, over valid histories of all three key spaces at once:
 * join is commutative, associative and idempotent; any causal delivery order (with duplicates)
 * gives the same state; a state-based join equals applying the union of the changes; and every
 * replica holds exactly what the types' specifications say for the changes it applied.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { vcJoin } from '../../src/clock/index.js'
import type { Change, Space } from '../../src/crdt/index.js'
import {
  COUNTER_EMPTY,
  DOC_EMPTY,
  REGISTER_EMPTY,
  SET_EMPTY,
  SPACES,
  applyOp,
  emptyState,
  isEmptyState,
  joinState,
  opTarget,
} from '../../src/crdt/index.js'
import type { History } from '../helpers/replicas.js'
import { historyArb, joinViews, newReplica, receiveInAnyOrder, replayUpTo, viewOf } from '../helpers/replicas.js'
import { expectedView } from '../checkers/oracle.js'
import { PROPERTY } from '../helpers/runs.js'
import { viewTripleArb } from '../helpers/views.js'

/** Every change of the history in a random order, some of them two or three times. */
function arrivals(history: History, g: fc.GeneratorValue): Change[] {
  const list: Change[] = []
  for (const change of history.changes) {
    const copies = g(fc.integer, { min: 1, max: 3 })
    for (let i = 0; i < copies; i++) list.push(change)
  }
  for (let i = list.length - 1; i > 0; i--) {
    const j = g(fc.nat, i)
    ;[list[i], list[j]] = [list[j] as Change, list[i] as Change]
  }
  return list
}

function allApplied(history: History) {
  return history.replicas.reduce((vc, replica) => vcJoin(vc, replica.vc), {})
}

describe('joinState over replica states (all spaces)', () => {
  it('is commutative, associative and idempotent, with contexts joined alongside', () => {
    fc.assert(
      fc.property(viewTripleArb(historyArb()), ({ a, b, c }) => {
        expect(joinViews(a, b)).toEqual(joinViews(b, a))
        expect(joinViews(joinViews(a, b), c)).toEqual(joinViews(a, joinViews(b, c)))
        expect(joinViews(a, a)).toEqual(a)
        expect(joinViews(joinViews(a, b), b)).toEqual(joinViews(a, b))
      }),
      PROPERTY,
    )
  })
})

describe('applying changes', () => {
  it('leaves every replica with exactly what the specifications give for the changes it applied', () => {
    fc.assert(
      fc.property(historyArb(), (history) => {
        for (const replica of history.replicas)
          expect(viewOf(replica)).toEqual(expectedView(history.changes, replica.vc))
      }),
      PROPERTY,
    )
  })

  it('gives the same state in any causal order, duplicates dropped', () => {
    fc.assert(
      fc.property(historyArb(), fc.gen(), (history, g) => {
        const all = allApplied(history)
        const reference = viewOf(replayUpTo(history.nodes[0] as NodeId, history.changes, all))
        const replica = newReplica(history.nodes[0] as NodeId)
        const incoming = arrivals(history, g)
        const { held, duplicates } = receiveInAnyOrder(replica, incoming)
        expect(held).toEqual([])
        expect(duplicates).toBe(incoming.length - history.changes.length)
        expect(viewOf(replica)).toEqual(reference)
        expect(reference).toEqual(expectedView(history.changes, all))
      }),
      PROPERTY,
    )
  })

  it('state-based join of two replicas equals a replica that applied the union of their changes', () => {
    fc.assert(
      fc.property(historyArb(), (history) => {
        for (const a of history.replicas) {
          for (const b of history.replicas) {
            const union = replayUpTo(a.node, history.changes, vcJoin(a.vc, b.vc))
            expect(joinViews(viewOf(a), viewOf(b))).toEqual(viewOf(union))
          }
        }
      }),
      PROPERTY,
    )
  })
})

describe('emptyState, isEmptyState, applyOp, joinState', () => {
  it('have an empty state per space that is the identity of join', () => {
    const empties = { kv: REGISTER_EMPTY, counter: COUNTER_EMPTY, set: SET_EMPTY, doc: DOC_EMPTY }
    for (const space of SPACES) {
      expect(emptyState(space)).toBe(empties[space])
      expect(isEmptyState(space, emptyState(space))).toBe(true)
    }
    fc.assert(
      fc.property(historyArb({ maxSteps: 12 }), (history) => {
        for (const replica of history.replicas) {
          for (const [key, state] of replica.states) {
            const space = key.slice(0, key.indexOf('/')) as Space
            expect(joinState(space, state, replica.vc, emptyState(space), {})).toEqual(
              joinState(space, state, replica.vc, state, replica.vc),
            )
          }
        }
      }),
      PROPERTY,
    )
  })

  it('apply is pure: it leaves the state it was given alone', () => {
    fc.assert(
      fc.property(historyArb({ maxSteps: 12 }), (history) => {
        const replica = newReplica(history.nodes[0] as NodeId)
        for (const change of history.changes) {
          const before = viewOf(replica)
          const snapshot = structuredClone(before)
          for (const op of change.ops) {
            const { space, key } = opTarget(op)
            applyOp(replica.states.get(`${space}/${key}`) ?? emptyState(space), op, change.dot, change.hlc, change.deps)
          }
          expect(before).toEqual(snapshot)
        }
      }),
      PROPERTY,
    )
  })
})
