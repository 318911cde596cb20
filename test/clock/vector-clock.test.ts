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
    fc.assert(
      fc.property(vcArb, vcArb, vcArb, (a, b, c) => {
        const joined = vcJoin(a, b)
        expect(vcCovers(joined, a)).toBe(true)
        expect(vcCovers(joined, b)).toBe(true)
        if (vcCovers(c, a) && vcCovers(c, b)) expect(vcCovers(c, joined)).toBe(true)
        for (const node of POOL) expect(vcGet(joined, node)).toBe(Math.max(vcGet(a, node), vcGet(b, node)))
      }),
      PROPERTY,
    )
  })
})

describe('vcMeet', () => {
  it('is covered by both, is the greatest such clock, and is commutative', () => {
    fc.assert(
      fc.property(vcArb, vcArb, vcArb, (a, b, c) => {
        const meet = vcMeet(a, b)
        expect(vcCovers(a, meet)).toBe(true)
        expect(vcCovers(b, meet)).toBe(true)
        if (vcCovers(a, c) && vcCovers(b, c)) expect(vcCovers(meet, c)).toBe(true)
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
        if (seq === 0) expect(Object.hasOwn(set, node)).toBe(false)
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
