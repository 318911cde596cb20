import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Hlc } from '../../src/clock/index.js'
import {
  HLC_ZERO,
  MAX_OFFSET_MS_DEFAULT,
  compareHlc,
  hlcObserve,
  hlcTick,
  isHlc,
  maxHlc,
} from '../../src/clock/index.js'
import { isMeshError } from '../../src/errors.js'
import { PROPERTY, meshErrorCode, thrown } from '../helpers/runs.js'

const wallArb = fc.integer({ min: 0, max: 2 ** 45 })
const hlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: wallArb, logical: fc.integer({ min: 0, max: 2 ** 20 }) })
/** Clocks close together, so equal walls (and logical counters) are common. */
const nearHlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: fc.integer({ min: 990, max: 1010 }), logical: fc.nat(3) })

describe('compareHlc', () => {
  it('is a total order consistent with (wallMs, logical)', () => {
    fc.assert(
      fc.property(nearHlcArb, nearHlcArb, nearHlcArb, (a, b, c) => {
        expect(Math.sign(compareHlc(a, b)) + Math.sign(compareHlc(b, a))).toBe(0)
        expect(compareHlc(a, b) === 0).toBe(a.wallMs === b.wallMs && a.logical === b.logical)
        if (compareHlc(a, b) <= 0 && compareHlc(b, c) <= 0) expect(compareHlc(a, c)).toBeLessThanOrEqual(0)
        const expected = a.wallMs !== b.wallMs ? Math.sign(a.wallMs - b.wallMs) : Math.sign(a.logical - b.logical)
        expect(Math.sign(compareHlc(a, b))).toBe(expected)
        expect(maxHlc(a, b)).toEqual(compareHlc(a, b) >= 0 ? a : b)
      }),
      PROPERTY,
    )
  })
})

describe('hlcTick', () => {
  it('is strictly after the last clock and at least the wall clock, whatever the wall clock reads', () => {
    fc.assert(
      fc.property(hlcArb, fc.oneof(wallArb, fc.integer({ min: -1000, max: 0 })), (last, nowMs) => {
        const next = hlcTick(last, nowMs)
        expect(compareHlc(next, last)).toBeGreaterThan(0)
        expect(next.wallMs).toBeGreaterThanOrEqual(Math.max(last.wallMs, nowMs))
        expect(isHlc(next)).toBe(true)
      }),
      PROPERTY,
    )
  })

  it('increases strictly over a wall clock that jumps forwards, stalls and goes backwards', () => {
    fc.assert(
      fc.property(
        fc.nat(10_000),
        fc.array(fc.integer({ min: -5_000, max: 5_000 }), { minLength: 1, maxLength: 60 }),
        (start, moves) => {
          let nowMs = start
          let last = HLC_ZERO
          let highestWall = 0
          for (const move of moves) {
            nowMs = Math.max(0, nowMs + move)
            highestWall = Math.max(highestWall, nowMs)
            const next = hlcTick(last, nowMs)
            expect(compareHlc(next, last)).toBeGreaterThan(0)
            // It follows the highest wall clock read, never falls back to a lower one.
            expect(next.wallMs).toBe(highestWall)
            last = next
          }
        },
      ),
      PROPERTY,
    )
  })
})

describe('hlcObserve', () => {
  it('never decreases, follows the remote clock, and refuses one too far ahead', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, wallArb, fc.integer({ min: 0, max: 120_000 }), (last, remote, nowMs, maxOffsetMs) => {
        if (remote.wallMs - nowMs > maxOffsetMs) {
          expect(meshErrorCode(() => hlcObserve(last, remote, nowMs, maxOffsetMs))).toBe('MESHKV_ERR_CLOCK_SKEW')
        } else {
          expect(thrown(() => hlcObserve(last, remote, nowMs, maxOffsetMs))).toBeUndefined()
          const next = hlcObserve(last, remote, nowMs, maxOffsetMs)
          expect(compareHlc(next, last)).toBeGreaterThanOrEqual(0)
          expect(compareHlc(next, remote)).toBeGreaterThanOrEqual(0)
          expect(next).toEqual(maxHlc(last, remote))
        }
      }),
      PROPERTY,
    )
  })

  it('accepts a remote clock exactly maxOffsetMs ahead and refuses one a millisecond more', () => {
    const nowMs = 1_700_000_000_000
    const at = { wallMs: nowMs + MAX_OFFSET_MS_DEFAULT, logical: 5 }
    expect(hlcObserve(HLC_ZERO, at, nowMs)).toEqual(at)
    expect(meshErrorCode(() => hlcObserve(HLC_ZERO, { wallMs: at.wallMs + 1, logical: 0 }, nowMs))).toBe(
      'MESHKV_ERR_CLOCK_SKEW',
    )
    expect(meshErrorCode(() => hlcObserve(HLC_ZERO, { wallMs: nowMs + 11, logical: 0 }, nowMs, 10))).toBe(
      'MESHKV_ERR_CLOCK_SKEW',
    )
  })
})

