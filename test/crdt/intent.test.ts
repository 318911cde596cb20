import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Dot, NodeId } from '../../src/clock/index.js'
import { encodeVersion } from '../../src/clock/index.js'
import type { KvDelOp, KvPutOp, RegisterState } from '../../src/crdt/index.js'
import { COUNTER_EMPTY, REGISTER_EMPTY, applyRegister, prepareOp, registerDots } from '../../src/crdt/index.js'
import { historyArb, localWrite, newReplica, stateOf, syncReplicas } from '../helpers/replicas.js'
import { changeProblems } from '../checkers/oracle.js'
import { PROPERTY, meshErrorCode } from '../helpers/runs.js'

const A = '00000000000000aa' as NodeId
const B = '00000000000000bb' as NodeId
const value = new Uint8Array([1, 2, 3])
const put = (extra: object = {}) =>
  ({ type: 'kv.put', key: 'k', value, contentType: 'application/octet-stream', ...extra }) as const
const del = (extra: object = {}) => ({ type: 'kv.del', key: 'k', ...extra }) as const

/** A register holding a live sibling A:1 and a concurrent tombstone B:1 that wins (higher HLC). */
function liveAndTombstone(): RegisterState {
  const live = applyRegister(
    REGISTER_EMPTY,
    { type: 'kv.put', key: 'k', value, contentType: 'x', context: [] },
    { node: A, seq: 1 },
    { wallMs: 1, logical: 0 },
  )
  return applyRegister(live, { type: 'kv.del', key: 'k', context: [] }, { node: B, seq: 1 }, { wallMs: 2, logical: 0 })
}
function live(): RegisterState {
  return applyRegister(
    REGISTER_EMPTY,
    { type: 'kv.put', key: 'k', value, contentType: 'x', context: [] },
    { node: A, seq: 1 },
    { wallMs: 1, logical: 0 },
  )
}

