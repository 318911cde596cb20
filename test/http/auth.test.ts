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
import type { AccessRole } from '../../src/api/access.js'
import { buildApp } from '../../src/http/app.js'
import { routeAccessTable } from '../../src/http/auth.js'
import { meshCodeOf } from '../helpers/async.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

const ROOT = 'the-root-token-of-the-auth-tests'
const PREFIX = 'app-'

type Who = 'none' | 'wrong' | 'read' | 'write' | 'admin' | 'prefixed' | 'root'
const WHO: readonly Who[] = ['none', 'wrong', 'read', 'write', 'admin', 'prefixed', 'root']
const ROLE_OF: Record<Exclude<Who, 'none' | 'wrong'>, AccessRole> = {
  read: 'read',
  write: 'write',
  admin: 'admin',
  prefixed: 'write',
  root: 'admin',
}
const RANK: Record<AccessRole, number> = { read: 0, write: 1, admin: 2 }

interface Call {
  url: string
  body?: unknown
}

interface Row {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE'
  /** The route pattern as fastify registers it. */
  route: string
  access: AccessRole | 'open'
  /** A request inside the prefix, and the status it gets when allowed. */
  inside: Call
  ok: number
  /** A request outside the prefix (key routes only): allowed for unlimited tokens with `ok`. */
  outside?: Call
}

const NOT_A_NODE = 'zz'
const UNKNOWN_TOKEN_ID = '0123456789abcdef'

const ROWS: Row[] = [
  {
    method: 'GET',
    route: '/v1/kv',
    access: 'read',
    inside: { url: '/v1/kv?prefix=app-' },
    ok: 200,
    outside: { url: '/v1/kv' },
  },
  {
    method: 'GET',
    route: '/v1/kv/*',
    access: 'read',
    inside: { url: '/v1/kv/app-k' },
    ok: 200,
    outside: { url: '/v1/kv/other-k' },
  },
  {
    method: 'PUT',
    route: '/v1/kv/*',
    access: 'write',
    inside: { url: '/v1/kv/app-w', body: 'v' },
    ok: 200,
    outside: { url: '/v1/kv/other-w', body: 'v' },
  },
  {
    method: 'DELETE',
    route: '/v1/kv/*',
    access: 'write',
    inside: { url: '/v1/kv/app-never' },
    ok: 404,
    outside: { url: '/v1/kv/other-never' },
  },
  {
    method: 'GET',
    route: '/v1/counters/:name',
    access: 'read',
    inside: { url: '/v1/counters/app-c' },
    ok: 200,
    outside: { url: '/v1/counters/c' },
  },
  {
    method: 'POST',
    route: '/v1/counters/:name',
    access: 'write',
    inside: { url: '/v1/counters/app-c', body: { delta: 1 } },
    ok: 200,
    outside: { url: '/v1/counters/c', body: { delta: 1 } },
  },
  {
    method: 'GET',
    route: '/v1/sets/:name',
    access: 'read',
    inside: { url: '/v1/sets/app-s' },
    ok: 200,
    outside: { url: '/v1/sets/s' },
  },
  {
    method: 'POST',
    route: '/v1/sets/:name',
    access: 'write',
    inside: { url: '/v1/sets/app-s', body: { add: ['x'] } },
    ok: 200,
    outside: { url: '/v1/sets/s', body: { add: ['x'] } },
  },
  // An allowed watch gets as far as the handler, which refuses the cursor: the stream never starts.
  {
    method: 'GET',
    route: '/v1/watch',
    access: 'read',
    inside: { url: '/v1/watch?prefix=app-&since=nope' },
    ok: 400,
    outside: { url: '/v1/watch?since=nope' },
  },
  { method: 'GET', route: '/v1/members', access: 'admin', inside: { url: '/v1/members' }, ok: 200 },
  {
    method: 'DELETE',
    route: '/v1/members/:nodeId',
    access: 'admin',
    inside: { url: `/v1/members/${NOT_A_NODE}` },
    ok: 400,
  },
  { method: 'GET', route: '/v1/status', access: 'admin', inside: { url: '/v1/status' }, ok: 200 },
  { method: 'GET', route: '/v1/digest', access: 'admin', inside: { url: '/v1/digest' }, ok: 200 },
  { method: 'GET', route: '/metrics', access: 'admin', inside: { url: '/metrics' }, ok: 200 },
  {
    method: 'POST',
    route: '/v1/tokens',
    access: 'admin',
    inside: { url: '/v1/tokens', body: { role: 'read', prefix: 'app-t' } },
    ok: 201,
  },
  { method: 'GET', route: '/v1/tokens', access: 'admin', inside: { url: '/v1/tokens' }, ok: 200 },
  {
    method: 'DELETE',
    route: '/v1/tokens/:id',
    access: 'admin',
    inside: { url: `/v1/tokens/${UNKNOWN_TOKEN_ID}` },
    ok: 404,
  },
  { method: 'GET', route: '/livez', access: 'open', inside: { url: '/livez' }, ok: 200 },
  { method: 'GET', route: '/healthz', access: 'open', inside: { url: '/healthz' }, ok: 200 },
  { method: 'GET', route: '/readyz', access: 'open', inside: { url: '/readyz' }, ok: 200 },
  // Peers sign these with the cluster secret; this node has none, so nobody's request is answered.
  {
    method: 'GET',
    route: '/v1/internal/state/:space/*',
    access: 'open',
    inside: { url: '/v1/internal/state/kv/app-k' },
    ok: 401,
  },
]

