/**
 * The forget cut (docs/architecture.md, "Membership"): a forget keeps the member's changes up to
 * the highest seq of it that the forgetter or any surviving peer is known to hold. Here the bug of
 * before issue 12 is planted (the cut from the forgetter's own view) to show the simulator's
 * witness (nemesis-forget.ts: what each node heard its peers say they hold, from the wire) catches
 * it within a few hundred seeds of live forgets, and that the real code passes the same seeds.
 * Outcomes alone would not show it: survivors accept relays of the member's changes past the cut.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { vcGet } from '../../src/clock/index.js'
import { Replicator } from '../../src/replication/replicator.js'
import type { ConfigOverrides, SimResult } from './simulation.js'
import { replayLine, simulate } from './simulation.js'

/** Runs with a live member forgotten at a random moment. */
const SHAPE: ConfigOverrides = { faults: { forgetLive: true } }
const FROM = 1
/** Seeds tried with the bug planted, and failing seeds wanted before stopping. */
const TRIES_MAX = 300
const WANTED = 3
/** Seeds the real code runs besides the caught ones. */
const ALSO = 20

const forgetCut = Object.getOwnPropertyDescriptor(Replicator.prototype, 'forgetCut') as PropertyDescriptor

/** The bug: the cut is what the forgetter itself holds of the member, whatever its peers said. */
function plantOwnViewCut(): void {
  Object.defineProperty(Replicator.prototype, 'forgetCut', {
    configurable: true,
    writable: true,
    value(this: Replicator, nodeId: NodeId): number {
      return vcGet(this.store.vc, nodeId)
    },
  })
}

afterEach(() => {
  Object.defineProperty(Replicator.prototype, 'forgetCut', forgetCut)
})

const badCut = (result: SimResult): string | undefined =>
  result.violations.find((violation) => violation.message.startsWith('the forget cut of'))?.message

describe('forget cuts in the simulator', () => {
  it('a cut from the forgetter’s own view fails the witness; the real cut passes the same seeds', async () => {
    plantOwnViewCut()
    const caught: SimResult[] = []
    let tried = 0
    for (let seed = FROM; seed < FROM + TRIES_MAX && caught.length < WANTED; seed++) {
      const result = await simulate(seed, SHAPE)
      tried++
      if (badCut(result) !== undefined) caught.push(result)
    }
    const seeds = caught.map((result) => result.seed)
    console.log(
      `own-view forget cut: caught on seeds ${seeds.join(', ')} within ${tried} seeds from ${FROM} (shape ${JSON.stringify(SHAPE)})`,
    )
    for (const result of caught)
      console.log(`  seed ${result.seed}: ${badCut(result)}\n  replay (real code): ${replayLine(result.seed, SHAPE)}`)
    expect(caught.length, 'the planted bug was caught').toBe(WANTED)

    Object.defineProperty(Replicator.prototype, 'forgetCut', forgetCut)
    const again = [...seeds, ...Array.from({ length: ALSO }, (_, i) => FROM + tried + i)]
    for (const seed of again) {
      const result = await simulate(seed, SHAPE)
      const shown = result.violations.map((violation) => `[${violation.checker}] ${violation.message.slice(0, 300)}`)
      expect(shown, `seed ${seed} (replay: ${replayLine(seed, SHAPE)})`).toEqual([])
    }
    console.log(`real forget cut: seeds ${again.join(', ')} pass`)
  }, 600_000)
})
