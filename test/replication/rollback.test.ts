/**
 * A node whose data directory is put back from an older copy (issue 12, part 1; the seq guard,
 * src/replication/seq-guard.ts): it takes no writes after the start until its peers said how much
 * of it they hold; a peer holding more starts recovery, and the peers send its own changes back
 * (echo from the log, or a snapshot once the log was purged); then it writes on at the next unused
 * seq and every node converges. One that wrote before it heard from them cannot be repaired: its
 * id names two histories, and it refuses writes for good.
 *
 * The real store and replicator over memory disks (test/helpers/replication-sim.ts); the copy is
 * `MemoryDisk.copy()`, what a backup or a VM snapshot of the directory holds.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { vcGet } from '../../src/clock/index.js'
import type { Intent } from '../../src/crdt/index.js'
import type { MemoryDisk } from '../../src/storage/memory-backend.js'
import { MemoryBackend } from '../../src/storage/memory-backend.js'
import { SimCluster, TICK_MS, simNodeId } from '../helpers/replication-sim.js'

const GRACE_MS = 10_000
const IDS: NodeId[] = [0, 1, 2].map(simNodeId)
const R = 2

const put = (key: string, text: string): Intent => ({
  type: 'kv.put',
  key,
  value: new Uint8Array(Buffer.from(text)),
  contentType: 'text/plain',
})

let cluster: SimCluster | null = null

afterEach(async () => {
  await cluster?.close()
  cluster = null
})

/** Three members that know each other (so a restarted node waits for both), all linked. */
async function members(options: { logRetainEntries?: number } = {}): Promise<SimCluster> {
  cluster = await SimCluster.open(3, 7, {
    node: () => ({ replicator: { members: () => IDS, seqGuardGraceMs: GRACE_MS, ...options } }),
  })
  cluster.linkAll()
  await cluster.quiesce()
  return cluster
}

/** Node R's disk now, then `writes` more writes through R that every node applies. */
async function copyThenWrite(sim: SimCluster, writes: number): Promise<MemoryDisk> {
  const copy = sim.node(R).backend.disk.copy()
  for (let index = 0; index < writes; index++) await sim.write(R, [put(`late${index}`, `v${index}`)])
  await sim.quiesce()
  return copy
}

/** R dies and comes back on `disk` (its older copy), not yet linked. */
async function restoreFrom(sim: SimCluster, disk: MemoryDisk): Promise<void> {
  sim.crash(R, 'process')
  sim.node(R).backend = new MemoryBackend(disk)
  await sim.restart(R)
}

async function expectEqualDigests(sim: SimCluster): Promise<void> {
  const digests = await sim.digests()
  expect(digests[1]).toEqual(digests[0])
  expect(digests[2]).toEqual(digests[0])
}

describe('a node restored from an older copy of its directory', () => {
  it('takes no writes until its peers have sent its own changes back, then writes on at the next seq', async () => {
    const sim = await members()
    for (let index = 0; index < 3; index++) await sim.write(R, [put(`early${index}`, 'x')])
    await sim.quiesce()
    const copy = await copyThenWrite(sim, 4)
    const lost = vcGet(sim.node(R).vc, IDS[R] as NodeId)
    await restoreFrom(sim, copy)
    const restored = sim.node(R)
    expect(vcGet(restored.vc, restored.nodeId)).toBe(lost - 4)
    // Just started: it has not heard how much of it the peers hold.
    expect(restored.replicator.seqGuard.status.state).toBe('verifying')
    await expect(sim.write(R, [put('refused', 'x')])).rejects.toMatchObject({ code: 'MESHKV_ERR_RECOVERING' })
    sim.link(R, 0)
    sim.link(R, 1)
    await sim.quiesce()
    expect(restored.replicator.seqGuard.status).toMatchObject({ state: 'writable', claimedSeq: lost })
    expect(vcGet(restored.vc, restored.nodeId)).toBe(lost)
    // The next write takes the next unused seq, and every peer applies it (none drops it as a duplicate).
    const { change } = await sim.write(R, [put('after', 'y')])
    expect(change?.dot.seq).toBe(lost + 1)
    await sim.quiesce()
    for (const node of sim.nodes) expect(vcGet(node.vc, restored.nodeId)).toBe(lost + 1)
    expect(sim.node(0).counters['duplicates']).toBe(0)
    await expectEqualDigests(sim)
  })

  it("gets them back by snapshot once its peers' logs no longer hold them", async () => {
    const sim = await members({ logRetainEntries: 0 })
    const copy = await copyThenWrite(sim, 5)
    const lost = vcGet(sim.node(R).vc, IDS[R] as NodeId)
    // Garbage collection on every node: each holds everything, so the logs are purged.
    for (let round = 0; round < 3; round++) {
      sim.advance(TICK_MS)
      sim.tickAll()
      await sim.scheduler.run()
    }
    for (const node of sim.nodes) await node.replicator.collectGarbage()
    expect(await sim.node(0).store.lsnOfDot({ node: IDS[R] as NodeId, seq: lost })).toBeUndefined()
    await restoreFrom(sim, copy)
    sim.link(R, 0)
    sim.link(R, 1)
    await sim.quiesce()
    const restored = sim.node(R)
    expect(restored.counters['snapshotsReceived']).toBeGreaterThan(0)
    expect(restored.replicator.seqGuard.status.state).toBe('writable')
    expect(vcGet(restored.vc, restored.nodeId)).toBe(lost)
    const { change } = await sim.write(R, [put('after', 'y')])
    expect(change?.dot.seq).toBe(lost + 1)
    await sim.quiesce()
    await expectEqualDigests(sim)
  })

  it('that wrote before it heard from its peers (none answered within the grace) refuses writes for good', async () => {
    const sim = await members()
    const copy = await copyThenWrite(sim, 3)
    const lost = vcGet(sim.node(R).vc, IDS[R] as NodeId)
    await restoreFrom(sim, copy)
    const restored = sim.node(R)
    sim.advance(GRACE_MS)
    restored.replicator.tick()
    expect(restored.replicator.seqGuard.status.state).toBe('writable')
    // The documented limit: alone past the grace, it writes, reusing seqs its peers hold.
    const { change } = await sim.write(R, [put('reused', 'z')])
    expect(change?.dot.seq).toBeLessThanOrEqual(lost)
    sim.link(R, 0)
    sim.link(R, 1)
    await sim.scheduler.run()
    const status = restored.replicator.seqGuard.status
    expect(status).toMatchObject({ state: 'diverged', claimedSeq: lost })
    expect(status.reason).toContain('kvctl forget')
    await expect(sim.write(R, [put('refused', 'x')])).rejects.toMatchObject({ code: 'MESHKV_ERR_NODE_ID_CONFLICT' })
    // Its write never counts as held elsewhere: a peer's claim of that seq names the other history.
    expect(restored.replicator.holders(change?.dot as { node: NodeId; seq: number })).toBe(1)
    // The peers keep their history, and agree.
    const digests = await sim.digests()
    expect(digests[1]).toEqual(digests[0])
  })
})
