/**
 * Write concern across real processes: w=all with one of three nodes down times out with a 504
 * that says how many members hold the write; the write stays committed, is readable on the
 * live nodes, and reaches the dead one when it returns.
 */
import { describe, expect, it, vi } from 'vitest'
import { Cluster, get, put, useLinkedCluster, waitValue } from './helpers.js'

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

describe('write concern with a node down', () => {
  it('w=all with node 3 killed answers 504 MESHKV_ERR_WRITE_CONCERN_TIMEOUT (2 of 3 hold it); readable on 1 and 2; node 3 gets it after its restart', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    // With every node up, w=all is met.
    const met = await put(n1, 'all-up', 'held by all', { w: 'all', timeout_ms: '5000' })
    expect(met.status).toBe(200)
    expect((await get(n3, 'all-up')).text).toBe('held by all')

    expect(await cluster.node(3).kill('SIGKILL')).toMatchObject({ signal: 'SIGKILL' })
    const answer = await put(n1, 'needs-all', 'written while node 3 is down', { w: 'all', timeout_ms: '1500' })
    expect(answer.status).toBe(504)
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    const problem = answer.json as Record<string, unknown>
    expect(problem['code']).toBe('MESHKV_ERR_WRITE_CONCERN_TIMEOUT')
    expect(problem['status']).toBe(504)
    expect(String(problem['detail'])).toMatch(/\b2 of 3\b/)
    expect(problem['details']).toMatchObject({ holders: 2, required: 3, timeoutMs: 1500 })
    // A token still comes back, and the write is not rolled back: nodes 1 and 2 have it.
    expect(answer.headers.get('x-causal-token')).toMatch(/^c1\./)
    expect((await get(n1, 'needs-all')).text).toBe('written while node 3 is down')
    await waitValue(n2, 'needs-all', 'written while node 3 is down', 5_000)

    // w=2 is still met by the two live nodes.
    expect((await put(n2, 'needs-two', 'met by 1 and 2', { w: '2', timeout_ms: '5000' })).status).toBe(200)

    await cluster.restart(3)
    await waitValue(n3, 'needs-all', 'written while node 3 is down', 20_000)
    await waitValue(n3, 'needs-two', 'met by 1 and 2', 5_000)
    await cluster.waitConverged([1, 2, 3])
    // And w=all is met again.
    expect((await put(n2, 'all-again', 'x', { w: 'all', timeout_ms: '5000' })).status).toBe(200)
  })

  it('w=all with node 3 frozen (SIGSTOP) times out the same way; its peers mark it down after the peer timeout; after SIGCONT it gets the value', async () => {
    const [n1, , n3] = cluster.urls() as [string, string, string]
    await cluster.waitLinked([1, 2, 3])
    const id3 = (await cluster.node(3).status()).nodeId
    cluster.node(3).suspend()
    try {
      const answer = await put(n1, 'needs-all-frozen', 'written while node 3 is stopped', {
        w: 'all',
        timeout_ms: '1000',
      })
      expect(answer.status).toBe(504)
      expect(answer.json).toMatchObject({
        code: 'MESHKV_ERR_WRITE_CONCERN_TIMEOUT',
        details: { holders: 2, required: 3 },
      })
      // --peer-timeout-ms 2000: a silent peer is down within a few seconds, though its sockets stay open.
      await vi.waitFor(
        async () => {
          const peer = (await cluster.node(1).status()).peers.find((candidate) => candidate.nodeId === id3)
          expect(peer?.state, 'node 1 to mark the frozen node 3 down').toBe('down')
        },
        { timeout: 10_000, interval: 100 },
      )
    } finally {
      cluster.node(3).continue()
    }
    await waitValue(n3, 'needs-all-frozen', 'written while node 3 is stopped', 20_000)
    await cluster.waitConverged([1, 2, 3])
  })
})
