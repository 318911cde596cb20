/**
 * Acks say what they mean (docs/consistency.md, "What is durable when"): a member acknowledges a
 * change only once it is fsynced, so `w=all` counts members that keep the write through a power
 * loss. The simulator's durability checker counts holders in what each disk keeps through a power
 * loss (MemoryDisk's durable view). Here the bug is planted (acks and syncs name the in-memory
 * clock, as before durable acks) to show the checker catches it on some seeds, and the real code
 * passes the same seeds.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { VectorClock } from '../../src/clock/index.js'
import { Store } from '../../src/storage/index.js'
import type { ConfigOverrides, SimResult } from './simulation.js'
import { replayLine, simulate } from './simulation.js'

/** Runs with one node that does not fsync each batch, where acks before fsync can matter. */
const SHAPE: ConfigOverrides = { unsynced: 1, nodes: 3 }
const FROM = 7000
/** Seeds tried with the bug planted, and failing seeds wanted before stopping. */
const TRIES_MAX = 60
const WANTED = 3
/** Seeds the real code runs besides the caught ones. */
const ALSO = 20

const durable = Object.getOwnPropertyDescriptor(Store.prototype, 'durableVc') as PropertyDescriptor

/** The bug: the store claims every change it applied is durable, so acks follow the in-memory clock. */
function plantAckBeforeFsync(): void {
  Object.defineProperty(Store.prototype, 'durableVc', {
    configurable: true,
    get(this: Store): VectorClock {
      return this.vc
    },
  })
}

afterEach(() => {
  Object.defineProperty(Store.prototype, 'durableVc', durable)
})

/** Writes acknowledged at `w=all` while fewer members than all held them on disk. */
function shortAllWrites(result: SimResult): number {
  const all = new Set(
    result.history.flatMap((event) =>
      event.kind === 'invoke' && 'w' in event.op && event.op.w === 'all' ? [event.id] : [],
    ),
  )
  return result.history.filter(
    (event) =>
      event.kind === 'ok' &&
      all.has(event.id) &&
      event.durableHolders !== undefined &&
      event.durableHolders < (event.required ?? Infinity),
  ).length
}

const lostDurability = (result: SimResult): boolean =>
  result.violations.some((violation) => violation.checker === 'durability')

describe('durable acks in the simulator', () => {
  it('acks from the in-memory clock fail the durability checker; durable acks pass the same seeds', async () => {
    plantAckBeforeFsync()
    const caught: SimResult[] = []
    for (let seed = FROM; seed < FROM + TRIES_MAX && caught.length < WANTED; seed++) {
      const result = await simulate(seed, SHAPE)
      if (lostDurability(result)) caught.push(result)
    }
    const seeds = caught.map((result) => result.seed)
    console.log(
      `acks before fsync: caught on seeds ${seeds.join(', ')} of ${FROM}..${FROM + TRIES_MAX - 1} (shape ${JSON.stringify(SHAPE)})`,
    )
    for (const result of caught) {
      const violation = result.violations.find((each) => each.checker === 'durability')
      console.log(
        `  seed ${result.seed}: ${violation?.message.slice(0, 300) ?? ''}\n  replay: ${replayLine(result.seed, SHAPE)}`,
      )
    }
    expect(caught.length, 'the planted bug was caught').toBe(WANTED)
    // Among them, writes acknowledged at w=all that a power loss on the unsynced member would take.
    const short = caught.map(shortAllWrites).reduce((sum, count) => sum + count, 0)
    console.log(`  ${short} writes acknowledged at w=all were not on every member's disk`)
    expect(short).toBeGreaterThan(0)

    Object.defineProperty(Store.prototype, 'durableVc', durable)
    const again = [...seeds, ...Array.from({ length: ALSO }, (_, i) => FROM + TRIES_MAX + i)]
    for (const seed of again) {
      const result = await simulate(seed, SHAPE)
      const shown = result.violations.map((violation) => `[${violation.checker}] ${violation.message.slice(0, 300)}`)
      expect(shown, `seed ${seed} (replay: ${replayLine(seed, SHAPE)})`).toEqual([])
    }
    console.log(`durable acks: seeds ${again.join(', ')} pass`)
  }, 300_000)
})
