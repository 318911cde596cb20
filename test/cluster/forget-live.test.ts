/**
 * Forgetting a member that is alive and writing, on real processes (issue 12, part 2; see
 * docs/architecture.md, "Membership"). Node 3 is cut from node 1, and node 1 from node 2 while
 * node 3 writes (else node 2 relays them at once), so node 2 holds more of node 3's changes than
 * node 1 holds or can know of; node 1 then forgets node 3 with force, and the link 1-2 comes back.
 * Replication between the survivors must not stall on node 3's changes that only node 2 held;
 * every write node 3 acknowledged at w=2 stays; node 3 learns it was forgotten (a 4403, or the
 * forget relayed) and turns read-only and unready, and says why in /v1/status and its log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { HttpAnswer } from './helpers.js'
import { buildIfStale, Cluster, get, put, request, stopAllClusters, waitFor, waitValue } from './helpers.js'

let cluster: Cluster

beforeAll(async () => {
  buildIfStale()
  cluster = await Cluster.start({ size: 3 })
  await cluster.waitLinked()
}, 60_000)

afterAll(async () => {
  await stopAllClusters()
})

function ok(answer: HttpAnswer): HttpAnswer {
  expect(answer.status, answer.text).toBeLessThan(300)
  return answer
}

describe('forgetting a live, writing member', () => {
  it('survivors do not stall, w=2 writes of the member stay, and the member turns read-only', async () => {
    const [one, two, three] = [cluster.node(1), cluster.node(2), cluster.node(3)]
    const threeId = (await three.status()).nodeId
    cluster.cut(1, 3)
    cluster.cut(1, 2)
    await waitFor('node 1 to be alone', 15_000, async () =>
      (await one.status()).linked.length === 0 ? true : undefined,
    )
    await waitFor('node 3 to see node 1 unlinked', 15_000, async () => {
      const linked = (await three.status()).linked
      return linked.length === 1 ? true : undefined
    })
    // Acknowledged at w=2: node 2 holds each. Then w=1 writes, which node 2 takes too while linked.
    const kept: string[] = []
    for (let i = 0; i < 5; i++) {
      ok(await put(three.url, `w2-${i}`, `three-${i}`, { w: '2' }))
      kept.push(`w2-${i}`)
    }
    for (let i = 0; i < 5; i++) ok(await put(three.url, `w1-${i}`, `three-${i}`))
    await waitValue(two.url, 'w1-4', 'three-4')
    const heldByTwo = (await two.status()).vc[threeId] ?? 0
    const heldByOne = (await one.status()).vc[threeId] ?? 0
    expect(heldByTwo, 'node 2 to hold more of node 3 than node 1').toBeGreaterThan(heldByOne)

    const forgotten = await request(`${one.url}/v1/members/${threeId}?force=true`, { method: 'DELETE' })
    expect(forgotten.status, forgotten.text).toBe(200)
    cluster.proxy(1, 2).resume()
    cluster.proxy(2, 1).resume()

    // The survivors keep replicating both ways, and end equal (node 3's changes node 2 held included).
    ok(await put(one.url, 'after-1', 'one'))
    ok(await put(two.url, 'after-2', 'two'))
    await waitValue(two.url, 'after-1', 'one', 15_000)
    await waitValue(one.url, 'after-2', 'two', 15_000)
    const { digest } = await cluster.waitConverged([1, 2], 20_000)
    expect(digest.vc[threeId]).toBeGreaterThanOrEqual(heldByTwo)
    for (const [i, key] of kept.entries()) {
      for (const node of [one, two]) expect((await get(node.url, key)).text).toBe(`three-${i}`)
    }

    // Node 3 learns it from node 2: node 2 refuses its link (4403) once it has the forget.
    const status = await waitFor('node 3 to learn it was forgotten', 20_000, async () => {
      const answer = await three.status()
      return answer['forgotten'] === null ? undefined : answer
    })
    expect(status.ready).toBe(false)
    // By node 2's 4403, or by the forget itself if node 2 relayed it before it closed the link.
    const twoId = (await two.status()).nodeId
    expect(status['forgotten']).toEqual({ by: expect.toBeOneOf([twoId, null]), atMs: expect.any(Number) })
    expect((await request(`${three.url}/readyz`)).status).toBe(503)
    const refused = await put(three.url, 'late', 'never', { w: '1' })
    expect(refused.status, refused.text).toBe(409)
    expect(refused.json?.['code']).toBe('MESHKV_ERR_FORGOTTEN')
    // Reads still answer: its data stays readable.
    expect((await get(three.url, 'w2-0')).text).toBe('three-0')
    const lines = three.logs((record) => String(record['msg']).startsWith('this node was forgotten by the cluster ('))
    expect(lines).toHaveLength(1)
    expect(lines[0]?.['level']).toBe(40)
  }, 90_000)
})
