/**
 * Forgetting a member that is still alive, on real processes: `DELETE /v1/members/:nodeId`
 * refuses a member linked to the node or heard from within FORGET_ALIVE_PEER_TIMEOUTS peer
 * timeouts (409 MESHKV_ERR_MEMBER_ALIVE, and nothing is written), `?force=true` forgets it anyway,
 * and a member that stopped is forgotten without force once that window has passed. The window
 * follows `--peer-timeout-ms` (1000 here, so 3 s).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { FORGET_ALIVE_PEER_TIMEOUTS } from '../../src/node/cluster.js'
import type { ClusterNode, HttpAnswer } from './helpers.js'
import { buildIfStale, Cluster, killAllKvctl, request, sleep, stopAllClusters } from './helpers.js'

const PEER_TIMEOUT_MS = 1000
const ALIVE_WINDOW_MS = FORGET_ALIVE_PEER_TIMEOUTS * PEER_TIMEOUT_MS

let cluster: Cluster

beforeAll(async () => {
  buildIfStale()
  cluster = await Cluster.start({ size: 3, peerTimeoutMs: PEER_TIMEOUT_MS })
  await cluster.waitLinked()
}, 60_000)

afterAll(async () => {
  await killAllKvctl()
  await stopAllClusters()
})

function forget(on: ClusterNode, nodeId: string, query = ''): Promise<HttpAnswer> {
  return request(`${on.url}/v1/members/${nodeId}${query}`, { method: 'DELETE' })
}

async function memberIds(on: ClusterNode): Promise<string[]> {
  const answer = await request(`${on.url}/v1/members`)
  return ((answer.json?.['members'] ?? []) as { nodeId: string }[]).map((member) => member.nodeId)
}

/** The node's own seq: a forget is a write of the node's own, so it moves exactly when one is written. */
async function ownSeq(on: ClusterNode): Promise<number> {
  const status = await on.status()
  return status.vc[status.nodeId] ?? 0
}

/** The answer must be 409 MEMBER_ALIVE; its details. */
function aliveDetails(answer: HttpAnswer): Record<string, unknown> {
  expect(answer.status, answer.text).toBe(409)
  expect(answer.json?.['code']).toBe('MESHKV_ERR_MEMBER_ALIVE')
  return answer.json?.['details'] as Record<string, unknown>
}

describe('forgetting a member that is alive', () => {
  it('a linked member is refused with 409 MEMBER_ALIVE and nothing is written; ?force=true forgets it', async () => {
    const [one, , three] = [cluster.node(1), cluster.node(2), cluster.node(3)]
    const threeId = (await three.status()).nodeId
    const seqBefore = await ownSeq(one)
    for (const query of ['', '?force=false', '?force=0']) {
      const details = aliveDetails(await forget(one, threeId, query))
      expect(details).toMatchObject({ nodeId: threeId, linked: true, aliveWindowMs: ALIVE_WINDOW_MS })
    }
    expect(await ownSeq(one)).toBe(seqBefore)
    expect(await memberIds(one)).toContain(threeId)

    const forced = await forget(one, threeId, '?force=true')
    expect(forced.status, forced.text).toBe(200)
    expect(forced.json?.['forgotten']).toBe(threeId)
    expect(await ownSeq(one)).toBe(seqBefore + 1)
    expect(await memberIds(one)).not.toContain(threeId)
    // Forgotten once, it may be forgotten again without force: nothing left to protect.
    expect((await forget(one, threeId)).status).toBe(200)
    await three.kill('SIGKILL')
  }, 30_000)

  it('a stopped member is refused while recent, then forgotten without force once the window has passed', async () => {
    const [one, two] = [cluster.node(1), cluster.node(2)]
    const twoId = (await two.status()).nodeId
    const seqBefore = await ownSeq(one)
    // Taken before the signal: the link ends after it, so the window cannot close before this + window.
    const stoppedAt = Date.now()
    await two.kill('SIGTERM')
    // The link is gone at once (the process closed it); the member was heard a moment ago.
    const recent = await vi.waitFor(
      async () => {
        const details = aliveDetails(await forget(one, twoId))
        expect(details['linked'], 'node 1 to see node 2 unlinked').toBe(false)
        return details
      },
      { timeout: 5_000, interval: 50 },
    )
    expect(recent['lastHeardMs']).toBeTypeOf('number')
    expect(recent['lastHeardMs'] as number).toBeLessThan(ALIVE_WINDOW_MS)
    expect(await ownSeq(one)).toBe(seqBefore)

    // Still recent half a window later.
    await sleep(Math.max(0, stoppedAt + ALIVE_WINDOW_MS / 2 - Date.now()))
    aliveDetails(await forget(one, twoId))

    const forgotten = await vi.waitFor(
      async () => {
        const answer = await forget(one, twoId)
        expect(answer.status, 'the unforced forget to go through').not.toBe(409)
        return answer
      },
      { timeout: ALIVE_WINDOW_MS + 5_000, interval: 100 },
    )
    const waitedMs = Date.now() - stoppedAt
    expect(forgotten.status, forgotten.text).toBe(200)
    expect(waitedMs).toBeGreaterThanOrEqual(ALIVE_WINDOW_MS - 50)
    expect(await ownSeq(one)).toBe(seqBefore + 1)
    expect(await memberIds(one)).not.toContain(twoId)
    console.log(`forget-alive: window ${ALIVE_WINDOW_MS} ms; unforced forget went through ${waitedMs} ms after stop`)
  }, 30_000)
})
