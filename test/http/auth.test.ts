/**
 * Auth on the HTTP face (src/http/auth.ts): one table row per registered route, asked by every
 * kind of caller (no token, a wrong one, read, write, admin, a write token limited to a prefix,
 * inside and outside it, and the root token), with the status each must get. The table must name
 * every route the app registers, so a new route without a row fails here. Then: revocation,
 * the challenge header, create bodies, prefix-limited admins, metrics, and tokens kept out of logs.
 */
import { Writable } from 'node:stream'
import type { FastifyInstance, InjectOptions } from 'fastify'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/http/app.js'
import { routeAccessTable } from '../../src/http/auth.js'
import { meshCodeOf } from '../helpers/async.js'
import type { Call, Who } from './access-table.js'
import { ALL_ROWS, PREFIX, ROOT, WHO, expectRowAnswers } from './access-table.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness
const tokens: Partial<Record<Who, string>> = {}

beforeAll(async () => {
  h = await openHarness({ app: { rootToken: ROOT } })
  await h.app.ready()
  tokens.root = ROOT
  tokens.wrong = `mkv_${'0'.repeat(16)}_${'A'.repeat(43)}`
  for (const role of ['read', 'write', 'admin'] as const) tokens[role] = (await h.node.tokens.create({ role })).token
  tokens.prefixed = (await h.node.tokens.create({ role: 'write', prefix: PREFIX })).token
  await h.node.put('app-k', 'v')
  await h.node.put('other-k', 'v')
})

afterAll(async () => {
  await h.close()
})

function bearer(who: Who): Record<string, string> {
  const token = tokens[who]
  return token === undefined ? {} : { authorization: `Bearer ${token}` }
}

function send(app: FastifyInstance, method: string, call: Call, headers: Record<string, string>) {
  const options: InjectOptions = { method: method as InjectOptions['method'], url: call.url, headers: { ...headers } }
  if (typeof call.body === 'string') {
    options.payload = call.body
    options.headers = { ...options.headers, 'content-type': 'text/plain' }
  } else if (call.body !== undefined) options.payload = call.body as InjectOptions['payload']
  return app.inject(options)
}

describe('the access table', () => {
  it('has one row for every route the app registers', () => {
    const rows = ALL_ROWS.map((row) => `${row.method} ${row.route}`)
    expect(new Set(rows).size).toBe(rows.length)
    const registered = routeAccessTable(h.app).map((route) => `${route.method} ${route.url}`)
    expect([...registered].sort()).toEqual([...rows].sort())
    // fastify's own listing has as many method entries: no route escaped the access check.
    const listed = [...h.app.printRoutes({ commonPrefix: false }).matchAll(/\(([A-Z, ]+)\)/g)]
    expect(listed.flatMap((match) => (match[1] as string).split(', ')).length).toBe(registered.length)
  })

  it("each route's declared access is the table's", () => {
    const declared = routeAccessTable(h.app).map((route) => `${route.method} ${route.url} ${route.access}`)
    expect(declared.sort()).toEqual(ALL_ROWS.map((row) => `${row.method} ${row.route} ${row.access}`).sort())
  })

  for (const row of ALL_ROWS) {
    it(`${row.method} ${row.route}`, async () => {
      await expectRowAnswers(
        row,
        (call, who) =>
          send(h.app, row.method, call, bearer(who)).then((response) =>
            Object.assign(response, { status: response.statusCode }),
          ),
        (response, status) =>
          expectProblem(response, status === 401 ? 'MESHKV_ERR_UNAUTHENTICATED' : 'MESHKV_ERR_FORBIDDEN'),
      )
    })
  }

  it('an unmatched route answers 401 without a token and 404 with one', async () => {
    for (const who of WHO) {
      const response = await h.app.inject({ url: '/v1/nope', headers: bearer(who) })
      expect({ who, status: response.statusCode }).toEqual({
        who,
        status: who === 'none' || who === 'wrong' ? 401 : 404,
      })
    }
  })

  it('a prefix-limited token lists a range only under a prefix of its own', async () => {
    const headers = bearer('prefixed')
    const list = (url: string) => h.app.inject({ url, headers }).then((response) => response.statusCode)
    expect(await list('/v1/kv?start=a&end=z')).toBe(403)
    expect(await list('/v1/kv?prefix=app-&start=app-a&end=app-z')).toBe(200)
    expect(await list('/v1/kv?prefix=ap')).toBe(403)
    expect(await list('/v1/kv?prefix=app-deeper')).toBe(200)
  })
})

