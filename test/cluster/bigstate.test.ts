/**
 * No state is too big to move (issue 12, part 3), on real processes:
 * - the scenario that was seen: 1 MB writes that each replace only the first version leave one
 *   register of several MB; a brand-new node that joins by snapshot (the logs were purged) takes
 *   it in parts, becomes ready, and its digest equals the others';
 * - a write past the per-key limit answers 409 MESHKV_ERR_STATE_TOO_LARGE and the node keeps serving;
 * - writes on both sides of a partition that merge past the write-time limits (bytes and
 *   siblings) still replicate, other keys keep replicating, and the digests end equal.
 * The snapshot's size and time are printed.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { ClusterNode } from './helpers.js'
import { Cluster, buildIfStale, get, put, request, stopAllClusters } from './helpers.js'

const MB = 1_000_000

/** A 1 MB text value that differs per `tag`. */
function megabyte(tag: string): string {
  return tag.padEnd(MB, '.')
}

function siblingsOf(answer: { headers: Headers }): number {
  return Number(answer.headers.get('x-siblings') ?? '1')
}

/** Writes `count` values of `key` on `node`, each replacing only `context` (a version already replaced). */
async function grow(node: string, key: string, context: string, count: number, tag: string): Promise<void> {
  for (let index = 0; index < count; index++) {
    const answer = await put(node, key, megabyte(`${tag}${index}`), {}, { 'x-context': context })
    expect(answer.status, answer.text).toBe(200)
  }
}

/** Like `grow`, with small values: siblings without bytes. */
async function growSmall(node: string, key: string, context: string, count: number, tag: string): Promise<void> {
  for (let index = 0; index < count; index++) {
    const answer = await put(node, key, `${tag}${index}`, {}, { 'x-context': context })
    expect(answer.status, answer.text).toBe(200)
  }
}

async function etagOf(node: string, key: string, value: string): Promise<string> {
  const answer = await put(node, key, value)
  expect(answer.status, answer.text).toBe(200)
  return answer.headers.get('etag') as string
}

async function logPurged(node: ClusterNode): Promise<number> {
  return ((await node.status())['gc'] as { logPurged: number }).logPurged
}

let cluster: Cluster

beforeAll(async () => {
  buildIfStale()
  cluster = await Cluster.start({ size: 2 })
  await cluster.waitLinked()
}, 60_000)
afterAll(stopAllClusters)

describe('a register of several MB', () => {
  it('a write past the per-key limit answers 409 MESHKV_ERR_STATE_TOO_LARGE; the node keeps serving', async () => {
    const n1 = cluster.node(1).url
    const first = await etagOf(n1, 'big', megabyte('first'))
    // 1 MB writes that each name only the first version: the first replaces it, the rest add siblings.
    await grow(n1, 'big', first, 8, 'sibling')
    expect(siblingsOf(await get(n1, 'big'))).toBe(8)
    const refused = await put(n1, 'big', megabyte('ninth'), {}, { 'x-context': first })
    expect({ status: refused.status, code: refused.json?.['code'] }).toEqual({
      status: 409,
      code: 'MESHKV_ERR_STATE_TOO_LARGE',
    })
    expect(siblingsOf(await get(n1, 'big'))).toBe(8)
    expect((await put(n1, 'after-refusal', 'served')).status).toBe(200)
    await cluster.waitConverged([1, 2])
    expect(siblingsOf(await get(cluster.node(2).url, 'big'))).toBe(8)
  }, 60_000)

  it('a brand-new node joins by snapshot, takes the 8 MB state in parts, becomes ready, and its digest matches', async () => {
    const n1 = cluster.node(1).url
    // Push the big writes out of both logs (all but the last 1000 entries are purged once both hold them).
    for (let index = 0; index < 1100; index++) expect((await put(n1, `fill/${index}`, 'x')).status).toBe(200)
    await cluster.waitConverged([1, 2])
    await vi.waitFor(
      async () => {
        for (const node of cluster.live()) expect(await logPurged(node), `node ${node.n} logPurged`).toBeGreaterThan(20)
      },
      { timeout: 30_000, interval: 200 },
    )
    const started = Date.now()
    const third = await cluster.addNode({ peers: [cluster.node(1).entry.url] })
    const { digest } = await cluster.waitConverged([1, 2, 3], 60_000)
    const status = await third.status()
    expect((status['replication'] as Record<string, number>)['snapshotsReceived']).toBeGreaterThanOrEqual(1)
    const last = (status['snapshot'] as { last: { keys: number; ms: number } | null }).last
    console.log(
      `big-state snapshot: ${last?.keys} keys (one of 8 MB) in ${last?.ms} ms; ready and converged in ${Date.now() - started} ms (digest ${digest.digest.slice(0, 12)})`,
    )
    const big = await get(third.url, 'big')
    expect(big.status).toBe(200)
    expect(siblingsOf(big)).toBe(8)
    // No link was failed and redialed on the way (the 1011 loop the issue saw).
    const failed = third.logs((record) => record['msg'] === 'replication to peer failed; closing the link')
    const failedOn1 = cluster.node(1).logs((record) => record['msg'] === 'replication to peer failed; closing the link')
    expect([...failed, ...failedOn1]).toEqual([])
  }, 120_000)
})

