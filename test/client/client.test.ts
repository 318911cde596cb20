import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import type { FetchFunction, MeshClientOptions } from '../../src/client/index.js'
import { decodeCausalToken } from '../../src/clock/index.js'
import type { MeshError } from '../../src/errors.js'
import { meshCodeOf, nextWithin, rejectionOf } from '../helpers/async.js'
import type { LiveNode } from './helpers.js'
import { closedPortUrl, silentServer, startNode } from './helpers.js'

let a: LiveNode
let b: LiveNode
let dead: string
let deadToo: string
const extra: LiveNode[] = []

beforeAll(async () => {
  ;[a, b] = await Promise.all([startNode(), startNode()])
  dead = await closedPortUrl()
  deadToo = await closedPortUrl()
})

afterAll(async () => {
  await Promise.all([a, b, ...extra].map((live) => live?.close()))
})

async function extraNode(): Promise<LiveNode> {
  const live = await startNode()
  extra.push(live)
  return live
}

/** A fetch that answers for `url` as `answer` says and passes everything else to the real one. */
function fakeFor(url: string, answer: () => Response, calls: string[] = []): FetchFunction {
  return (input, init) => {
    calls.push(String(input))
    return String(input).startsWith(url) ? Promise.resolve(answer()) : fetch(input, init)
  }
}

function problemResponse(status: number, code: string): Response {
  const body = { type: `urn:meshkv:problem:${code}`, title: 'x', status, detail: `said ${code}`, code }
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/problem+json' } })
}

const text = (bytes: Uint8Array | undefined | null): string => Buffer.from(bytes ?? new Uint8Array()).toString('utf8')

