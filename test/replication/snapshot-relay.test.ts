/**
 * A node that joined a snapshot holds changes its log does not: it must still pass them on to a
 * peer that lacks them, even a peer whose clock no longer moves (so it never syncs again). Found
 * by the simulator (seed 91000881, join + forgetLive): a brand-new node took a snapshot from a
 * member the survivors had lost touch with, and kept the member's last changes to itself for good.
 */
import { describe, expect, it } from 'vitest'
import { vcGet } from '../../src/clock/index.js'
import type { Intent } from '../../src/crdt/index.js'
import type { SimNode } from '../helpers/replication-sim.js'
import { SimCluster, TICK_MS } from '../helpers/replication-sim.js'

const put = (key: string): Intent => ({
  type: 'kv.put',
  key,
  value: new Uint8Array(Buffer.from(key)),
  contentType: 'text/plain',
})

/** Delivers and ticks, a second at a time, for `rounds` rounds. */
async function run(sim: SimCluster, rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    await sim.scheduler.run()
    sim.advance(TICK_MS)
    sim.tickAll()
  }
  await sim.scheduler.run()
}

describe('Replicator: what a joined snapshot brought reaches peers that lack it', () => {
  it('a joiner passes a departed member’s changes, held only from a snapshot, to a survivor that never syncs again', async () => {
    // Node 0: the member that departs; node 1: a survivor; node 2: the brand-new joiner. A long
    // history makes node 0 send the joiner a snapshot rather than its log.
    const sim = await SimCluster.open(3, 91000881, { node: () => ({ replicator: { snapshotAfterChanges: 10 } }) })
    try {
      const [member, survivor, joiner] = sim.nodes as [SimNode, SimNode, SimNode]
      sim.link(0, 1)
      for (let i = 0; i < 5; i++) await sim.write(0, [put(`early${i}`)])
      await run(sim, 3)
      expect(vcGet(survivor.vc, member.nodeId)).toBe(5)

      // The survivor loses touch with the member, which writes on.
      sim.cut(0, 1)
      for (let i = 0; i < 25; i++) await sim.write(0, [put(`late${i}`)])
      // The joiner links to the survivor, and takes its sync (the survivor's changes held back
      // for now), then links to the member, which sends the brand-new node a snapshot.
      const fromSurvivor = sim.link(2, 1).endOf(survivor.nodeId)
      expect(sim.scheduler.deliverFrom(fromSurvivor)).toBe(true)
      fromSurvivor.held = true
      await sim.scheduler.run()
      sim.link(2, 0)
      await run(sim, 3)
      fromSurvivor.held = false
      expect(joiner.counters['snapshotsReceived'], 'the joiner took a snapshot from the member').toBeGreaterThan(0)
      expect(vcGet(joiner.vc, member.nodeId)).toBe(30)

      // The member departs; the survivor and the joiner stay linked, and nothing else is written.
      sim.cut(0, 2)
      await run(sim, 10)
      expect(vcGet(survivor.vc, member.nodeId), 'the survivor got what only the joiner held').toBe(30)
      expect(survivor.vc).toEqual(joiner.vc)
      const digests = await sim.digests()
      expect(digests[1]?.digest).toBe(digests[2]?.digest)
    } finally {
      await sim.close()
    }
  })
})
