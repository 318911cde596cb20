import { once } from 'node:events'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeCausalToken } from '../../src/clock/index.js'
import type { NodeId } from '../../src/clock/index.js'
import { isMeshError } from '../../src/errors.js'
import { buildApp, closeApp } from '../../src/http/app.js'
import type { MeshNode } from '../../src/node/index.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
})

afterAll(async () => {
  await h.close()
})

describe('problems', () => {
  it('an unknown route or method is 404 MESHKV_ERR_NOT_FOUND', async () => {
    expectProblem(await h.app.inject({ url: '/nope' }), 'MESHKV_ERR_NOT_FOUND')
    expectProblem(await h.app.inject({ url: '/v1/docs/x' }), 'MESHKV_ERR_NOT_FOUND')
    expectProblem(await h.app.inject({ method: 'PATCH', url: '/v1/kv/x', payload: 'y' }), 'MESHKV_ERR_NOT_FOUND')
    expectProblem(await h.app.inject({ method: 'DELETE', url: '/v1/counters/x' }), 'MESHKV_ERR_NOT_FOUND')
  })

  it('a URL that does not decode is 400: MESHKV_ERR_INVALID_KEY under a name, MESHKV_ERR_INVALID_ARGUMENT elsewhere', async () => {
    expectProblem(await h.app.inject({ url: '/v1/counters/%FF' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await h.app.inject({ url: '/v1/sets/%E0%A4' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await h.app.inject({ url: '/%FF' }), 'MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('an unexpected error is a 500 MESHKV_ERR_INTERNAL that tells nothing of its cause, logged, and the node goes on serving', async () => {
    const lines: string[] = []
    const logger = pino(
      { level: 'error' },
      new Writable({
        write(chunk, _encoding, callback) {
          lines.push(String(chunk))
          callback()
        },
      }),
    )
    const broken = failingGet(h.node, new Error('secret detail at /srv/meshkv/node.ts:1:1'))
    const app = await buildApp(broken, { logger })
    try {
      const response = await app.inject({ url: '/v1/kv/anything' })
      const body = expectProblem(response, 'MESHKV_ERR_INTERNAL')
      expect(response.body).not.toContain('secret')
      expect(body['detail']).not.toContain('node.ts')
      expect(lines.some((line) => line.includes('secret detail') && line.includes('"level":50'))).toBe(true)
      await h.node.put('still', 'here')
      expect((await app.inject({ url: '/v1/kv?prefix=still' })).json().items).toHaveLength(1)
      expect((await app.inject({ url: '/livez' })).statusCode).toBe(200)
    } finally {
      await closeApp(app)
    }
  })

  it('a run of hostile requests leaves the node answering normally', async () => {
    const hostile = [
      { method: 'PUT', url: '/v1/kv/x', payload: Buffer.alloc(3 * 1024 * 1024) },
      { method: 'PUT', url: '/v1/kv/x', payload: '{', headers: { 'content-type': 'application/json' } },
      { method: 'POST', url: '/v1/counters/x', payload: '{"delta":', headers: { 'content-type': 'application/json' } },
      {
        method: 'POST',
        url: '/v1/sets/x',
        payload: '{"constructor": {"prototype": {"a": 1}}}',
        headers: { 'content-type': 'application/json' },
      },
      {
        method: 'POST',
        url: '/v1/sets/x',
        payload: 'x'.repeat(2 * 1024 * 1024),
        headers: { 'content-type': 'application/json' },
      },
      { method: 'GET', url: `/v1/kv/${'k'.repeat(5000)}` },
      { method: 'GET', url: '/v1/kv?limit=-1' },
      { method: 'GET', url: '/v1/kv/x?after=c1.%00' },
      { method: 'PUT', url: '/v1/kv/x', payload: 'x', headers: { 'if-match': '"' } },
    ] as const
    for (const request of hostile) {
      const response = await h.app.inject(request)
      expect(response.statusCode).toBeGreaterThanOrEqual(400)
      expect(response.statusCode).toBeLessThan(500)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    }
    expect((await h.app.inject({ method: 'PUT', url: '/v1/kv/x', payload: 'fine' })).statusCode).toBe(200)
    expect((await h.app.inject({ url: '/v1/kv/x' })).body).toBe('fine')
    expect(({} as Record<string, unknown>)['a']).toBeUndefined()
  })

  it('buildApp refuses bad options with MESHKV_ERR_CONFIG', async () => {
    for (const options of [{ heartbeatMs: 0 }, { heartbeatMs: 1.5 }, { bodyBytesMax: -1 }]) {
      const error = await buildApp(h.node, options).catch((caught: unknown) => caught)
      expect(isMeshError(error, 'MESHKV_ERR_CONFIG')).toBe(true)
    }
  })
})

describe('closeApp', () => {
  it('turns the app not ready while in-flight requests drain, and refuses new ones as problems', async () => {
    const own = await openHarness()
    try {
      const address = await own.app.listen({ port: 0, host: '127.0.0.1' })
      // A read waiting for a write this node has not seen keeps the app draining for a while.
      const seq = own.node.vc[own.node.nodeId] ?? 0
      const pending = own.app.inject({ url: `/v1/kv/k?timeout_ms=300&after=${tokenOf(own.node, seq + 1)}` })
      // Close only once the server has the request: before that its connection is an unused one,
      // which closing ends at once (and a sleep here raced with a busy machine).
      const arrived = once(own.app.server, 'request')
      const inFlight = fetch(`${address}/v1/kv/k?timeout_ms=300&after=${tokenOf(own.node, seq + 1)}`)
      await arrived
      const closing = closeApp(own.app)
      // Requests that reach the app while it drains (fastify takes none once fully closed).
      const [ready, data] = await Promise.all([own.app.inject({ url: '/readyz' }), own.app.inject({ url: '/v1/kv/k' })])
      expectProblem(ready, 'MESHKV_ERR_NOT_READY')
      expectProblem(data, 'MESHKV_ERR_NOT_READY')
      expectProblem(await pending, 'MESHKV_ERR_READ_TIMEOUT')
      expect((await inFlight).status).toBe(504)
      await closing
    } finally {
      await own.close()
    }
  })
})

/** A causal token naming the node's own write `seq` (base64url: safe in a query string). */
function tokenOf(node: MeshNode, seq: number): string {
  return encodeCausalToken({ [node.nodeId]: seq } as Record<NodeId, number>)
}

/** The node, with `get` failing as a bug would (other members bound to the real node). */
function failingGet(node: MeshNode, error: Error): MeshNode {
  return new Proxy(node, {
    get(target, property) {
      if (property === 'get') return async () => Promise.reject(error)
      const value = Reflect.get(target, property, target) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