describe('MeshClient on one node', () => {
  it('writes, reads, lists and deletes keys with any bytes and any characters', async () => {
    const client = new MeshClient({ nodes: a.url })
    const key = 'users/ü ☃/100%?#'
    const written = await client.put(key, 'hello')
    expect(written).toEqual({ key, version: expect.stringMatching(/^v1\./), token: expect.stringMatching(/^c1\./) })
    expect(await client.get(key)).toEqual({
      key,
      value: new Uint8Array(Buffer.from('hello')),
      contentType: 'text/plain; charset=utf-8',
      version: written.version,
      siblingCount: 1,
    })
    expect((await a.node.get(key))?.version).toBe(written.version)

    const bytes = new Uint8Array([0, 255, 10, 13, 128])
    await client.put('bin', bytes)
    expect(await client.get('bin')).toMatchObject({ value: bytes, contentType: 'application/octet-stream' })
    await client.put('doc', '{"n": 1}', { contentType: 'application/json' })

    const withSiblings = await client.get(key, { siblings: true })
    expect(withSiblings).toMatchObject({
      value: new Uint8Array(Buffer.from('hello')),
      version: written.version,
      siblingCount: 1,
    })
    expect(withSiblings?.siblings).toEqual([
      expect.objectContaining({ deleted: false, contentType: 'text/plain; charset=utf-8', node: a.node.nodeId }),
    ])

    expect(await client.get('missing')).toBeUndefined()
    expect(await client.del('bin')).toBe(true)
    expect(await client.del('bin')).toBe(false)
    expect(await client.get('bin')).toBeUndefined()
  })

  it('lists one page or follows every page, in either order', async () => {
    const client = new MeshClient({ nodes: [a.url] })
    for (let i = 0; i < 7; i++) await client.put(`page/${i}`, `v${i}`)
    const first = await client.list({ prefix: 'page/', limit: 3 })
    expect(first.items.map((item) => item.key)).toEqual(['page/0', 'page/1', 'page/2'])
    expect(first.items[0]).toEqual({
      key: 'page/0',
      value: new Uint8Array(Buffer.from('v0')),
      contentType: 'text/plain; charset=utf-8',
      version: expect.any(String),
      siblingCount: 1,
    })
    expect(first.next).toEqual(expect.any(String))
    const second = await client.list({ prefix: 'page/', limit: 3, cursor: first.next ?? undefined })
    expect(second.items.map((item) => item.key)).toEqual(['page/3', 'page/4', 'page/5'])

    const all: string[] = []
    for await (const item of client.scan({ prefix: 'page/' })) all.push(item.key)
    expect(all).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `page/${i}`))
    const lastTwo: string[] = []
    for await (const item of client.scan({ prefix: 'page/', reverse: true, limit: 2 })) lastTwo.push(item.key)
    expect(lastTwo).toEqual(['page/6', 'page/5'])
  })

  it('adds to counters and sets and reads them back', async () => {
    const client = new MeshClient({ nodes: a.url })
    expect(await client.counter('hits/x')).toBe(0)
    expect(await client.incr('hits/x')).toBe(1)
    expect(await client.incr('hits/x', -5)).toBe(-4)
    expect(await client.counter('hits/x')).toBe(-4)
    // Write concern travels as ?w= (a lone node is every member there is).
    expect(await client.incr('hits/x', 4, { w: 'all', waitMs: 1000 })).toBe(0)
    expect(await client.put('concern', 'v', { w: 1 })).toMatchObject({ key: 'concern' })
    expect(await meshCodeOf(client.put('concern', 'v', { w: 0 }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await client.smembers('tags')).toEqual([])
    expect(await client.sadd('tags', ['red', 'blue'])).toEqual(['blue', 'red'])
    expect(await client.srem('tags', ['red'])).toEqual(['blue'])
    expect(await client.smembers('tags')).toEqual(['blue'])
    expect(await client.sadd('tags', ['green'], { w: 'quorum' })).toEqual(['blue', 'green'])
    expect(await meshCodeOf(client.incr('hits/x', 0))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('sends the read concern of key, counter and set reads as ?r=', async () => {
    const calls: string[] = []
    const client = new MeshClient({ nodes: a.url, fetch: fakeFor('http://never.invalid', () => new Response(), calls) })
    await client.put('rc', 'v')
    await client.incr('rc')
    expect(text((await client.get('rc', { r: 'quorum' }))?.value)).toBe('v')
    expect(await client.counter('rc', { r: 'all' })).toBe(1)
    expect(await client.smembers('rc', { r: 1 })).toEqual([])
    expect(calls.slice(-3).map((url) => new URL(url).searchParams.get('r'))).toEqual(['quorum', 'all', '1'])
    // A lone node cannot join the state of two members: the node refuses, with its code.
    expect(await meshCodeOf(client.counter('rc', { r: 2 }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it("turns a node's problem into a MeshError with the node's code", async () => {
    const client = new MeshClient({ nodes: a.url })
    const first = await client.put('guarded', 'one')
    await client.put('guarded', 'two', { ifMatch: first.version })
    expect(await meshCodeOf(client.put('guarded', 'three', { ifMatch: first.version }))).toBe(
      'MESHKV_ERR_PRECONDITION_FAILED',
    )
    expect(await meshCodeOf(client.put('guarded', 'three', { ifNoneMatch: true }))).toBe(
      'MESHKV_ERR_PRECONDITION_FAILED',
    )
    const tooLarge = await rejectionOf(client.put('big', new Uint8Array(a.node.limits.valueBytesMax + 1)))
    expect((tooLarge as MeshError).code).toBe('MESHKV_ERR_VALUE_TOO_LARGE')
    expect((tooLarge as MeshError).details).toMatchObject({ status: 413, endpoint: a.url })
    expect(await meshCodeOf(client.put('k'.repeat(a.node.limits.keyBytesMax + 1), 'v'))).toBe(
      'MESHKV_ERR_KEY_TOO_LARGE',
    )
  })

  it('maps a code it does not know to MESHKV_ERR_INTERNAL, keeping the code in details', async () => {
    const client = new MeshClient({
      nodes: 'http://odd.invalid',
      fetch: fakeFor('http://odd.invalid', () => problemResponse(418, 'MESHKV_ERR_TEAPOT')),
    })
    const error = await rejectionOf(client.get('x'))
    expect((error as MeshError).code).toBe('MESHKV_ERR_INTERNAL')
    expect((error as MeshError).details).toMatchObject({ remoteCode: 'MESHKV_ERR_TEAPOT', status: 418 })
  })

  it('refuses bad options and keys before sending anything', async () => {
    const refused = (options: MeshClientOptions): Promise<unknown> => rejectionOf(() => new MeshClient(options))
    const invalid = expect.objectContaining({ code: 'MESHKV_ERR_INVALID_ARGUMENT' })
    expect(await refused({ nodes: '' })).toEqual(invalid)
    expect(await refused({ nodes: 'ftp://x' })).toEqual(invalid)
    expect(await refused({ nodes: 'ftp://x' })).toHaveProperty('message', expect.stringMatching(/http/))
    expect(await refused({ nodes: a.url, policy: 'random' as never })).toEqual(invalid)
    expect(await refused({ nodes: a.url, policy: 'random' as never })).toHaveProperty(
      'message',
      expect.stringMatching(/policy/),
    )
    expect(await refused({ nodes: a.url, timeoutMs: 0 })).toEqual(invalid)
    expect(await refused({ nodes: a.url, timeoutMs: 0 })).toHaveProperty('message', expect.stringMatching(/timeoutMs/))
    const client = new MeshClient({ nodes: ` ${a.url}/ , ${b.url}` })
    expect(client.endpoints).toEqual([a.url, b.url])
    expect(await meshCodeOf(client.get('a/../b'))).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await meshCodeOf(client.get(''))).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await meshCodeOf(client.get('x', { after: 'not-a-token' }))).toBe('MESHKV_ERR_INVALID_TOKEN')
    // Concerns are checked by the one parser the node and kvctl use too, before anything is sent.
    expect(await meshCodeOf(client.put('k', 'v', { w: 0 }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(client.get('k', { r: 'most' as never }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })
})

describe('MeshClient failover', () => {
  it('counts a host name with several addresses as several endpoints, and fails over between them', async () => {
    const port = new URL(a.url).port
    // 127.0.0.2 is loopback too, but nothing listens there on this port: the first address is dead.
    const client = new MeshClient({
      nodes: `http://meshkv-cluster.test:${port}`,
      lookup: async () => ['127.0.0.2', '127.0.0.1'],
    })
    expect(await client.resolvedEndpoints()).toEqual([`http://127.0.0.2:${port}`, `http://127.0.0.1:${port}`])
    await client.put('dns/1', 'x')
    expect(client.currentEndpoint).toBe(`http://127.0.0.1:${port}`)
    expect((await a.node.get('dns/1'))?.value.toString()).toBe('x')
  })

  it('sticky: moves past a dead endpoint to the first live one, and stays there', async () => {
    const client = new MeshClient({ nodes: [dead, a.url, b.url] })
    await client.put('sticky/1', 'x')
    expect(client.currentEndpoint).toBe(a.url)
    expect(text((await a.node.get('sticky/1'))?.value)).toBe('x')
    for (let i = 0; i < 3; i++) expect((await client.status()).nodeId).toBe(a.node.nodeId)
    expect(await b.node.get('sticky/1')).toBeUndefined()
  })

  it('sticky: when its node goes away mid-session, moves to the next and stays', async () => {
    const c = await extraNode()
    const client = new MeshClient({ nodes: [c.url, b.url] })
    expect((await client.status()).nodeId).toBe(c.node.nodeId)
    await c.close()
    expect((await client.status()).nodeId).toBe(b.node.nodeId)
    expect(client.currentEndpoint).toBe(b.url)
    expect((await client.status()).endpoint).toBe(b.url)
  })

  it('round-robin: spreads requests over the nodes, passing over a dead one', async () => {
    const client = new MeshClient({ nodes: [a.url, b.url], policy: 'round-robin' })
    const ids = []
    for (let i = 0; i < 4; i++) ids.push((await client.status()).nodeId)
    expect(ids).toEqual([a.node.nodeId, b.node.nodeId, a.node.nodeId, b.node.nodeId])

    const withDead = new MeshClient({ nodes: [a.url, dead, b.url], policy: 'round-robin' })
    const served = []
    for (let i = 0; i < 6; i++) served.push((await withDead.status()).endpoint)
    expect(served.filter((url) => url === a.url).length).toBeGreaterThanOrEqual(2)
    expect(served.filter((url) => url === b.url).length).toBeGreaterThanOrEqual(2)
  })

  it('throws MESHKV_ERR_UNREACHABLE, listing every attempt, when no endpoint answers', async () => {
    for (const policy of ['sticky', 'round-robin'] as const) {
      const client = new MeshClient({ nodes: [dead, deadToo], policy })
      const error = await rejectionOf(client.put('k', 'v'))
      expect((error as MeshError).code).toBe('MESHKV_ERR_UNREACHABLE')
      expect((error as MeshError).details?.['attempts']).toEqual([
        expect.objectContaining({ endpoint: expect.any(String), kind: 'not-delivered' }),
        expect.objectContaining({ endpoint: expect.any(String), kind: 'not-delivered' }),
      ])
      expect(await meshCodeOf(client.get('k'))).toBe('MESHKV_ERR_UNREACHABLE')
    }
  })

  it('does not retry a write that may have arrived, but retries a read', async () => {
    const silent = await silentServer()
    try {
      const client = new MeshClient({ nodes: [silent.url, a.url], timeoutMs: 300 })
      const error = await rejectionOf(client.put('maybe', 'v'))
      expect((error as MeshError).code).toBe('MESHKV_ERR_UNREACHABLE')
      expect((error as MeshError).details).toMatchObject({ endpoint: silent.url })
      expect(silent.requests()).toBe(1)
      expect(await a.node.get('maybe')).toBeUndefined()

      const reader = new MeshClient({ nodes: [silent.url, a.url], timeoutMs: 300 })
      await a.node.put('maybe-read', 'here')
      expect(text((await reader.get('maybe-read'))?.value)).toBe('here')
    } finally {
      await silent.close()
    }
  })

  it('retries a write on the next node after 503 not ready or recovering; any other error stops it', async () => {
    const calls: string[] = []
    const notReady = 'http://not-ready.invalid'
    const client = new MeshClient({
      nodes: [notReady, a.url],
      fetch: fakeFor(notReady, () => problemResponse(503, 'MESHKV_ERR_NOT_READY'), calls),
    })
    await client.put('after-503', 'v')
    expect(calls.map((url) => new URL(url).origin)).toEqual([notReady, a.url])
    expect(client.currentEndpoint).toBe(a.url)

    // A node just restarted refuses writes while its seq guard checks with its peers: not run either.
    const recovering = 'http://recovering.invalid'
    const calls1: string[] = []
    const restarted = new MeshClient({
      nodes: [recovering, a.url],
      fetch: fakeFor(recovering, () => problemResponse(503, 'MESHKV_ERR_RECOVERING'), calls1),
    })
    await restarted.put('after-recovering', 'v')
    expect(calls1.map((url) => new URL(url).origin)).toEqual([recovering, a.url])

    const refusing = 'http://refusing.invalid'
    const calls2: string[] = []
    const stopped = new MeshClient({
      nodes: [refusing, a.url],
      fetch: fakeFor(refusing, () => problemResponse(412, 'MESHKV_ERR_PRECONDITION_FAILED'), calls2),
    })
    expect(await meshCodeOf(stopped.put('after-412', 'v'))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
    expect(calls2).toHaveLength(1)

    const allNotReady = new MeshClient({
      nodes: [notReady],
      fetch: fakeFor(notReady, () => problemResponse(503, 'MESHKV_ERR_NOT_READY')),
    })
    expect(await meshCodeOf(allNotReady.put('k', 'v'))).toBe('MESHKV_ERR_UNREACHABLE')
  })
})

describe('MeshClient session token', () => {
  it('joins the tokens of its writes and sends the join with every read', async () => {
    const sent: (string | null)[] = []
    const recording: FetchFunction = (input, init) => {
      if ((init?.method ?? 'GET') === 'GET') sent.push(new Headers(init?.headers).get('x-causal-token'))
      return fetch(input, init)
    }
    const client = new MeshClient({ nodes: [a.url, b.url], policy: 'round-robin', fetch: recording })
    expect(client.token).toBeUndefined()
    const onA = await client.put('session/a', '1')
    const onB = await client.put('session/b', '2')
    const vc = decodeCausalToken(client.token ?? '')
    expect(vc).toEqual({ ...decodeCausalToken(onA.token), ...decodeCausalToken(onB.token) })
    expect(Object.keys(vc).sort()).toEqual([a.node.nodeId, b.node.nodeId].sort())

    // Round-robin brings this read back to a, which has seen the write on a but not the one on b.
    expect(await meshCodeOf(client.get('session/a', { waitMs: 100 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(sent).toEqual([client.token])
  })

  it('carries the token across a failover: the next node waits for the writes it has not seen', async () => {
    const c = await extraNode()
    const client = new MeshClient({ nodes: [c.url, b.url] })
    await client.put('moved', 'v')
    await c.close()
    // b never saw the write on c (nodes do not replicate yet), so the read waits and times out
    // rather than answering as if the session's write never happened.
    expect(await meshCodeOf(client.get('moved', { waitMs: 100 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(await meshCodeOf(client.counter('anything', { waitMs: 100 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(client.currentEndpoint).toBe(b.url)
  })

  it('reads its own writes on the node it wrote to, and takes tokens from elsewhere', async () => {
    const writer = new MeshClient({ nodes: b.url })
    const written = await writer.put('handed', 'over')
    const reader = new MeshClient({ nodes: b.url })
    reader.observeToken(written.token)
    expect(reader.token).toBe(written.token)
    expect(text((await reader.get('handed'))?.value)).toBe('over')
    expect(await meshCodeOf(() => reader.observeToken('c1.garbage!'))).toBe('MESHKV_ERR_INVALID_TOKEN')
  })
})

describe('MeshClient watch', () => {
  it('yields parsed events as they commit, resumes from a cursor, and ends quietly on abort', async () => {
    const client = new MeshClient({ nodes: [dead, a.url] })
    const controller = new AbortController()
    const events = client.watch({ prefix: 'watched/', signal: controller.signal })
    const first = nextWithin(events, 3_000, 'the first watch event')
    // The stream is open once the node has a follower; give it a moment before writing.
    await new Promise((resolve) => setTimeout(resolve, 100))
    await client.put('watched/1', 'one')
    await client.incr('watched/count', 2)
    await client.put('unwatched', 'x')
    await client.del('watched/1')
    const put = (await first).value
    expect(put).toMatchObject({
      event: 'put',
      endpoint: a.url,
      data: { type: 'put', key: 'watched/1', value: 'one', origin: 'local' },
    })
    expect((await nextWithin(events)).value).toMatchObject({
      event: 'counter',
      data: { name: 'watched/count', delta: 2 },
    })
    expect((await nextWithin(events)).value).toMatchObject({ event: 'del', data: { key: 'watched/1' } })
    controller.abort()
    expect(await nextWithin(events)).toEqual({ done: true, value: undefined })

    const resumed = client.watch({ prefix: 'watched/', since: put?.id })
    expect((await nextWithin(resumed)).value).toMatchObject({ event: 'counter' })
    await resumed.return(undefined)
  })

  it('throws MESHKV_ERR_UNREACHABLE with the last cursor when its node goes away', async () => {
    const c = await extraNode()
    const client = new MeshClient({ nodes: c.url })
    const events = client.watch()
    const first = nextWithin(events, 3_000)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await client.put('w', 'v')
    const seen = (await first).value
    await c.close()
    const error = await rejectionOf(nextWithin(events, 3_000))
    expect((error as MeshError).code).toBe('MESHKV_ERR_UNREACHABLE')
    expect((error as MeshError).details).toMatchObject({ endpoint: c.url, lastEventId: seen?.id })
  })
})
