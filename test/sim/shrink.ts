/**
 * Shrinking a failing run with fast-check: the seed stays, the shape shrinks — fewer nodes,
 * clients and operations, faults switched off one by one — while the run still fails. The
 * smaller run replays with `npm run sim -- --seed S --config '<overrides>'`.
 */
import fc from 'fast-check'
import type { ConfigOverrides, Faults, SimConfig } from './simulation.js'
import { FAULT_NAMES, simulate } from './simulation.js'

export interface Shrunk {
  overrides: ConfigOverrides
  violations: string[]
  runs: number
}

/** The smallest shape (within `timeLimitMs`) under which `seed` still fails. */
export async function shrinkRun(config: SimConfig, timeLimitMs = 60_000): Promise<Shrunk | null> {
  const faultArbs = Object.fromEntries(
    FAULT_NAMES.map((name) => [name, config.faults[name] ? fc.boolean() : fc.constant(false)]),
  ) as {
    [K in keyof Faults]: fc.Arbitrary<boolean>
  }
  const arbitrary = fc.record({
    nodes: fc.integer({ min: 3, max: config.nodes }),
    clients: fc.integer({ min: 1, max: config.clients }),
    ops: fc.integer({ min: 1, max: config.ops }),
    unsynced: fc.integer({ min: 0, max: config.unsynced }),
    faults: fc.record(faultArbs),
  })
  const start: ConfigOverrides = {
    nodes: config.nodes,
    clients: config.clients,
    ops: config.ops,
    unsynced: config.unsynced,
    faults: { ...config.faults },
  }
  let runs = 0
  let last: string[] = []
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (overrides) => {
      runs++
      const result = await simulate(config.seed, overrides)
      if (result.violations.length === 0) return true
      last = result.violations.map((violation) => `${violation.checker}: ${violation.message}`)
      return false
    }),
    {
      examples: [[start as never]],
      numRuns: 1,
      interruptAfterTimeLimit: timeLimitMs,
      markInterruptAsFailure: false,
      endOnFailure: false,
    },
  )
  if (!details.failed || details.counterexample === null) return null
  const [overrides] = details.counterexample as [ConfigOverrides]
  // Re-run the smallest to report its own violations.
  const result = await simulate(config.seed, overrides)
  last = result.violations.map((violation) => `${violation.checker}: ${violation.message}`)
  return { overrides, violations: last, runs }
}