describe('a partition that merges past the write-time limits', () => {
  it('both sides grow one key to just under the limit; after healing it holds both, other keys replicate, digests equal', async () => {
    const [n1, n2, n3] = cluster.urls(1, 2, 3) as [string, string, string]
    const bytesBase = await etagOf(n1, 'split-bytes', 'base')
    const siblingsBase = await etagOf(n1, 'split-siblings', 'base')
    await cluster.waitConverged([1, 2, 3])
    // Node 3 (whose links have no proxies of their own) is down meanwhile; it catches up by log afterwards.
    await cluster.node(3).kill('SIGKILL')
    cluster.cut(1, 2)
    // Each side: 6 MB (under 8 MiB) and 20 siblings (under 32). Merged: 12 MB and 40 siblings.
    await Promise.all([
      grow(n1, 'split-bytes', bytesBase, 6, 'one'),
      grow(n2, 'split-bytes', bytesBase, 6, 'two'),
      growSmall(n1, 'split-siblings', siblingsBase, 20, 'one'),
      growSmall(n2, 'split-siblings', siblingsBase, 20, 'two'),
    ])
    cluster.heal()
    await cluster.waitConverged([1, 2], 60_000)
    await cluster.restart(3)
    // Other keys written after the merge, on any node, still reach everyone.
    expect((await put(n1, 'later/1', 'from node 1')).status).toBe(200)
    expect((await put(n3, 'later/3', 'from node 3')).status).toBe(200)
    await cluster.waitConverged([1, 2, 3], 60_000)
    for (const url of [n1, n2, n3]) {
      expect(siblingsOf(await get(url, 'split-bytes'))).toBe(12)
      expect(siblingsOf(await get(url, 'split-siblings'))).toBe(40)
      expect((await get(url, 'later/1')).text).toBe('from node 1')
      expect((await get(url, 'later/3')).text).toBe('from node 3')
    }
    // Growing a key past its limit is refused; a write that replaces all its siblings brings it back.
    const grown = await put(n2, 'split-siblings', 'one more', {}, { 'x-context': siblingsBase })
    expect(grown.json?.['code']).toBe('MESHKV_ERR_STATE_TOO_LARGE')
    expect((await put(n2, 'split-bytes', 'small again')).status).toBe(200)
    await cluster.waitConverged([1, 2, 3])
    expect(siblingsOf(await get(n3, 'split-bytes'))).toBe(1)
    // Nobody's replication stopped on the way.
    for (const node of cluster.live()) {
      const status = await node.status()
      expect(status.ready).toBe(true)
    }
    expect((await request(`${n1}/readyz`)).status).toBe(200)
  }, 120_000)
})
