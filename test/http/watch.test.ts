import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshError } from '../../src/errors.js'
import { buildApp, closeApp } from '../../src/http/app.js'
import type { MeshNode } from '../../src/node/index.js'
import type { WatchEvent } from '../../src/node/index.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

/** One server-sent message: its fields, or a comment line. */
interface Message {
  id?: string
  event?: string
  data?: string
  comment?: string
}

/** Reads a text/event-stream body message by message. */
class EventReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>
  readonly #decoder = new TextDecoder()
  #buffer = ''
  readonly messages: Message[] = []

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader()
  }

  /** Reads until `done(messages)` holds; fails after `timeoutMs`. */
  async until(done: (messages: Message[]) => boolean, timeoutMs = 5000): Promise<Message[]> {
    const deadline = Date.now() + timeoutMs
    while (!done(this.messages)) {
      if (Date.now() > deadline) throw new Error(`stream stalled with ${JSON.stringify(this.messages)}`)
      const { value, done: ended } = await this.#reader.read()
      if (ended) throw new Error(`stream ended with ${JSON.stringify(this.messages)}`)
      this.#buffer += this.#decoder.decode(value, { stream: true })
      let end: number
      while ((end = this.#buffer.indexOf('\n\n')) >= 0) {
        this.messages.push(parse(this.#buffer.slice(0, end)))
        this.#buffer = this.#buffer.slice(end + 2)
      }
    }
    return this.messages
  }

  /** Resolves when the server ends the stream. */
  async ended(): Promise<void> {
    for (;;) if ((await this.#reader.read()).done) return
  }
}

function parse(block: string): Message {
  const message: Message = {}
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) message.comment = line.slice(1).trim()
    else {
      const colon = line.indexOf(': ')
      const field = line.slice(0, colon) as 'id' | 'event' | 'data'
      message[field] = line.slice(colon + 2)
    }
  }
  return message
}

const events = (messages: Message[]): Message[] => messages.filter((message) => message.event !== undefined)
const data = (message: Message): Record<string, unknown> => JSON.parse(message.data ?? 'null')

let h: Harness
let base: string

beforeAll(async () => {
  h = await openHarness({ app: { heartbeatMs: 50 } })
  base = await h.app.listen({ port: 0, host: '127.0.0.1' })
})

afterAll(async () => {
  await h.close()
})

async function openStream(
  query: string,
  headers: Record<string, string> = {},
): Promise<{ reader: EventReader; response: Response; abort: () => void }> {
  const controller = new AbortController()
  const response = await fetch(`${base}/v1/watch${query}`, { headers, signal: controller.signal })
  expect(response.status).toBe(200)
  return {
    reader: new EventReader(response.body as ReadableStream<Uint8Array>),
    response,
    abort: () => controller.abort(),
  }
}

async function openStreams(): Promise<number> {
  const text = (await h.app.inject({ url: '/metrics' })).body
  return Number(/^meshkv_http_watch_streams (\d+)$/m.exec(text)?.[1])
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('GET /v1/watch', () => {
  it('streams changes under a prefix as server-sent events, with heartbeats, and resumes from Last-Event-ID or ?since=', async () => {
    const { reader, response, abort } = await openStream('?prefix=w/')
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    expect(response.headers.get('x-causal-token')).toMatch(/^c1\./)
    expect(await openStreams()).toBe(1)

    await h.node.put('w/json', { a: 1 })
    await h.node.put('elsewhere', 'not watched')
    await h.node.put('w/bytes', new Uint8Array([1, 2, 3]))
    await h.node.del('w/json')
    await h.node.counter('w/count').incr(2)
    await h.node.set('w/set').add('m')

    const messages = await reader.until(
      (seen) => events(seen).length >= 5 && seen.some((message) => message.comment === 'heartbeat'),
    )
    const seen = events(messages)
    expect(seen.map((message) => message.event)).toEqual(['put', 'put', 'del', 'counter', 'set.add'])
    expect(seen.map((message) => message.id)).toEqual(seen.map((message) => data(message)['cursor']))
    const common = {
      origin: 'local',
      node: h.node.nodeId,
      hlc: { wallMs: expect.any(Number), logical: expect.any(Number) },
      cursor: expect.any(String),
    }
    expect(seen.map(data)).toEqual([
      { ...common, type: 'put', key: 'w/json', contentType: 'application/json', value: { a: 1 } },
      { ...common, type: 'put', key: 'w/bytes', contentType: 'application/octet-stream', valueBase64: 'AQID' },
      { ...common, type: 'del', key: 'w/json' },
      { ...common, type: 'counter', name: 'w/count', delta: 2 },
      { ...common, type: 'set.add', name: 'w/set', member: 'm' },
    ])
    abort()
    // The server stops following once the client has gone.
    await eventually(async () => (await openStreams()) === 0)

    const resumed = await openStream('?prefix=w/', { 'last-event-id': seen[1]?.id as string })
    const replay = events(await resumed.reader.until((got) => events(got).length >= 3))
    expect(replay.map((message) => message.id)).toEqual(seen.slice(2).map((message) => message.id))
    resumed.abort()

    const since = await openStream(`?prefix=w/&since=${seen[0]?.id as string}`)
    const fromSince = events(await since.reader.until((got) => events(got).length >= 4))
    expect(fromSince.map((message) => message.id)).toEqual(seen.slice(1).map((message) => message.id))
    // Still live after the replay.
    await h.node.put('w/later', 'text now')
    const live = events(await since.reader.until((got) => events(got).length >= 5))
    expect(data(live[4] as Message)).toMatchObject({
      type: 'put',
      key: 'w/later',
      contentType: 'text/plain; charset=utf-8',
      value: 'text now',
    })
    since.abort()
    await eventually(async () => (await openStreams()) === 0)
  })

  it('resumes inside a change of several events without repeating or losing any', async () => {
    const { reader, abort } = await openStream('?prefix=multi')
    await h.node.set('multi').update({ add: ['x', 'y', 'z'] })
    const seen = events(await reader.until((got) => events(got).length >= 3))
    abort()
    const resumed = await openStream('?prefix=multi', { 'last-event-id': seen[0]?.id as string })
    const rest = events(await resumed.reader.until((got) => events(got).length >= 2))
    expect(rest.map((message) => data(message)['member'])).toEqual(
      seen.slice(1).map((message) => data(message)['member']),
    )
    resumed.abort()
  })

  it('refuses a cursor this node never made, before streaming', async () => {
    expectProblem(await h.app.inject({ url: '/v1/watch?since=abc' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(
      await h.app.inject({ url: '/v1/watch', headers: { 'last-event-id': '-1' } }),
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
  })
})

describe('GET /v1/watch, edge cases', () => {
  it('answers 410 MESHKV_ERR_CURSOR_EXPIRED when the log no longer holds the cursor', async () => {
    await h.node.put('expired/a', 1)
    await h.node.put('expired/b', 2)
    // The store purges its log only once replication makes entries stable, so stand in a node
    // whose watch reports an expired cursor, the way the store does.
    const node = withWatch(h.node, async function* () {
      yield* []
      throw new MeshError('MESHKV_ERR_CURSOR_EXPIRED', 'the log no longer holds entries after 1')
    })
    const app = await buildApp(node)
    try {
      expectProblem(await app.inject({ url: '/v1/watch?since=1' }), 'MESHKV_ERR_CURSOR_EXPIRED')
      expectProblem(
        await app.inject({ url: '/v1/watch', headers: { 'last-event-id': '1' } }),
        'MESHKV_ERR_CURSOR_EXPIRED',
      )
      expect((await app.inject({ url: '/livez' })).statusCode).toBe(200)
    } finally {
      await closeApp(app)
    }
  })

  it('closeApp ends open streams and then closes', async () => {
    const own = await openHarness({ app: { heartbeatMs: 1000 } })
    try {
      const address = await own.app.listen({ port: 0, host: '127.0.0.1' })
      const response = await fetch(`${address}/v1/watch`)
      const reader = new EventReader(response.body as ReadableStream<Uint8Array>)
      await own.node.put('k', 'v')
      await reader.until((got) => events(got).length === 1)
      await closeApp(own.app)
      await reader.ended()
    } finally {
      await own.close()
    }
  })
})

/** The node, with `watch` replaced (other members bound to the real node, private fields and all). */
function withWatch(node: MeshNode, watch: () => AsyncGenerator<WatchEvent>): MeshNode {
  return new Proxy(node, {
    get(target, property) {
      if (property === 'watch') return watch
      const value = Reflect.get(target, property, target) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
