import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Dot, Hlc, NodeId } from '../../src/clock/index.js'
import type { KvPutOp, RegisterState, Sibling } from '../../src/crdt/index.js'
import {
  REGISTER_EMPTY,
  applyRegister,
  canonicalRegister,
  compareLww,
  joinRegister,
  lwwSibling,
  prepareOp,
  registerDots,
  registerIsDeleted,
} from '../../src/crdt/index.js'
import { historyArb, joinViews, localWrite, newReplica, syncReplicas, viewOf } from '../helpers/replicas.js'
import { PROPERTY } from '../helpers/runs.js'
import { viewTripleArb } from '../helpers/views.js'

const A = '00000000000000aa' as NodeId
const B = '00000000000000bb' as NodeId
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const put = (key: string, value: string, context?: readonly Dot[]) =>
  ({
    type: 'kv.put',
    key,
    value: bytes(value),
    contentType: 'text/plain',
    ...(context === undefined ? {} : { context }),
  }) as const

/** The last-write-wins order, restated: HLC wall, then logical, then node id, then seq. */
function lwwKey(sibling: Sibling): [number, number, string, number] {
  return [sibling.hlc.wallMs, sibling.hlc.logical, sibling.dot.node, sibling.dot.seq]
}
function newerByLww(x: Sibling, y: Sibling): boolean {
  const a = lwwKey(x)
  const b = lwwKey(y)
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return (a[i] as number | string) > (b[i] as number | string)
  return false
}

describe('joinRegister', () => {
  it('is commutative, associative and idempotent over replica states', () => {
    fc.assert(
      fc.property(viewTripleArb(historyArb(), 'kv'), ({ a, b, c }) => {
        expect(joinViews(a, b)).toEqual(joinViews(b, a))
        expect(joinViews(joinViews(a, b), c)).toEqual(joinViews(a, joinViews(b, c)))
        expect(joinViews(a, a)).toEqual(a)
      }),
      PROPERTY,
    )
  })

  it('keeps a sibling the other side never saw, and drops one it saw and replaced', () => {
    const sa: Sibling = {
      dot: { node: A, seq: 1 },
      hlc: { wallMs: 1, logical: 0 },
      value: bytes('a'),
      contentType: 'text/plain',
    }
    const sb: Sibling = { dot: { node: B, seq: 1 }, hlc: { wallMs: 1, logical: 0 }, value: null, contentType: null }
    const left = canonicalRegister([sa])
    const right = canonicalRegister([sb])
    // B never saw A:1, so both survive.
    expect(joinRegister(left, { [A]: 1 }, right, { [B]: 1 }).siblings).toEqual([sa, sb])
    // B saw A:1 and replaced it with B:1: A:1 is gone.
    expect(joinRegister(left, { [A]: 1 }, right, { [A]: 1, [B]: 1 }).siblings).toEqual([sb])
  })
})

describe('lwwSibling', () => {
  it('is the greatest sibling by (HLC, node id, seq) in every replica state', () => {
    fc.assert(
      fc.property(historyArb(), (history) => {
        for (const replica of history.replicas) {
          for (const [key, state] of Object.entries(viewOf(replica, 'kv').states)) {
            const siblings = (state as RegisterState).siblings
            const expected = siblings.reduce<Sibling | undefined>(
              (best, s) => (best === undefined || newerByLww(s, best) ? s : best),
              undefined,
            )
            expect(lwwSibling(state as RegisterState), key).toBe(expected)
          }
        }
      }),
      PROPERTY,
    )
  })

  it('breaks HLC ties by node id, then seq, whatever the sibling order', () => {
    const hlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: fc.integer({ min: 5, max: 6 }), logical: fc.nat(1) })
    const siblingArb: fc.Arbitrary<Sibling> = fc.record({
      dot: fc.record({ node: fc.constantFrom(A, B), seq: fc.integer({ min: 1, max: 3 }) }),
      hlc: hlcArb,
      value: fc.constantFrom(bytes('v'), null),
      contentType: fc.constant('text/plain'),
    })
    fc.assert(
      fc.property(
        fc.uniqueArray(siblingArb, { selector: (s) => `${s.dot.node}:${s.dot.seq}`, maxLength: 6 }),
        (siblings) => {
          const expected = siblings.reduce<Sibling | undefined>(
            (best, s) => (best === undefined || newerByLww(s, best) ? s : best),
            undefined,
          )
          expect(lwwSibling({ siblings })).toBe(expected)
          expect(lwwSibling({ siblings: [...siblings].reverse() })).toBe(expected)
          for (const x of siblings)
            for (const y of siblings)
              expect(Math.sign(compareLww(x, y))).toBe(newerByLww(x, y) ? 1 : newerByLww(y, x) ? -1 : 0)
        },
      ),
      PROPERTY,
    )
  })

  it('is undefined for an empty register', () => {
    expect(lwwSibling(REGISTER_EMPTY)).toBeUndefined()
    expect(registerIsDeleted(REGISTER_EMPTY)).toBe(true)
  })
})

