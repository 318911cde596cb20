/**
 * Acks say what they mean (docs/consistency.md, "What is durable when"): a member acknowledges a
 * change only once it is fsynced, so `w=all` counts members that keep the write through a power
 * loss. The simulator's durability checker counts holders in what each disk keeps through a power
 * loss (MemoryDisk's durable view). Here the bug is planted (acks and syncs name the in-memory
 * clock, as before durable acks) to show the checker catches it on some seeds, and the real code
 * passes the same seeds.
 */
import { describe, expect, it } from 'vitest'
import type { VectorClock } from '../../src/clock/index.js'
import { Store } from '../../src/storage/index.js'
import type { SimResult } from './simulation.js'
import { huntPlanted } from './planted.js'

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

describe('durable acks in the simulator', () => {
  it('acks from the in-memory clock fail the durability checker; durable acks pass the same seeds', async () => {
    const caught = await huntPlanted({
      bug: 'acks before fsync',
      // Runs with one node that does not fsync each batch, where acks before fsync can matter.
      shape: { unsynced: 1, nodes: 3 },
      from: 7000,
      triesMax: 60,
      wanted: 3,
      also: 20,
      plant: plantAckBeforeFsync,
      unplant: () => Object.defineProperty(Store.prototype, 'durableVc', durable),
      caught: (result) => result.violations.find((violation) => violation.checker === 'durability')?.message,
    })
    // Among them, writes acknowledged at w=all that a power loss on the unsynced member would take.
    const short = caught.map(shortAllWrites).reduce((sum, count) => sum + count, 0)
    console.log(`  ${short} writes acknowledged at w=all were not on every member's disk`)
    expect(short).toBeGreaterThan(0)
  }, 300_000)
})
