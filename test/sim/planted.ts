/**
 * The harness of the simulator's planted-bug tests (docs/testing.md, "Checking the checkers"):
 * seeds run with the bug planted until its checker has caught it on a few, then the same seeds and
 * some more run on the real code, which must pass them all. Prints the seeds with replay lines.
 */
import { expect } from 'vitest'
import type { ConfigOverrides, SimResult } from './simulation.js'
import { replayLine, simulate } from './simulation.js'

export interface PlantedHunt {
  /** The bug, as the log lines name it. */
  bug: string
  /** The shape of the runs (overrides), e.g. runs with a live forget. */
  shape: ConfigOverrides
  from: number
  /** Seeds tried with the bug planted, and caught seeds wanted before stopping. */
  triesMax: number
  wanted: number
  /** Seeds the real code runs besides the caught ones. */
  also: number
  plant: () => void
  unplant: () => void
  /** What the checker said of the bug in a run, or undefined. */
  caught: (result: SimResult) => string | undefined
}

/** Runs the hunt (see the header); the runs that caught the bug. */
export async function huntPlanted(hunt: PlantedHunt): Promise<SimResult[]> {
  const caught: SimResult[] = []
  let tried = 0
  hunt.plant()
  try {
    for (let seed = hunt.from; tried < hunt.triesMax && caught.length < hunt.wanted; seed++) {
      const result = await simulate(seed, hunt.shape)
      tried++
      if (hunt.caught(result) !== undefined) caught.push(result)
    }
  } finally {
    hunt.unplant()
  }
  const seeds = caught.map((result) => result.seed)
  console.log(
    `${hunt.bug}: caught on seeds ${seeds.join(', ')} within ${tried} seeds from ${hunt.from} (shape ${JSON.stringify(hunt.shape)})`,
  )
  for (const result of caught) {
    const said = hunt.caught(result)?.slice(0, 300) ?? ''
    console.log(`  seed ${result.seed}: ${said}\n  replay (real code): ${replayLine(result.seed, hunt.shape)}`)
  }
  expect(caught.length, 'the planted bug was caught').toBe(hunt.wanted)

  const again = [...seeds, ...Array.from({ length: hunt.also }, (_, i) => hunt.from + tried + i)]
  for (const seed of again) {
    const result = await simulate(seed, hunt.shape)
    const shown = result.violations.map((violation) => `[${violation.checker}] ${violation.message.slice(0, 300)}`)
    expect(shown, `seed ${seed} (replay: ${replayLine(seed, hunt.shape)})`).toEqual([])
  }
  console.log(`real code: seeds ${again.join(', ')} pass`)
  return caught
}
