/**
 * Forgetting a member that is still alive, on real processes: `DELETE /v1/members/:nodeId`
 * refuses a member linked to the node or heard from within FORGET_ALIVE_PEER_TIMEOUTS peer
 * timeouts (409 MESHKV_ERR_MEMBER_ALIVE, and nothing is written), `?force=true` forgets it anyway,
 * and a member that stopped is forgotten without force once that window has passed. The window
 * follows `--peer-timeout-ms` (2000 here, so 6 s).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { FORGET_ALIVE_PEER_TIMEOUTS } from '../../src/node/cluster.js'
import type { ClusterNode, HttpAnswer } from './helpers.js'
import { buildIfStale, Cluster, killAllKvctl, request, sleep, stopAllClusters } from './helpers.js'

// The cluster helpers' default: shorter timeouts make links flap on a loaded two-core machine.
const PEER_TIMEOUT_MS = 2000
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

/** The node's own seq: a forget is a write of the node's own, so it moves when one is written. */
async function ownSeq(on: ClusterNode): Promise<number> {
  const status = await on.status()
  return status.vc[status.nodeId] ?? 0
}

/**
 * The node's own seq once it has held still for two ticks: membership keeps writing for a moment
 * after a change (a node claims its own entry again), and those writes are not the forget's.
 */
async function quietSeq(on: ClusterNode): Promise<number> {
  let last = await ownSeq(on)
  for (;;) {
    await sleep(2_000)
    const now = await ownSeq(on)
    if (now === last) return now
    last = now
  }
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
    const seqBefore = await quietSeq(one)
    await cluster.waitLinked()
    for (const query of ['', '?force=false', '?force=0']) {
      const details = aliveDetails(await forget(one, threeId, query))
      expect(details).toMatchObject({ nodeId: threeId, linked: true, aliveWindowMs: ALIVE_WINDOW_MS })
    }
    // Nothing written: no change of node 1's own, and node 3 still in the member set.
    expect(await ownSeq(one)).toBe(seqBefore)
    expect(await memberIds(one)).toContain(threeId)

    const forced = await forget(one, threeId, '?force=true')
    expect(forced.status, forced.text).toBe(200)
    expect(forced.json?.['forgotten']).toBe(threeId)
    expect(await ownSeq(one)).toBeGreaterThan(seqBefore)
    expect(await memberIds(one)).not.toContain(threeId)
    // Forgotten once, it may be forgotten again without force: nothing left to protect.
    expect((await forget(one, threeId)).status).toBe(200)
    await three.kill('SIGKILL')
  }, 30_000)

  it('a stopped member is refused while recent, then forgotten without force once the window has passed', async () => {
    const [one, two] = [cluster.node(1), cluster.node(2)]
    const twoId = (await two.status()).nodeId
    await cluster.waitLinked([1, 2])
    await two.kill('SIGTERM')
    // The link is gone at once (the process closed it); the member was heard a moment ago.
    const recent = await vi.waitFor(
      async () => {
        const askedAt = Date.now()
        const details = aliveDetails(await forget(one, twoId))
        expect(details['linked'], 'node 1 to see node 2 unlinked').toBe(false)
        expect(details['lastHeardMs']).toBeTypeOf('number')
        // The node answered at askedAt or later, so it last heard node 2 at heardAt or later.
        return { heardAt: askedAt - (details['lastHeardMs'] as number), lastHeardMs: details['lastHeardMs'] as number }
      },
      { timeout: 5_000, interval: 50 },
    )
    expect(recent.lastHeardMs).toBeLessThan(ALIVE_WINDOW_MS)
    expect(await memberIds(one)).toContain(twoId)

    // Still recent half a window later.
    await sleep(Math.max(0, recent.heardAt + ALIVE_WINDOW_MS / 2 - Date.now()))
    aliveDetails(await forget(one, twoId))

    const forgotten = await vi.waitFor(
      async () => {
        const answer = await forget(one, twoId)
        expect(answer.status, 'the unforced forget to go through').not.toBe(409)
        return answer
      },
      { timeout: ALIVE_WINDOW_MS + 5_000, interval: 100 },
    )
    const waitedMs = Date.now() - recent.heardAt
    expect(forgotten.status, forgotten.text).toBe(200)
    expect(waitedMs).toBeGreaterThanOrEqual(ALIVE_WINDOW_MS)
    expect(await memberIds(one)).not.toContain(twoId)
    console.log(
      `forget-alive: window ${ALIVE_WINDOW_MS} ms; unforced forget went through ${waitedMs} ms after node 2 was last heard`,
    )
  }, 45_000)
})