describe('authentication', () => {
  it('a 401 is a problem with the Bearer challenge', async () => {
    for (const authorization of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      'Basic abc',
      `Token ${ROOT}`,
      `Bearer ${ROOT}x`,
      `Bearer ${ROOT} ${ROOT}`,
    ]) {
      const response = await h.app.inject({
        url: '/v1/kv/app-k',
        headers: authorization === undefined ? {} : { authorization },
      })
      expectProblem(response, 'MESHKV_ERR_UNAUTHENTICATED')
      expect(response.headers['www-authenticate']).toBe('Bearer realm="meshkv"')
    }
  })

  it('the scheme is case-insensitive; the token is not', async () => {
    expect((await h.app.inject({ url: '/v1/kv/app-k', headers: { authorization: `bearer ${ROOT}` } })).statusCode).toBe(
      200,
    )
    const upper = `Bearer ${ROOT.toUpperCase()}`
    expect((await h.app.inject({ url: '/v1/kv/app-k', headers: { authorization: upper } })).statusCode).toBe(401)
  })

  it('a token is refused (401) on the same node as soon as its revocation answers', async () => {
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: bearer('root'),
      payload: { role: 'read', name: 'short-lived' },
    })
    expect(created.statusCode).toBe(201)
    const { id, token } = created.json() as { id: string; token: string }
    const headers = { authorization: `Bearer ${token}` }
    expect((await h.app.inject({ url: '/v1/kv/app-k', headers })).statusCode).toBe(200)
    const revoked = await h.app.inject({ method: 'DELETE', url: `/v1/tokens/${id}`, headers: bearer('root') })
    expect({ status: revoked.statusCode, body: revoked.json() }).toEqual({ status: 200, body: { revoked: id } })
    expectProblem(await h.app.inject({ url: '/v1/kv/app-k', headers }), 'MESHKV_ERR_UNAUTHENTICATED')
    expectProblem(
      await h.app.inject({ method: 'DELETE', url: `/v1/tokens/${id}`, headers: bearer('root') }),
      'MESHKV_ERR_NOT_FOUND',
    )
  })

  it('POST /v1/tokens answers the token once; GET lists it without secret or hash', async () => {
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: bearer('admin'),
      payload: { role: 'write', prefix: 'p/', name: 'ci' },
    })
    expect(created.statusCode).toBe(201)
    const body = created.json() as Record<string, string>
    expect(body).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{16}$/),
      role: 'write',
      prefix: 'p/',
      name: 'ci',
      createdAt: expect.any(String),
      token: expect.stringMatching(/^mkv_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/),
    })
    const listed = await h.app.inject({ url: '/v1/tokens', headers: bearer('admin') })
    const entry = (listed.json() as { tokens: Record<string, unknown>[] }).tokens.find(
      (token) => token['id'] === body['id'],
    )
    expect(entry).toEqual({ id: body['id'], role: 'write', prefix: 'p/', name: 'ci', createdAt: body['createdAt'] })
    expect(listed.body).not.toContain((body['token'] as string).slice(22))
  })

  it('bad create bodies are 400s', async () => {
    const create = (payload: unknown) =>
      h.app.inject({
        method: 'POST',
        url: '/v1/tokens',
        headers: bearer('root'),
        payload: payload as InjectOptions['payload'],
      })
    expectProblem(await create({ role: 'owner' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await create({}), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await create({ role: 'read', extra: 1 }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await create({ role: 'read', prefix: 5 }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await create({ role: 'read', prefix: '' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await create({ role: 'read', prefix: '\u0000meshkv/' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await create({ role: 'read', prefix: 'x'.repeat(2000) }), 'MESHKV_ERR_KEY_TOO_LARGE')
    expectProblem(await create({ role: 'read', name: 'n'.repeat(129) }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expect((await create({ role: 'read', name: 'n'.repeat(128) })).statusCode).toBe(201)
    expectProblem(
      await h.app.inject({ method: 'DELETE', url: '/v1/tokens/not-hex', headers: bearer('root') }),
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
  })

  it('an admin limited to a prefix uses admin routes, but makes tokens only under its prefix', async () => {
    const { token } = await h.node.tokens.create({ role: 'admin', prefix: 'team-' })
    const headers = { authorization: `Bearer ${token}` }
    expect((await h.app.inject({ url: '/v1/status', headers })).statusCode).toBe(200)
    expect((await h.app.inject({ url: '/v1/kv/app-k', headers })).statusCode).toBe(403)
    const create = (payload: object) => h.app.inject({ method: 'POST', url: '/v1/tokens', headers, payload })
    expectProblem(await create({ role: 'admin' }), 'MESHKV_ERR_FORBIDDEN')
    expectProblem(await create({ role: 'read', prefix: 'other-' }), 'MESHKV_ERR_FORBIDDEN')
    expect((await create({ role: 'read', prefix: 'team-a/' })).statusCode).toBe(201)
  })

  it('metrics count 401 and 403 answers by route', async () => {
    await h.app.inject({ url: '/v1/counters/app-c' })
    await h.app.inject({ method: 'POST', url: '/v1/counters/app-c', headers: bearer('read'), payload: {} })
    const text = (await h.app.inject({ url: '/metrics', headers: bearer('root') })).body
    expect(text).toMatch(/meshkv_http_requests_total\{route="\/v1\/counters\/:name",method="GET",status="401"\} [1-9]/)
    expect(text).toMatch(/meshkv_http_requests_total\{route="\/v1\/counters\/:name",method="POST",status="403"\} [1-9]/)
  })

  it('a root token shorter than 16 bytes is a configuration error', async () => {
    expect(await meshCodeOf(buildApp(h.node, { rootToken: 'short' }))).toBe('MESHKV_ERR_CONFIG')
    expect(await meshCodeOf(buildApp(h.node, { rootToken: '' }))).toBe('MESHKV_ERR_CONFIG')
  })

  it('without a root token the app takes every request, as before', async () => {
    const app = await buildApp(h.node)
    try {
      expect((await app.inject({ url: '/v1/kv/app-k' })).statusCode).toBe(200)
      expect((await app.inject({ url: '/v1/tokens' })).statusCode).toBe(200)
    } finally {
      await app.close()
    }
  })
})

describe('logs', () => {
  /** Builds an app whose logger writes to a captured stream, sends requests with every kind of token, and answers the log. */
  async function logsOf(logger: (stream: Writable) => object): Promise<{ text: string; secrets: string[] }> {
    const chunks: string[] = []
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk.toString('utf8'))
        done()
      },
    })
    const app = await buildApp(h.node, { rootToken: ROOT, logger: logger(stream) })
    try {
      const secrets = [ROOT, tokens.read as string, tokens.prefixed as string, tokens.wrong as string]
      for (const secret of secrets) {
        const headers = { authorization: `Bearer ${secret}` }
        await app.inject({ url: '/v1/kv/app-k', headers })
        await app.inject({ method: 'PUT', url: '/v1/kv/other-x', headers, payload: 'v' })
        await app.inject({ url: '/v1/nope', headers })
        // The browser page takes its token in the URL, which request log lines carry.
        await app.inject({ url: `/ui/docs/app-d?token=${encodeURIComponent(secret)}` })
      }
      const created = await app.inject({
        method: 'POST',
        url: '/v1/tokens',
        headers: bearer('root'),
        payload: { role: 'read' },
      })
      return { text: chunks.join(''), secrets: [...secrets, (created.json() as { token: string }).token] }
    } finally {
      await app.close()
    }
  }

  function expectNoSecret({ text, secrets }: { text: string; secrets: string[] }): void {
    for (const secret of secrets) expect(text).not.toContain(secret.slice(-20))
  }

  const headerSerializers = { req: (request: { headers: unknown }) => ({ headers: request.headers }) }

  it('a pino logger at debug never writes a token', async () => {
    const logs = await logsOf((stream) => pino({ level: 'debug' }, stream))
    expect(logs.text).toContain('incoming request')
    expectNoSecret(logs)
  })

  it('a pino logger whose request serializer logs headers has authorization redacted', async () => {
    const logs = await logsOf((stream) => pino({ level: 'debug', serializers: headerSerializers }, stream))
    expect(logs.text).toContain('"authorization":"[Redacted]"')
    expectNoSecret(logs)
  })

  it('logger options whose request serializer logs headers still redact authorization', async () => {
    const logs = await logsOf((stream) => ({ level: 'debug', stream, serializers: headerSerializers }))
    expect(logs.text).toContain('"authorization":"[Redacted]"')
    expectNoSecret(logs)
  })
})
