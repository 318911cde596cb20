import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/http/app.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
})

afterAll(async () => {
  await h.close()
})

describe('health', () => {
  it('GET /livez (and /healthz) answer that the process is alive', async () => {
    for (const url of ['/livez', '/healthz']) {
      const response = await h.app.inject({ url })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ status: 'ok' })
      expect(response.headers['x-causal-token']).toBe(h.node.token())
    }
  })

  it('GET /readyz answers ready for an open node', async () => {
    const response = await h.app.inject({ url: '/readyz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ ready: true })
  })

  it('GET /v1/status is the node status as JSON', async () => {
    await h.node.put('s', 1)
    const response = await h.app.inject({ url: '/v1/status' })
    expect(response.statusCode).toBe(200)
    const status = h.node.status()
    expect(response.json()).toEqual({
      ...JSON.parse(JSON.stringify(status)),
      uptimeMs: expect.any(Number),
      peers: [],
      gc: JSON.parse(JSON.stringify(await h.node.gcStatus())),
    })
    expect(response.json()).toMatchObject({
      nodeId: h.node.nodeId,
      ready: true,
      lsn: status.lsn,
      token: h.node.token(),
      storage: 'level',
    })
  })
})

describe('a closed node', () => {
  it('is not ready, refuses data requests with 503 MESHKV_ERR_CLOSED, and stays alive', async () => {
    const own = await openHarness()
    try {
      await own.node.close()
      expectProblem(await own.app.inject({ url: '/readyz' }), 'MESHKV_ERR_NOT_READY')
      expectProblem(await own.app.inject({ url: '/v1/kv/x' }), 'MESHKV_ERR_CLOSED')
      expectProblem(await own.app.inject({ method: 'PUT', url: '/v1/kv/x', payload: 'y' }), 'MESHKV_ERR_CLOSED')
      expectProblem(await own.app.inject({ method: 'POST', url: '/v1/counters/c' }), 'MESHKV_ERR_CLOSED')
      expectProblem(await own.app.inject({ url: '/v1/watch' }), 'MESHKV_ERR_NOT_READY')
      expect((await own.app.inject({ url: '/livez' })).statusCode).toBe(200)
    } finally {
      await own.close()
    }
  })
})

describe('GET /metrics', () => {
  it('serves Prometheus text from a registry of its own, labelled by route pattern, never by key', async () => {
    await h.app.inject({ method: 'PUT', url: '/v1/kv/secret-key-name', payload: 'x' })
    await h.app.inject({ url: '/v1/kv/secret-key-name' })
    await h.app.inject({ url: '/no/such/route' })
    // A second app in the same process registers the same metric names without a clash.
    const other = await buildApp(h.node)
    expect((await other.inject({ url: '/metrics' })).statusCode).toBe(200)
    await other.close()

    const response = await h.app.inject({ url: '/metrics' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = response.body
    expect(text).toContain('meshkv_http_requests_total{route="/v1/kv/*",method="PUT",status="200"} 1')
    expect(text).toContain('meshkv_http_requests_total{route="/v1/kv/*",method="GET",status="200"} 1')
    expect(text).toContain('meshkv_http_requests_total{route="unmatched",method="GET",status="404"} 1')
    expect(text).toMatch(
      /meshkv_http_request_duration_seconds_bucket\{le="0\.005",route="\/v1\/kv\/\*",method="PUT"\} \d+/,
    )
    expect(text).toMatch(/meshkv_http_request_duration_seconds_count\{route="\/v1\/kv\/\*",method="GET"\} 1/)
    expect(text).toContain(`meshkv_lsn ${h.node.status().lsn}`)
    expect(text).toMatch(/^process_cpu_user_seconds_total /m)
    expect(text).toMatch(/^nodejs_heap_size_total_bytes /m)
    expect(text).not.toContain('secret-key-name')
  })

  it('GET /v1/digest hashes the whole state: stable while nothing changes, new after any write of any type', async () => {
    const digest = async (): Promise<{ digest: string; keys: number }> =>
      (await h.app.inject({ url: '/v1/digest' })).json()
    const first = await digest()
    expect(first.digest).toMatch(/^[0-9a-f]{64}$/)
    expect(await digest()).toEqual(first)
    const seen = new Set([first.digest])
    await h.node.put('d', 1)
    seen.add((await digest()).digest)
    await h.node.counter('c').incr()
    seen.add((await digest()).digest)
    await h.node.set('s').add('m')
    seen.add((await digest()).digest)
    await h.node.del('d')
    const last = await digest()
    seen.add(last.digest)
    expect(seen.size).toBe(5)
    // The deleted key reads as absent and is not hashed (its tombstone goes at garbage collection).
    expect(last.keys).toBe(first.keys + 2)
  })
})
