/**
 * The forget cut (docs/architecture.md, "Membership"): a forget keeps the member's changes up to
 * the highest seq of it that the forgetter or any surviving peer is known to hold. Here the bug of
 * before issue 12 is planted (the cut from the forgetter's own view) to show the simulator's
 * witness (nemesis-forget.ts: what each node heard its peers say they hold, from the wire) catches
 * it within a few hundred seeds of live forgets, and that the real code passes the same seeds.
 * Outcomes alone would not show it: survivors accept relays of the member's changes past the cut.
 */
import { describe, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { vcGet } from '../../src/clock/index.js'
import { Replicator } from '../../src/replication/replicator.js'
import { huntPlanted } from './planted.js'

const forgetCut = Object.getOwnPropertyDescriptor(Replicator.prototype, 'forgetCut') as PropertyDescriptor

describe('forget cuts in the simulator', () => {
  it('a cut from the forgetter’s own view fails the witness; the real cut passes the same seeds', async () => {
    await huntPlanted({
      bug: 'own-view forget cut',
      // Runs with a live member forgotten at a random moment.
      shape: { faults: { forgetLive: true } },
      from: 1,
      triesMax: 300,
      wanted: 3,
      also: 20,
      // The bug: the cut is what the forgetter itself holds of the member, whatever its peers said.
      plant: () =>
        Object.defineProperty(Replicator.prototype, 'forgetCut', {
          configurable: true,
          writable: true,
          value(this: Replicator, nodeId: NodeId): number {
            return vcGet(this.store.vc, nodeId)
          },
        }),
      unplant: () => Object.defineProperty(Replicator.prototype, 'forgetCut', forgetCut),
      caught: (result) =>
        result.violations.find((violation) => violation.message.startsWith('the forget cut of'))?.message,
    })
  }, 600_000)
})