/** fastify answers HEAD for every GET route; auth treats it like the GET. */
const ALL_ROWS: (Omit<Row, 'method'> & { method: Row['method'] | 'HEAD' })[] = [
  ...ROWS,
  ...ROWS.filter((row) => row.method === 'GET').map((row) => ({ ...row, method: 'HEAD' as const })),
]

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

function expected(row: Row | (typeof ALL_ROWS)[number], who: Who, outside: boolean): number {
  if (row.access === 'open') return row.ok
  if (who === 'none' || who === 'wrong') return 401
  if (RANK[ROLE_OF[who]] < RANK[row.access]) return 403
  if (who === 'prefixed' && outside) return 403
  return row.ok
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
      const got: Record<string, number> = {}
      const want: Record<string, number> = {}
      for (const who of WHO) {
        for (const [where, call] of [
          ['inside', row.inside],
          ['outside', row.outside],
        ] as const) {
          if (call === undefined) continue
          const response = await send(h.app, row.method, call, bearer(who))
          got[`${who} ${where}`] = response.statusCode
          want[`${who} ${where}`] = expected(row, who, where === 'outside')
          // A HEAD answer has no body to check.
          if (row.method === 'HEAD' || row.access === 'open') continue
          if (response.statusCode === 401) expectProblem(response, 'MESHKV_ERR_UNAUTHENTICATED')
          if (response.statusCode === 403) expectProblem(response, 'MESHKV_ERR_FORBIDDEN')
        }
      }
      expect(got).toEqual(want)
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
  function capture(): { stream: Writable; text: () => string } {
    const chunks: string[] = []
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk.toString('utf8'))
        done()
      },
    })
    return { stream, text: () => chunks.join('') }
  }

  /** Requests with every kind of token, allowed and refused, and a token made over HTTP. */
  async function exercise(app: FastifyInstance): Promise<string[]> {
    const secrets = [ROOT, tokens.read as string, tokens.prefixed as string, tokens.wrong as string]
    for (const secret of secrets) {
      const headers = { authorization: `Bearer ${secret}` }
      await app.inject({ url: '/v1/kv/app-k', headers })
      await app.inject({ method: 'PUT', url: '/v1/kv/other-x', headers, payload: 'v' })
      await app.inject({ url: '/v1/nope', headers })
    }
    const created = await app.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: { authorization: `Bearer ${ROOT}` },
      payload: { role: 'read' },
    })
    return [...secrets, (created.json() as { token: string }).token]
  }

  it('a pino logger at debug never writes a token', async () => {
    const { stream, text } = capture()
    const app = await buildApp(h.node, { rootToken: ROOT, logger: pino({ level: 'debug' }, stream) })
    try {
      const secrets = await exercise(app)
      expect(text()).toContain('incoming request')
      for (const secret of secrets) expect(text()).not.toContain(secret.slice(-20))
    } finally {
      await app.close()
    }
  })

  it('logger options whose request serializer logs headers still redact authorization', async () => {
    const { stream, text } = capture()
    const serializers = { req: (request: { headers: unknown }) => ({ headers: request.headers }) }
    const app = await buildApp(h.node, { rootToken: ROOT, logger: { level: 'debug', stream, serializers } })
    try {
      const secrets = await exercise(app)
      expect(text()).toContain('"authorization":"[Redacted]"')
      for (const secret of secrets) expect(text()).not.toContain(secret.slice(-20))
    } finally {
      await app.close()
    }
  })
})
