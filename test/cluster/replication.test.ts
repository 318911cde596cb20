/**
 * Three real meshkv processes linked through TCP proxies: writes reach every node, `kvctl verify`
 * tells equal from different states, causal tokens make reads wait (or time out clearly while a
 * node is cut off), and concurrent writes made on isolated nodes converge to one state.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Cluster, get, kvctl, put, request, useLinkedCluster, waitValue } from './helpers.js'

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

afterEach(async () => {
  // Every test leaves the cluster whole, even one that failed while links were cut.
  cluster.heal()
})

function verify(): Promise<{ code: number | null; out: string; stderr: string }> {
  return kvctl(['--node', cluster.urls().join(','), 'verify'])
}

describe('replication across three processes', () => {
  it('a write on node 1 is readable on nodes 2 and 3; kvctl verify says equal, and different while a node is cut off', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    const written = await put(n1, 'greeting', 'hello from node 1')
    expect(written.status).toBe(200)
    await waitValue(n2, 'greeting', 'hello from node 1')
    await waitValue(n3, 'greeting', 'hello from node 1')

    await cluster.waitConverged()
    // A young cluster still writes on its own (a node admits its peers as members once it may
    // write, on a later tick), so a change can land between the converged check and kvctl's:
    // kvctl must find the nodes equal within a short wait, as after the heal below.
    const equal = await vi.waitFor(
      async () => {
        const run = await verify()
        expect({ code: run.code, stderr: run.stderr }, 'kvctl verify to exit 0').toEqual({ code: 0, stderr: '' })
        return run
      },
      { timeout: 10_000, interval: 250 },
    )
    expect(equal.out).toMatch(/equal on 3 nodes/)

    // Node 3 cut off: a write on node 1 reaches node 2 only.
    cluster.isolate(3)
    await vi.waitFor(
      async () =>
        expect((await cluster.node(3).status()).linked.length === 0, 'node 3 to see its links drop').toBe(true),
      { timeout: 10_000, interval: 100 },
    )
    expect((await put(n1, 'while-cut', 'only on 1 and 2')).status).toBe(200)
    await waitValue(n2, 'while-cut', 'only on 1 and 2')
    const different = await verify()
    expect(different.code).toBe(1)
    expect(different.out).toMatch(/DIFFERENT/)
    expect(different.stderr).toMatch(/MESHKV_ERR_/)
    expect((await get(n3, 'while-cut')).status).toBe(404)

    cluster.heal()
    const healed = await vi.waitFor(
      async () => {
        const run = await verify()
        expect(run.code, 'kvctl verify to exit 0 after heal').toBe(0)
        return run
      },
      { timeout: 20_000, interval: 250 },
    )
    expect(healed.out).toMatch(/equal on 3 nodes/)
    await waitValue(n3, 'while-cut', 'only on 1 and 2')
  })

  it('a read on node 3 with the causal token of a write on node 1 returns it; while node 3 is cut off it times out (504), and succeeds after heal', async () => {
    const [n1, , n3] = cluster.urls() as [string, string, string]
    await cluster.waitLinked()
    const first = await put(n1, 'causal', 'v1')
    expect(first.status).toBe(200)
    const token = first.headers.get('x-causal-token')
    expect(token).toMatch(/^c1\./)
    // The token in the header, and in ?after=: the node waits until it has the write.
    const byHeader = await get(n3, 'causal', {}, { 'x-causal-token': token as string })
    expect({ status: byHeader.status, text: byHeader.text }).toEqual({ status: 200, text: 'v1' })
    const byQuery = await get(n3, 'causal', { after: token as string })
    expect({ status: byQuery.status, text: byQuery.text }).toEqual({ status: 200, text: 'v1' })

    cluster.isolate(3)
    await vi.waitFor(
      async () =>
        expect((await cluster.node(3).status()).linked.length === 0, 'node 3 to see its links drop').toBe(true),
      { timeout: 10_000, interval: 100 },
    )
    const second = await put(n1, 'causal', 'v2')
    expect(second.status).toBe(200)
    const token2 = second.headers.get('x-causal-token') as string
    const timedOut = await get(n3, 'causal', { timeout_ms: '300' }, { 'x-causal-token': token2 })
    expect(timedOut.status).toBe(504)
    expect(timedOut.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(timedOut.json?.['code']).toBe('MESHKV_ERR_READ_TIMEOUT')
    // The wait the read asked for ended it (how long it took is bench/'s business).
    expect(String(timedOut.json?.['detail'])).toMatch(/within 300 ms/)
    const timedOutByQuery = await get(n3, 'causal', { after: token2, timeout_ms: '300' })
    expect(timedOutByQuery.json?.['code']).toBe('MESHKV_ERR_READ_TIMEOUT')
    // Without the token node 3 answers at once, with what it has.
    expect((await get(n3, 'causal')).text).toBe('v1')

    cluster.heal()
    const after = await get(n3, 'causal', { timeout_ms: '15000' }, { 'x-causal-token': token2 })
    expect({ status: after.status, text: after.text }).toEqual({ status: 200, text: 'v2' })
  })

  it('concurrent writes on isolated nodes converge: one register winner with three siblings, an exact counter, an add-wins set', async () => {
    const urls = cluster.urls()
    const [n1, n2, n3] = urls as [string, string, string]
    await cluster.waitLinked()
    // The set holds x everywhere before the cut.
    expect(
      (
        await request(`${n1}/v1/sets/tags`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ add: ['x', 'y'] }),
        })
      ).status,
    ).toBe(200)
    for (const url of urls) {
      await vi.waitFor(
        async () =>
          expect((await request(`${url}/v1/sets/tags`)).json?.['members'], `x in tags on ${url}`).toContain('x'),
        { timeout: 10_000, interval: 100 },
      )
    }

    cluster.isolateAll()
    await vi.waitFor(
      async () => {
        const statuses = await Promise.all(cluster.nodes.map((node) => node.status()))
        expect(
          statuses.map((status) => status.linked),
          'every node to see its links drop',
        ).toEqual([[], [], []])
      },
      { timeout: 10_000, interval: 100 },
    )
    for (const [index, url] of urls.entries()) {
      expect((await put(url, 'contested', `from node ${index + 1}`)).status).toBe(200)
      const added = await request(`${url}/v1/counters/hits`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ delta: 10 ** index }),
      })
      expect(added.status).toBe(200)
    }
    // Node 1 adds x again (it already holds it); node 2 removes it, concurrently.
    expect(
      (
        await request(`${n1}/v1/sets/tags`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ add: ['x'] }),
        })
      ).status,
    ).toBe(200)
    const removed = await request(`${n2}/v1/sets/tags`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ remove: ['x'] }),
    })
    expect(removed.json?.['members']).toEqual(['y'])
    // Each isolated node still sees only its own write.
    expect((await get(n3, 'contested')).text).toBe('from node 3')

    cluster.heal()
    await cluster.waitConverged(undefined, 30_000)

    const reads = await Promise.all(urls.map((url) => get(url, 'contested')))
    const winners = reads.map((read) => ({
      status: read.status,
      text: read.text,
      etag: read.headers.get('etag'),
      siblings: read.headers.get('x-siblings'),
    }))
    expect(winners[0]?.status).toBe(200)
    expect(winners[0]?.text).toMatch(/^from node [123]$/)
    expect(winners[1]).toEqual(winners[0])
    expect(winners[2]).toEqual(winners[0])
    expect(winners[0]?.siblings).toBe('3')

    for (const url of urls) {
      const siblings = await get(url, 'contested', { siblings: 'true' })
      const values = (siblings.json?.['siblings'] as { value: unknown }[]).map((sibling) => sibling.value).sort()
      expect(values).toEqual(['from node 1', 'from node 2', 'from node 3'])
      expect((await request(`${url}/v1/counters/hits`)).json?.['value']).toBe(111)
      expect(((await request(`${url}/v1/sets/tags`)).json?.['members'] as string[]).sort()).toEqual(['x', 'y'])
    }
  })
})
