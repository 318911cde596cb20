/**
 * The chaos fault schedule (faults.ts, `planFaults`) without a cluster: a pure function of the
 * seed, so its promises can be checked over many seeds at once. A minute of faults has room for
 * one restore, big-key join, clone and live forget; no later process fault picks the forgotten
 * member; no partition runs in a clone's or a live forget's quiet window.
 */
import { describe, expect, it } from 'vitest'
import type { Fault } from './faults.js'
import { FORGET_WINDOW_MS, planFaults } from './faults.js'

const SEEDS = 2_000

function processFaults(plan: readonly Fault[]) {
  return plan.flatMap((fault) => (fault.track === 'process' ? [fault] : []))
}

describe('the chaos fault schedule', () => {
  it('a minute plans one restore, join, clone and live forget, the forget last of them', () => {
    for (let seed = 0; seed < SEEDS; seed++) {
      const kinds = processFaults(planFaults(seed, 60_000)).map((fault) => fault.kind)
      expect({ seed, kinds: kinds.slice(0, 6) }).toEqual({
        seed,
        kinds: ['kill', 'stop', 'restore', 'bigKey-join', 'clone', 'forget-live'],
      })
    }
  })

  it('a run too short for them gets kills in their place', () => {
    const kinds = processFaults(planFaults(1, 20_000)).map((fault) => fault.kind)
    expect(kinds).not.toContain('clone')
    expect(kinds).not.toContain('forget-live')
    expect(kinds.length).toBeGreaterThan(2)
  })

  it('no process fault after a live forget picks the forgotten member, the final one included', () => {
    for (const durationMs of [60_000, 600_000])
      for (let seed = 0; seed < SEEDS / 4; seed++) {
        const faults = processFaults(planFaults(seed, durationMs))
        const forget = faults.find((fault) => fault.kind === 'forget-live')
        if (forget === undefined) throw new Error(`seed ${seed}: no live forget in ${durationMs} ms`)
        const later = faults.filter((fault) => fault.startMs > forget.startMs && fault.node === forget.node)
        expect({ seed, durationMs, later }).toEqual({ seed, durationMs, later: [] })
      }
  })

  it('no partition overlaps a clone (its copy to the restart of the original) or a live forget (its window to the stop)', () => {
    for (let seed = 0; seed < SEEDS; seed++) {
      const plan = planFaults(seed, 60_000)
      const windows = processFaults(plan).flatMap((fault) => {
        if (fault.kind === 'clone') return [[fault.startMs, fault.startMs + fault.holdMs + 3_000]]
        if (fault.kind === 'forget-live') return [[fault.startMs - FORGET_WINDOW_MS, fault.startMs + fault.holdMs]]
        return []
      })
      const overlapping = plan.filter(
        (fault) =>
          fault.track === 'network' &&
          windows.some(
            ([from, to]) => fault.startMs < (to as number) && fault.startMs + fault.holdMs > (from as number),
          ),
      )
      expect({ seed, overlapping }).toEqual({ seed, overlapping: [] })
    }
  })
})
