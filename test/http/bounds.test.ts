/**
 * The HTTP server's bounds on real loopback sockets: a slowloris dropped by the headers timeout
 * (watch streams outlive the request timeout), the connection cap, watch streams, parked reads
 * and writes over their caps answered 503 `MESHKV_ERR_BUSY`, each counted in `/metrics`, and the
 * node still serving.
 */
import net from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { encodeCausalToken, toNodeId } from '../../src/clock/index.js'
import type { AppOptions } from '../../src/http/app.js'
import { buildApp, closeApp } from '../../src/http/app.js'
import type { MeshNodeOptions } from '../../src/node/index.js'
import { MeshNode } from '../../src/node/index.js'
import { sleep, tempDir } from '../helpers/async.js'
import { freePort } from '../support/ports.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

const FUTURE = encodeCausalToken({ [toNodeId('c3c3c3c3c3c3c3c3')]: 5 })

const harnesses: Harness[] = []
const sockets: net.Socket[] = []
const cleanups: (() => Promise<void>)[] = []

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy()
  for (const harness of harnesses.splice(0)) await harness.close()
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

async function serve(app: AppOptions, node: Omit<MeshNodeOptions, 'dir'> = {}): Promise<{ h: Harness; base: string }> {
  const h = await openHarness({ app, node })
  harnesses.push(h)
  const base = await h.app.listen({ port: 0, host: '127.0.0.1' })
  return { h, base }
}

/** A raw TCP connection to `base`, with a promise that settles when the server closes it. */
async function connect(base: string): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const url = new URL(base)
  const socket = net.connect(Number(url.port), url.hostname)
  sockets.push(socket)
  socket.on('error', () => undefined)
  socket.resume()
  const opened = Date.now()
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)))
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return { socket, closed }
}

async function metric(base: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const match = text.split('\n').find((row) => line.test(row))
  return match === undefined ? NaN : Number(match.split(' ').pop())
}

describe('timeouts', () => {
  it('drops a slowloris that sends its headers byte by byte, and keeps serving', async () => {
    const { base } = await serve({ requestTimeoutMs: 400 })
    const { socket, closed } = await connect(base)
    const request = 'GET /v1/kv/key HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(200)
    let sent = 0
    const drip = setInterval(() => {
      if (!socket.destroyed) socket.write(request[sent++ % request.length] as string)
    }, 40)
    try {
      const lifetime = await Promise.race([closed, sleep(5000).then(() => Infinity)])
      expect(lifetime).toBeLessThan(3000)
      expect(sent).toBeGreaterThan(3)
    } finally {
      clearInterval(drip)
    }
    // A connection that sends nothing at all is dropped as well.
    const idle = await connect(base)
    expect(await Promise.race([idle.closed, sleep(5000).then(() => Infinity)])).toBeLessThan(3000)
    expect((await fetch(`${base}/livez`)).status).toBe(200)
  })

  it('lets a watch stream live past the request timeout', async () => {
    const { h, base } = await serve({ requestTimeoutMs: 300, heartbeatMs: 100 })
    const response = await fetch(`${base}/v1/watch?prefix=w/`)
    expect(response.status).toBe(200)
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    await sleep(1500)
    await h.node.put('w/late', 'still here')
    let text = ''
    const decoder = new TextDecoder()
    while (!text.includes('w/late')) {
      const step = await reader.read()
      if (step.done) throw new Error(`the stream ended: ${text}`)
      text += decoder.decode(step.value, { stream: true })
    }
    expect(text).toContain('event: put')
    await reader.cancel()
  })
})

describe('connection cap', () => {
  it('closes connections over connectionsMax as they arrive, and serves again once they are gone', async () => {
    const max = 5
    const { base } = await serve({ connectionsMax: max })
    const opened = await Promise.all(Array.from({ length: max + 5 }, () => connect(base)))
    const lifetimes = await Promise.all(
      opened.map(({ closed }) => Promise.race([closed, sleep(1000).then(() => Infinity)])),
    )
    expect(lifetimes.filter((ms) => ms !== Infinity)).toHaveLength(5)
    expect(lifetimes.filter((ms) => ms === Infinity)).toHaveLength(max)
    for (const { socket } of opened) socket.destroy()
    await vi.waitFor(async () => expect((await fetch(`${base}/livez`)).status).toBe(200), { timeout: 3000 })
    expect(await metric(base, /^meshkv_busy_total\{resource="connections"\}/)).toBeGreaterThanOrEqual(5)
  })
})

