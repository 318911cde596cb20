/**
 * Rollback detection in the simulator (issue 12; src/replication/seq-guard.ts): a node started again
 * on an older copy of its disk (the `restore` fault, operator.ts) must not mint again the seqs its
 * peers hold of it. Here the bug is planted (the guard ignores a peer's claim of more of the node's
 * own changes than it holds: `SeqGuard.onClaim` does nothing), to show the run's checkers catch it
 * on some seeds (acknowledged writes lost: the peers drop the restored node's new changes as
 * duplicates of dots they hold; digests differ after the heal), and the real code passes the same
 * seeds. The catching seeds are printed for the note.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { SeqGuard } from '../../src/replication/seq-guard.js'
import type { ConfigOverrides, SimResult } from './simulation.js'
import { replayLine, simulate } from './simulation.js'

/** Runs with the restore and without the clone, whose conflicts hold writes back for other reasons. */
const SHAPE: ConfigOverrides = { faults: { clone: false } }
const FROM = 1000
/** Seeds tried with the bug planted, and failing seeds wanted before stopping. */
const TRIES_MAX = 300
const WANTED = 3
/** Seeds the real code runs besides the caught ones. */
const ALSO = 5

const onClaim = Object.getOwnPropertyDescriptor(SeqGuard.prototype, 'onClaim') as PropertyDescriptor

/** The bug: a peer's claim of more of this node's own changes than it holds is not heard. */
function plantNoRollbackDetection(): void {
  Object.defineProperty(SeqGuard.prototype, 'onClaim', { configurable: true, writable: true, value: () => {} })
}

afterEach(() => {
  Object.defineProperty(SeqGuard.prototype, 'onClaim', onClaim)
})

/** What the history and state checkers found (not the sim's own internal and liveness checks). */
const checked = (result: SimResult): string[] =>
  result.violations
    .filter((violation) => violation.checker !== 'internal' && violation.checker !== 'liveness')
    .map((violation) => `[${violation.checker}] ${violation.message.slice(0, 300)}`)

describe('rollback detection in the simulator', () => {
  it('a guard deaf to claims of its own changes fails the checkers; the real guard passes the same seeds', async () => {
    plantNoRollbackDetection()
    const caught: SimResult[] = []
    let tried = 0
    for (let seed = FROM; seed < FROM + TRIES_MAX && caught.length < WANTED; seed++) {
      tried++
      const result = await simulate(seed, SHAPE)
      if (checked(result).length > 0) caught.push(result)
    }
    const seeds = caught.map((result) => result.seed)
    console.log(
      `rollback detection off: caught on seeds ${seeds.join(', ')} (${tried} tried from ${FROM}, shape ${JSON.stringify(SHAPE)})`,
    )
    for (const result of caught)
      console.log(
        `  seed ${result.seed} (${result.stats.rolledBack} restore(s) to an older copy): ${checked(result)[0] ?? ''}\n  replay: ${replayLine(result.seed, SHAPE)}`,
      )
    expect(caught.length, 'the planted bug was caught').toBe(WANTED)
    // A planted bug can only show where a restore took own changes away.
    for (const result of caught) expect(result.stats.rolledBack, `seed ${result.seed}`).toBeGreaterThan(0)

    Object.defineProperty(SeqGuard.prototype, 'onClaim', onClaim)
    const again = [...seeds, ...Array.from({ length: ALSO }, (_, i) => FROM + TRIES_MAX + i)]
    let recovered = 0
    for (const seed of again) {
      const result = await simulate(seed, SHAPE)
      const shown = result.violations.map((violation) => `[${violation.checker}] ${violation.message.slice(0, 300)}`)
      expect(shown, `seed ${seed} (replay: ${replayLine(seed, SHAPE)})`).toEqual([])
      recovered += result.stats.recoveries
    }
    console.log(`rollback detection on: seeds ${again.join(', ')} pass (${recovered} restored nodes recovered)`)
    expect(recovered).toBeGreaterThan(0)
  }, 600_000)
})
