import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import {
  VC_EMPTY,
  isVectorClock,
  vcCompare,
  vcCovers,
  vcDistance,
  vcEquals,
  vcGet,
  vcHasDot,
  vcJoin,
  vcMeet,
  vcNormalize,
  vcSet,
} from '../../src/clock/index.js'
import { PROPERTY } from '../helpers/runs.js'

/** A small pool of nodes and small seqs, so equal, ordered and concurrent clocks all occur. */
const POOL = ['00000000000000a1', '3f00000000000000', 'ffffffffffffffff', '0123456789abcdef'] as NodeId[]
const nodeArb = fc.constantFrom(...POOL)
const vcArb: fc.Arbitrary<VectorClock> = fc
  .array(fc.tuple(nodeArb, fc.oneof(fc.nat(4), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))), { maxLength: 5 })
  .map((entries) => vcNormalize(entries))
/** Seqs small enough that sums over a clock stay exact. */
const smallVcArb: fc.Arbitrary<VectorClock> = fc
  .array(fc.tuple(nodeArb, fc.oneof(fc.nat(4), fc.nat(2 ** 40))), { maxLength: 5 })
  .map((entries) => vcNormalize(entries))

/**
 * A clock covering both `a` and `b`, built entry by entry from vcGet (not from vcJoin): each entry
 * is the larger of theirs plus an extra amount, so the dominating pair exists in every run.
 */
const aboveBothArb = (a: VectorClock, b: VectorClock): fc.Arbitrary<VectorClock> =>
  fc
    .tuple(...POOL.map(() => fc.nat(4)))
    .map((extras) =>
      vcNormalize(
        POOL.map((node, i) => [
          node,
          Math.min(Number.MAX_SAFE_INTEGER, Math.max(vcGet(a, node), vcGet(b, node)) + (extras[i] ?? 0)),
        ]),
      ),
    )

/** A clock both `a` and `b` cover: each entry a random fraction of the smaller of theirs. */
const belowBothArb = (a: VectorClock, b: VectorClock): fc.Arbitrary<VectorClock> =>
  fc
    .tuple(...POOL.map(() => fc.double({ min: 0, max: 1, noNaN: true })))
    .map((fractions) =>
      vcNormalize(
        POOL.map((node, i) => [node, Math.floor((fractions[i] ?? 0) * Math.min(vcGet(a, node), vcGet(b, node)))]),
      ),
    )

function isCanonical(vc: VectorClock): boolean {
  const keys = Object.keys(vc)
  return isVectorClock(vc) && keys.every((key, i) => i === 0 || (keys[i - 1] as string) < key)
}

describe('vcJoin', () => {
  it('is commutative, associative and idempotent, and canonical', () => {
    fc.assert(
      fc.property(vcArb, vcArb, vcArb, (a, b, c) => {
        expect(vcJoin(a, b)).toEqual(vcJoin(b, a))
        expect(vcJoin(vcJoin(a, b), c)).toEqual(vcJoin(a, vcJoin(b, c)))
        expect(vcJoin(a, a)).toEqual(a)
        expect(vcJoin(a, VC_EMPTY)).toEqual(a)
        expect(isCanonical(vcJoin(a, b))).toBe(true)
      }),
      PROPERTY,
    )
  })

  it('is the least clock covering both', () => {
    const triple = fc.tuple(vcArb, vcArb).chain(([a, b]) => aboveBothArb(a, b).map((c) => [a, b, c] as const))
    fc.assert(
      fc.property(triple, ([a, b, c]) => {
        const joined = vcJoin(a, b)
        expect(vcCovers(joined, a)).toBe(true)
        expect(vcCovers(joined, b)).toBe(true)
        // c covers a and b by construction, so it must cover their least upper bound.
        expect(vcCovers(c, joined)).toBe(true)
        for (const node of POOL) expect(vcGet(joined, node)).toBe(Math.max(vcGet(a, node), vcGet(b, node)))
      }),
      PROPERTY,
    )
  })
})