describe('503 BUSY when full', () => {
  it('refuses watch streams over watchStreamsMax, and takes one again when a stream ends', async () => {
    const { h, base } = await serve({ watchStreamsMax: 2 })
    const controllers = [new AbortController(), new AbortController()]
    const streams = await Promise.all(controllers.map((c) => fetch(`${base}/v1/watch`, { signal: c.signal })))
    expect(streams.map((response) => response.status)).toEqual([200, 200])
    expectProblem(await h.app.inject({ url: '/v1/watch' }), 'MESHKV_ERR_BUSY')
    expect(await metric(base, /^meshkv_busy_total\{resource="watch"\}/)).toBe(1)
    expect(await metric(base, /^meshkv_http_watch_streams /)).toBe(2)
    controllers[0]?.abort()
    await vi.waitFor(async () => {
      const again = await fetch(`${base}/v1/watch`)
      expect(again.status).toBe(200)
      await again.body?.cancel()
    })
    controllers[1]?.abort()
    // Other requests are served all along.
    expect((await h.app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' })).statusCode).toBe(200)
  })

  it('refuses causal reads over parkedReadsMax', async () => {
    const { h, base } = await serve({}, { parkedReadsMax: 1 })
    const parked = fetch(`${base}/v1/kv/k?after=${FUTURE}&timeout_ms=3000`)
    await vi.waitFor(() => expect(h.node.status().parked.reads.open).toBe(1))
    expectProblem(await h.app.inject({ url: `/v1/kv/k?after=${FUTURE}&timeout_ms=3000` }), 'MESHKV_ERR_BUSY')
    expectProblem(await h.app.inject({ url: `/v1/kv?after=${FUTURE}` }), 'MESHKV_ERR_BUSY')
    expect((await h.app.inject({ url: '/v1/kv/k' })).statusCode).toBe(404)
    expect(await metric(base, /^meshkv_busy_total\{resource="reads"\}/)).toBe(2)
    expect(await metric(base, /^meshkv_parked\{resource="reads"\}/)).toBe(1)
    await h.node.close()
    expect((await parked).status).toBe(499)
  })

  it('refuses writes over parkedWritesMax before they are written', async () => {
    // A node that has written before is ready at once; one unreachable configured peer makes w=2 wait.
    const { dir, remove } = await tempDir('http-bounds')
    cleanups.push(remove)
    const seeded = await MeshNode.open({ dir })
    await seeded.put('seed', 'x')
    await seeded.close()
    const node = await MeshNode.open({
      dir,
      parkedWritesMax: 1,
      peers: [`http://127.0.0.1:${await freePort()}`],
      secret: 'bounds-test-secret-0123456789',
    })
    const app = await buildApp(node)
    cleanups.unshift(async () => {
      await closeApp(app)
      await node.close()
    })
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const parked = fetch(`${base}/v1/kv/a?w=2&timeout_ms=3000`, { method: 'PUT', body: 'waits' })
    await vi.waitFor(() => expect(node.status().parked.writes.open).toBe(1))
    const lsn = node.status().lsn
    expectProblem(await app.inject({ method: 'PUT', url: '/v1/kv/b?w=2', payload: 'refused' }), 'MESHKV_ERR_BUSY')
    expectProblem(await app.inject({ method: 'POST', url: '/v1/counters/c?w=all' }), 'MESHKV_ERR_BUSY')
    // Refused before it was committed: nothing was written, and the caller may simply retry.
    expect(node.status().lsn).toBe(lsn)
    expect((await app.inject({ url: '/v1/kv/b' })).statusCode).toBe(404)
    expect((await app.inject({ method: 'PUT', url: '/v1/kv/c', payload: 'w=1 waits for no one' })).statusCode).toBe(200)
    expect(await metric(base, /^meshkv_busy_total\{resource="writes"\}/)).toBe(2)
    expect(await metric(base, /^meshkv_parked\{resource="writes"\}/)).toBe(1)
    expect((await parked).status).toBe(504)
  })
})
