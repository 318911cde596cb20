/**
 * A node's data directory put back from an older copy (issue 12, part 1), on real processes with
 * LevelDB on disk: the copy is taken while the node is stopped (SIGTERM), the node then writes
 * with w=all (so its peers hold seqs of it the copy lacks), and the copy is put back.
 * - its peers still log the lost changes: they echo them back, and only then does it write again,
 *   from the next unused seq;
 * - their logs were purged (`--log-retain`): it recovers by snapshot;
 * - every peer is down for longer than the grace (2 × `--peer-timeout-ms`): it writes (a
 *   documented limit), turns `diverged` once its peers are back (409, one error line with the way
 *   out), and the way out (an empty directory in its place, the old id forgotten) works; its writes
 *   while diverged are lost, and the test says exactly that.
 * Each case ends with every acknowledged write on every survivor and equal digests.
 */
import { cp, rename, rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SeqGuardStatus } from '../../src/replication/seq-guard.js'
import type { ClusterNode, HttpAnswer } from './helpers.js'
import { Cluster, buildIfStale, get, put, request, stopAllClusters, waitFor } from './helpers.js'

beforeAll(() => buildIfStale())
afterAll(stopAllClusters)

/** Key → value of every write a node acknowledged. */
type Acked = Map<string, string>

function ok(answer: HttpAnswer): HttpAnswer {
  expect(answer.status, answer.text).toBe(200)
  return answer
}

async function guardOf(node: ClusterNode): Promise<SeqGuardStatus> {
  return (await node.status())['seqGuard'] as SeqGuardStatus
}

async function ownSeq(node: ClusterNode, of: ClusterNode = node): Promise<number> {
  const id = (await of.status()).nodeId
  return (await node.status()).vc[id] ?? 0
}

/** `count` writes through `node` at `w`, recorded in `acked`. */
async function writeThrough(node: ClusterNode, prefix: string, count: number, acked: Acked, w = 'all'): Promise<void> {
  for (let index = 0; index < count; index++) {
    const key = `${prefix}/${node.n}/${index}`
    const value = `${prefix}-${node.n}-${index}`
    ok(await put(node.url, key, value, { w }))
    acked.set(key, value)
  }
}

async function expectEverywhere(nodes: readonly ClusterNode[], acked: Acked): Promise<void> {
  for (const node of nodes) {
    const missing: string[] = []
    for (const [key, value] of acked) if ((await get(node.url, key)).text !== value) missing.push(key)
    expect({ node: node.n, missing }).toEqual({ node: node.n, missing: [] })
  }
}

/** Stops node `n` (SIGTERM) and copies its data directory aside; returns where the copy is. */
async function stopAndCopy(cluster: Cluster, n: number): Promise<string> {
  const node = cluster.node(n)
  expect(await node.kill('SIGTERM')).toMatchObject({ code: 0 })
  const aside = `${node.dir}.copy`
  await cp(node.dir, aside, { recursive: true })
  return aside
}

/** Stops node `n` (SIGTERM) and puts `copy` back as its data directory. */
async function stopAndRestore(cluster: Cluster, n: number, copy: string): Promise<void> {
  const node = cluster.node(n)
  await node.kill('SIGTERM')
  await rm(node.dir, { recursive: true, force: true })
  await cp(copy, node.dir, { recursive: true })
}

/**
 * The common start of every case: writes through every node, then node 3 is copied, restarted,
 * writes `after` more changes with w=all, and is stopped with the copy put back. Returns what was
 * acknowledged and node 3's own seq before it was stopped.
 */
async function rollNodeThreeBack(cluster: Cluster, after: number): Promise<{ acked: Acked; newest: number }> {
  const acked: Acked = new Map()
  for (const node of cluster.nodes) await writeThrough(node, 'before', 3, acked)
  const copy = await stopAndCopy(cluster, 3)
  await cluster.restart(3)
  await writeThrough(cluster.node(3), 'after-copy', after, acked)
  const newest = await ownSeq(cluster.node(3))
  for (const n of [1, 2]) expect(await ownSeq(cluster.node(n), cluster.node(3))).toBe(newest)
  await stopAndRestore(cluster, 3, copy)
  return { acked, newest }
}

/** After recovery: node 3 writes from the next unused seq, and its write reaches both peers. */
async function expectWritesFromNextSeq(cluster: Cluster, newest: number, acked: Acked): Promise<void> {
  const three = cluster.node(3)
  expect(await ownSeq(three)).toBe(newest)
  await writeThrough(three, 'recovered', 1, acked)
  for (const node of cluster.nodes) expect(await ownSeq(node, three)).toBe(newest + 1)
  await cluster.waitConverged([1, 2, 3])
  await expectEverywhere(cluster.nodes, acked)
}