type ClockAction =
  | { readonly kind: 'move'; readonly deltaMs: number }
  | { readonly kind: 'tick' }
  | { readonly kind: 'observe'; readonly aheadMs: number; readonly logical: number }

const clockActionArb: fc.Arbitrary<ClockAction> = fc.oneof(
  fc.record({ kind: fc.constant('move' as const), deltaMs: fc.integer({ min: -100_000, max: 100_000 }) }),
  fc.record({ kind: fc.constant('tick' as const) }),
  fc.record({
    kind: fc.constant('observe' as const),
    aheadMs: fc.oneof(
      fc.integer({ min: -100_000, max: 100_000 }),
      fc.constantFrom(-1, 0, 1).map((d) => MAX_OFFSET_MS_DEFAULT + d),
    ),
    logical: fc.nat(5),
  }),
)

/**
 * The node keeps its clock as a value folded through `hlcTick` and `hlcObserve` (a refused remote
 * clock throws and leaves the value as it was); these cases drive that fold.
 */
function observeOrKeep(last: Hlc, remote: Hlc, nowMs: number, maxOffsetMs = MAX_OFFSET_MS_DEFAULT): Hlc {
  try {
    return hlcObserve(last, remote, nowMs, maxOffsetMs)
  } catch (error) {
    if (isMeshError(error, 'MESHKV_ERR_CLOCK_SKEW')) return last
    throw error
  }
}

describe('a clock folded through hlcTick and hlcObserve', () => {
  it('ticks strictly upwards, never goes back, and stays as it was when it refuses a clock', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 42 }),
        fc.array(clockActionArb, { maxLength: 60 }),
        (start, actions) => {
          let nowMs = start
          let last: Hlc = HLC_ZERO
          for (const action of actions) {
            const before = last
            if (action.kind === 'move') {
              nowMs = Math.max(0, nowMs + action.deltaMs)
            } else if (action.kind === 'tick') {
              last = hlcTick(last, nowMs)
              expect(compareHlc(last, before)).toBeGreaterThan(0)
              expect(last.wallMs).toBeGreaterThanOrEqual(nowMs)
            } else {
              const remote = { wallMs: Math.max(0, nowMs + action.aheadMs), logical: action.logical }
              if (remote.wallMs - nowMs > MAX_OFFSET_MS_DEFAULT) {
                expect(meshErrorCode(() => hlcObserve(last, remote, nowMs))).toBe('MESHKV_ERR_CLOCK_SKEW')
                last = observeOrKeep(last, remote, nowMs)
                expect(last).toEqual(before)
              } else {
                expect(thrown(() => hlcObserve(last, remote, nowMs))).toBeUndefined()
                last = observeOrKeep(last, remote, nowMs)
                expect(last).toEqual(maxHlc(before, remote))
              }
            }
            expect(compareHlc(last, before)).toBeGreaterThanOrEqual(0)
          }
        },
      ),
      PROPERTY,
    )
  })

  it('refuses a clock stamped years ahead, keeps its own clock, and keeps ticking', () => {
    let nowMs = 1_700_000_000_000
    const first = hlcTick(HLC_ZERO, nowMs)
    const yearsAhead = { wallMs: nowMs + 3 * 365 * 24 * 3600 * 1000, logical: 0 }
    expect(meshErrorCode(() => hlcObserve(first, yearsAhead, nowMs, 1_000))).toBe('MESHKV_ERR_CLOCK_SKEW')
    const last = observeOrKeep(first, yearsAhead, nowMs, 1_000)
    expect(last).toEqual(first)
    nowMs += 5
    expect(hlcTick(last, nowMs)).toEqual({ wallMs: nowMs, logical: 0 })
  })

  it('follows a remote clock within the offset, so its next tick orders after it', () => {
    const nowMs = 10_000
    const last = hlcObserve({ wallMs: 9_000, logical: 3 }, { wallMs: 10_500, logical: 7 }, nowMs)
    expect(last).toEqual({ wallMs: 10_500, logical: 7 })
    expect(hlcTick(last, nowMs)).toEqual({ wallMs: 10_500, logical: 8 })
  })
})

describe('isHlc', () => {
  it('accepts only non-negative safe integer pairs', () => {
    expect(isHlc({ wallMs: 0, logical: 0 })).toBe(true)
    for (const bad of [
      null,
      5,
      'x',
      [],
      {},
      { wallMs: -1, logical: 0 },
      { wallMs: 1.5, logical: 0 },
      { wallMs: 1, logical: Number.NaN },
      { wallMs: 2 ** 53, logical: 0 },
      { wallMs: '1', logical: 0 },
    ]) {
      expect(isHlc(bad)).toBe(false)
    }
  })
})