describe('prepareOp', () => {
  it('makes only sound changes: contexts within the causal past, non-zero deltas, one op per key', () => {
    fc.assert(
      fc.property(historyArb(), (history) => {
        for (const change of history.changes) expect(changeProblems(change), JSON.stringify(change.dot)).toEqual([])
      }),
      PROPERTY,
    )
  })

  it('a blind write names every dot the node holds; a write with a context names what it was given that the node holds', () => {
    const state = liveAndTombstone()
    expect((prepareOp(put(), state, A) as KvPutOp).context).toEqual(registerDots(state))
    expect((prepareOp(put({ context: [{ node: A, seq: 1 }] }), state, A) as KvPutOp).context).toEqual([
      { node: A, seq: 1 },
    ])
    expect((prepareOp(put({ context: [] }), state, A) as KvPutOp).context).toEqual([])
  })

  it('drops context dots the node has not applied, so the write cannot depend on delivery order', () => {
    // A client read B:1 on node B, then writes through node A, which has not seen B:1 yet.
    const a = newReplica(A)
    const b = newReplica(B)
    const fromB = localWrite(b, [put()])
    const op = prepareOp(
      put({ context: [fromB?.dot as Dot, { node: B, seq: 9 }] }),
      stateOf(a, 'kv', 'k') as RegisterState,
      A,
    ) as KvPutOp
    expect(op.context).toEqual([])
    // Once both have everything, B:1 is still a sibling on both sides.
    const fromA = localWrite(a, [put({ context: [fromB?.dot as Dot] })])
    syncReplicas(a, b)
    syncReplicas(b, a)
    expect(registerDots(stateOf(a, 'kv', 'k') as RegisterState)).toEqual(
      registerDots(stateOf(b, 'kv', 'k') as RegisterState),
    )
    expect(registerDots(stateOf(a, 'kv', 'k') as RegisterState)).toEqual([fromA?.dot, fromB?.dot])
  })

  describe('preconditions', () => {
    it('ifNoneMatch fails when the key has a live value, and holds for a missing or deleted key', () => {
      expect(meshErrorCode(() => prepareOp(put({ ifNoneMatch: true }), live(), A))).toBe(
        'MESHKV_ERR_PRECONDITION_FAILED',
      )
      expect(meshErrorCode(() => prepareOp(del({ ifNoneMatch: true }), live(), A))).toBe(
        'MESHKV_ERR_PRECONDITION_FAILED',
      )
      expect(prepareOp(put({ ifNoneMatch: true }), REGISTER_EMPTY, A)).toMatchObject({ type: 'kv.put', context: [] })
      expect(prepareOp(put({ ifNoneMatch: true }), liveAndTombstone(), A)).toMatchObject({ type: 'kv.put' })
    })

    it('ifMatch holds for the current version only, and never for a missing or deleted key', () => {
      const state = live()
      const current = encodeVersion(registerDots(state))
      expect(prepareOp(put({ ifMatch: current }), state, A)).toMatchObject({
        type: 'kv.put',
        context: [{ node: A, seq: 1 }],
      })
      expect(prepareOp(del({ ifMatch: current }), state, A)).toMatchObject({
        type: 'kv.del',
        context: [{ node: A, seq: 1 }],
      })
      for (const stale of [
        encodeVersion([{ node: A, seq: 2 }]),
        encodeVersion([]),
        encodeVersion([
          { node: A, seq: 1 },
          { node: B, seq: 1 },
        ]),
        'nonsense',
      ]) {
        expect(meshErrorCode(() => prepareOp(put({ ifMatch: stale }), state, A))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
        expect(meshErrorCode(() => prepareOp(del({ ifMatch: stale }), state, A))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
      }
      expect(meshErrorCode(() => prepareOp(put({ ifMatch: encodeVersion([]) }), REGISTER_EMPTY, A))).toBe(
        'MESHKV_ERR_PRECONDITION_FAILED',
      )
      const deleted = liveAndTombstone()
      expect(meshErrorCode(() => prepareOp(put({ ifMatch: encodeVersion(registerDots(deleted)) }), deleted, A))).toBe(
        'MESHKV_ERR_PRECONDITION_FAILED',
      )
    })

    it('a failed precondition throws before anything is built, for any state', () => {
      fc.assert(
        fc.property(historyArb({ maxSteps: 15 }), fc.nat(), (history, i) => {
          const replica = history.replicas[i % history.replicas.length]
          if (replica === undefined) return
          const state = stateOf(replica, 'kv', 'a') as RegisterState
          const bogus = encodeVersion([{ node: replica.node, seq: 1_000_000 }])
          expect(meshErrorCode(() => prepareOp(put({ key: 'a', ifMatch: bogus }), state, replica.node))).toBe(
            'MESHKV_ERR_PRECONDITION_FAILED',
          )
        }),
        PROPERTY,
      )
    })
  })

  it('a delete of a key with no live sibling is no op (null); one that still holds an older live sibling clears it; with a context it still writes a tombstone', () => {
    expect(prepareOp(del(), REGISTER_EMPTY, A)).toBeNull()
    expect(
      prepareOp(del(), { siblings: liveAndTombstone().siblings.filter((sibling) => sibling.value === null) }, A),
    ).toBeNull()
    const clearing = prepareOp(del(), liveAndTombstone(), A) as KvDelOp
    expect(clearing.context).toEqual(liveAndTombstone().siblings.map((sibling) => sibling.dot))
    expect(prepareOp(del({ context: [] }), REGISTER_EMPTY, A)).toEqual({ type: 'kv.del', key: 'k', context: [] })
    expect((prepareOp(del(), live(), A) as KvDelOp).context).toEqual([{ node: A, seq: 1 }])
  })

  it('a counter delta of zero is no op (null); an overflow throws MESHKV_ERR_COUNTER_OVERFLOW', () => {
    expect(prepareOp({ type: 'counter.add', name: 'c', delta: 0 }, COUNTER_EMPTY, A)).toBeNull()
    expect(prepareOp({ type: 'counter.add', name: 'c', delta: -3 }, COUNTER_EMPTY, A)).toEqual({
      type: 'counter.add',
      name: 'c',
      delta: -3,
    })
    expect(meshErrorCode(() => prepareOp({ type: 'counter.add', name: 'c', delta: 2 ** 53 }, COUNTER_EMPTY, A))).toBe(
      'MESHKV_ERR_COUNTER_OVERFLOW',
    )
  })
})