describe('vcMeet', () => {
  it('is covered by both, is the greatest such clock, and is commutative', () => {
    const triple = fc.tuple(vcArb, vcArb).chain(([a, b]) => belowBothArb(a, b).map((c) => [a, b, c] as const))
    fc.assert(
      fc.property(triple, ([a, b, c]) => {
        const meet = vcMeet(a, b)
        expect(vcCovers(a, meet)).toBe(true)
        expect(vcCovers(b, meet)).toBe(true)
        // a and b both cover c by construction, so their greatest lower bound must too.
        expect(vcCovers(meet, c)).toBe(true)
        expect(meet).toEqual(vcMeet(b, a))
        expect(vcMeet(a, a)).toEqual(a)
        expect(isCanonical(meet)).toBe(true)
        for (const node of POOL) expect(vcGet(meet, node)).toBe(Math.min(vcGet(a, node), vcGet(b, node)))
      }),
      PROPERTY,
    )
  })
})

describe('vcCompare', () => {
  it('agrees with vcCovers both ways and mirrors when swapped', () => {
    const mirror = { before: 'after', after: 'before', equal: 'equal', concurrent: 'concurrent' } as const
    fc.assert(
      fc.property(vcArb, vcArb, (a, b) => {
        const ab = vcCovers(a, b)
        const ba = vcCovers(b, a)
        const expected = ab && ba ? 'equal' : ab ? 'after' : ba ? 'before' : 'concurrent'
        expect(vcCompare(a, b)).toBe(expected)
        expect(vcCompare(b, a)).toBe(mirror[expected])
        expect(vcEquals(a, b)).toBe(expected === 'equal')
        // Canonical clocks are equal exactly when they are the same object shape.
        expect(vcEquals(a, b)).toBe(JSON.stringify(a) === JSON.stringify(b))
      }),
      PROPERTY,
    )
  })

  it('covers is pointwise ≤, and a dot is in a clock when its seq is at or below the entry', () => {
    fc.assert(
      fc.property(vcArb, vcArb, nodeArb, fc.integer({ min: 1, max: 6 }), (a, b, node, seq) => {
        expect(vcCovers(a, b)).toBe(POOL.every((n) => vcGet(a, n) >= vcGet(b, n)))
        expect(vcHasDot(a, { node, seq })).toBe(vcGet(a, node) >= seq)
      }),
      PROPERTY,
    )
  })
})

describe('vcDistance', () => {
  it('counts the changes one clock has that the other lacks', () => {
    fc.assert(
      fc.property(smallVcArb, smallVcArb, (a, b) => {
        const expected = POOL.reduce((total, node) => total + Math.max(0, vcGet(a, node) - vcGet(b, node)), 0)
        expect(vcDistance(a, b)).toBe(expected)
        expect(vcDistance(a, b) === 0).toBe(vcCovers(b, a))
      }),
      PROPERTY,
    )
  })
})

describe('vcSet and vcNormalize', () => {
  it('make canonical clocks: sorted keys, no zero entries', () => {
    fc.assert(
      fc.property(vcArb, nodeArb, fc.nat(10), (vc, node, seq) => {
        const set = vcSet(vc, node, seq)
        expect(isCanonical(set)).toBe(true)
        expect(vcGet(set, node)).toBe(seq)
        for (const other of POOL) if (other !== node) expect(vcGet(set, other)).toBe(vcGet(vc, other))
        // Setting an entry to zero removes it (checked every run, not only when seq is 0).
        expect(Object.hasOwn(vcSet(vc, node, 0), node)).toBe(false)
        expect(Object.hasOwn(set, node)).toBe(seq > 0)
      }),
      PROPERTY,
    )
  })
})

describe('isVectorClock', () => {
  it('accepts plain node-id → positive seq records only', () => {
    expect(isVectorClock({})).toBe(true)
    expect(isVectorClock(Object.create(null))).toBe(true)
    expect(isVectorClock({ '00000000000000a1': 3 })).toBe(true)
    const bad: unknown[] = [
      null,
      undefined,
      7,
      'x',
      [],
      new Map(),
      new Date(0),
      { '00000000000000a1': 0 },
      { '00000000000000a1': -1 },
      { '00000000000000a1': 1.5 },
      { '00000000000000a1': '1' },
      { '00000000000000A1': 1 },
      { abc: 1 },
      { __proto_: 1 },
      JSON.parse('{"__proto__": {"00000000000000a1": 1}}'),
    ]
    for (const value of bad) expect(isVectorClock(value), JSON.stringify(value) ?? String(value)).toBe(false)
  })
})