describe('register writes', () => {
  it('a blind put replaces every sibling the node holds', () => {
    const a = newReplica(A)
    const b = newReplica(B)
    localWrite(a, [put('k', 'from a')])
    localWrite(b, [put('k', 'from b')])
    syncReplicas(b, a)
    expect(registerDots(a.states.get('kv/k') as RegisterState)).toHaveLength(2)
    const change = localWrite(a, [put('k', 'blind')])
    const state = a.states.get('kv/k') as RegisterState
    expect(state.siblings.map((s) => s.dot)).toEqual([change?.dot])
    expect(lwwSibling(state)?.value).toEqual(bytes('blind'))
  })

  it('a put with a context replaces exactly the dots in it and keeps the other siblings', () => {
    const a = newReplica(A)
    const b = newReplica(B)
    const first = localWrite(a, [put('k', 'a1')])
    localWrite(b, [put('k', 'b1')])
    syncReplicas(b, a)
    const second = localWrite(a, [put('k', 'a2', [first?.dot as Dot])])
    const state = a.states.get('kv/k') as RegisterState
    expect(state.siblings.map((s) => s.dot)).toEqual(
      [second?.dot, { node: B, seq: 1 }].sort((x, y) => (x?.node ?? '').localeCompare(y?.node ?? '')),
    )
    expect(state.siblings.map((s) => new TextDecoder().decode(s.value ?? new Uint8Array()))).toEqual(['a2', 'b1'])
  })

  it('a delete leaves a tombstone sibling that wins the read', () => {
    const a = newReplica(A)
    localWrite(a, [put('k', 'v')])
    const del = localWrite(a, [{ type: 'kv.del', key: 'k' }])
    const state = a.states.get('kv/k') as RegisterState
    expect(state.siblings).toEqual([{ dot: del?.dot, hlc: del?.hlc, value: null, contentType: null }])
    expect(registerIsDeleted(state)).toBe(true)
  })

  it('a delete concurrent with a put keeps both as siblings on every replica', () => {
    const a = newReplica(A)
    const b = newReplica(B)
    localWrite(a, [put('k', 'v')])
    syncReplicas(a, b)
    localWrite(a, [put('k', 'newer')])
    localWrite(b, [{ type: 'kv.del', key: 'k' }])
    const joined = joinViews(viewOf(a), viewOf(b))
    syncReplicas(a, b)
    syncReplicas(b, a)
    expect(viewOf(a)).toEqual(viewOf(b))
    expect(viewOf(a)).toEqual(joined)
    const siblings = (joined.states['kv/k'] as RegisterState).siblings
    expect(siblings.map((s) => s.value === null)).toEqual([false, true])
  })

  it('apply is canonical: siblings sorted by dot whatever order writes arrive', () => {
    const hlc = { wallMs: 1, logical: 0 }
    const op = (context: readonly Dot[]): KvPutOp => ({
      type: 'kv.put',
      key: 'k',
      value: bytes('x'),
      contentType: 'c',
      context,
    })
    const one = applyRegister(
      applyRegister(REGISTER_EMPTY, op([]), { node: B, seq: 1 }, hlc),
      op([]),
      { node: A, seq: 1 },
      hlc,
    )
    const two = applyRegister(
      applyRegister(REGISTER_EMPTY, op([]), { node: A, seq: 1 }, hlc),
      op([]),
      { node: B, seq: 1 },
      hlc,
    )
    expect(one).toEqual(two)
    expect(one.siblings.map((s) => s.dot.node)).toEqual([A, B])
  })

  it('prepareOp with the register of one replica and the context of a read there replaces what was read', () => {
    let state: RegisterState = REGISTER_EMPTY
    for (let seq = 1; seq <= 3; seq++) {
      const op = prepareOp(put('k', `v${seq}`, seq === 1 ? undefined : registerDots(state)), state, A)
      expect(op).not.toBeNull()
      state = applyRegister(state, op as KvPutOp, { node: A, seq }, { wallMs: seq, logical: 0 })
    }
    expect(state.siblings.map((s) => s.dot)).toEqual([{ node: A, seq: 3 }])
  })
})