describe('a node restored from an older copy of its directory', () => {
  it('gets its lost changes echoed back by its peers before it writes again, then writes from the next unused seq', async () => {
    // A grace of 2 × 5 s: node 3 is kept from its peers for a moment below, well within it.
    const cluster = await Cluster.start({ size: 3, peerTimeoutMs: 5_000 })
    await cluster.waitLinked()
    const { acked, newest } = await rollNodeThreeBack(cluster, 5)
    const three = cluster.node(3)
    // Kept from its peers for a moment, it is unready and refuses writes.
    cluster.isolate(3)
    await cluster.restart(3, { waitReady: false })
    await waitFor('node 3 to answer', 10_000, async () => ((await guardOf(three).catch(() => null)) ? true : undefined))
    expect((await guardOf(three)).state).toBe('verifying')
    expect((await request(`${three.url}/readyz`)).status).toBe(503)
    const refused = await put(three.url, 'refused', 'x')
    expect({ status: refused.status, code: refused.json?.['code'] }).toEqual({
      status: 503,
      code: 'MESHKV_ERR_RECOVERING',
    })
    expect(await ownSeq(three)).toBeLessThan(newest)
    cluster.heal()
    await three.waitReady()
    const guard = await guardOf(three)
    expect(guard).toMatchObject({ state: 'writable', claimedSeq: newest, reason: null })
    const recovering = three.logs((record) => String(record['msg']).includes('(its data directory is an older copy)'))
    expect(recovering.map((record) => record['state'])).toEqual(['recovering'])
    // Echoed: no snapshot was needed.
    const replication = (await three.status())['replication'] as Record<string, number>
    expect(replication['snapshotsReceived']).toBe(0)
    expect((await get(three.url, 'refused')).status).toBe(404)
    await expectWritesFromNextSeq(cluster, newest, acked)
    await cluster.close()
  }, 120_000)

  it('recovers by snapshot when its peers no longer log the lost changes', async () => {
    const cluster = await Cluster.start({ size: 3, args: ['--log-retain', '5'] })
    await cluster.waitLinked()
    const { acked, newest } = await rollNodeThreeBack(cluster, 30)
    // Node 3's first changes after the copy are purged from both peers' logs.
    for (const n of [1, 2])
      await waitFor(`node ${n} to purge its log`, 20_000, async () => {
        const gc = (await cluster.node(n).status())['gc'] as { logPurged: number }
        return gc.logPurged >= 30 ? true : undefined
      })
    const three = cluster.node(3)
    await cluster.restart(3)
    expect(await guardOf(three)).toMatchObject({ state: 'writable', claimedSeq: newest })
    const recovering = three.logs((record) => String(record['msg']).includes('(its data directory is an older copy)'))
    expect(recovering.map((record) => record['state'])).toEqual(['recovering'])
    const replication = (await three.status())['replication'] as Record<string, number>
    expect(replication['snapshotsReceived']).toBeGreaterThanOrEqual(1)
    await expectWritesFromNextSeq(cluster, newest, acked)
    await cluster.close()
  }, 120_000)
})

describe('a node restored while every peer is down for longer than the grace', () => {
  it('writes, turns diverged when its peers come back, and is replaced by a fresh node; its writes while diverged are lost', async () => {
    const cluster = await Cluster.start({ size: 3 })
    await cluster.waitLinked()
    const { acked, newest } = await rollNodeThreeBack(cluster, 5)
    const [one, two, three] = [cluster.node(1), cluster.node(2), cluster.node(3)]
    for (const node of [one, two]) await node.kill('SIGTERM')
    // Alone past the grace (2 × 2 s), it takes writes: a documented limit.
    await cluster.restart(3)
    const threeId = (await three.status()).nodeId
    const lost: Acked = new Map()
    await writeThrough(three, 'diverged', 2, lost, '1')
    expect(await ownSeq(three)).toBeLessThan(newest)
    await Promise.all([cluster.restart(1), cluster.restart(2)])
    await waitFor('node 3 to turn diverged', 20_000, async () =>
      (await guardOf(three)).state === 'diverged' ? true : undefined,
    )
    expect((await request(`${three.url}/readyz`)).status).toBe(503)
    const refused = await put(three.url, 'refused', 'x')
    expect({ status: refused.status, code: refused.json?.['code'] }).toEqual({
      status: 409,
      code: 'MESHKV_ERR_NODE_ID_CONFLICT',
    })
    const lines = three.logs((record) => record['state'] === 'diverged')
    expect(lines).toHaveLength(1)
    expect(lines[0]?.['level']).toBe(50)
    expect(String(lines[0]?.['msg'])).toContain(`Way out: stop it, move its data directory aside`)
    // The way out: an empty directory in its place (a new node id), the old id forgotten.
    await three.kill('SIGTERM')
    await rename(three.dir, `${three.dir}.diverged`)
    await cluster.restart(3)
    expect((await three.status()).nodeId).not.toBe(threeId)
    ok(await request(`${one.url}/v1/members/${threeId}?force=true`, { method: 'DELETE' }))
    await writeThrough(one, 'after-forget', 1, acked)
    await writeThrough(three, 'fresh', 1, acked)
    await cluster.waitConverged([1, 2, 3])
    await expectEverywhere(cluster.nodes, acked)
    // What the old id wrote while diverged shares dots with its other history: it is nowhere.
    for (const node of cluster.nodes)
      for (const key of lost.keys())
        expect({ node: node.n, key, status: (await get(node.url, key)).status }).toEqual({
          node: node.n,
          key,
          status: 404,
        })
    await cluster.close()
  }, 120_000)
})
