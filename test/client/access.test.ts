/**
 * MeshClient's way in: the bearer token on every request (watch streams too), 401 and 403 as
 * their codes and never retried on another node, the token routes, `forget` with `force`, and
 * `ca` against a real https server with a certificate made here.
 */
import { createServer as createHttpServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Server as HttpsServer, createServer as createHttpsServer } from 'node:https'
import selfsigned from 'selfsigned'
import { afterEach, describe, expect, it } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { MeshError } from '../../src/errors.js'
import { meshCodeOf, nextWithin, rejectionOf } from '../helpers/async.js'

const TOKEN = 'mkv_0123456789abcdef.s3cr3t-s3cr3t'

interface Seen {
  method: string
  url: string
  authorization: string | undefined
  body: string
}

type Handler = (request: IncomingMessage, response: ServerResponse, body: string) => void

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

/** A real loopback server that records each request (with its Authorization header) and answers with `handler`. */
async function recordingServer(
  handler: Handler,
  server: Server = createHttpServer(),
): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = []
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => (body += chunk))
    request.on('end', () => {
      seen.push({
        method: request.method ?? '',
        url: request.url ?? '',
        authorization: request.headers.authorization,
        body,
      })
      handler(request, response, body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const scheme = server instanceof HttpsServer ? 'https' : 'http'
  return { url: `${scheme}://127.0.0.1:${address.port}`, seen }
}

function json(response: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  response.writeHead(status, { 'content-type': type })
  response.end(JSON.stringify(body))
}

function problem(code: string, status: number): Handler {
  return (_request, response) => {
    if (status === 401) response.setHeader('www-authenticate', 'Bearer realm="meshkv"')
    json(
      response,
      status,
      { type: 'about:blank', title: code, status, detail: 'no entry', code },
      'application/problem+json',
    )
  }
}

/** Answers like a node: writes, reads, listings, a watch stream, the token routes and forget. */
const nodeLike: Handler = (request, response) => {
  const path = (request.url ?? '').split('?')[0] ?? ''
  if (path === '/v1/watch') {
    response.writeHead(200, { 'content-type': 'text/event-stream' })
    response.write('id: 1\nevent: put\ndata: {"key":"k","value":"v"}\n\n')
    return
  }
  if (request.method === 'PUT') return json(response, 200, { key: 'k', version: 'v1.a', token: 'ct1.' })
  if (path === '/v1/kv') return json(response, 200, { items: [], next: null })
  if (path === '/v1/tokens' && request.method === 'POST')
    return json(response, 201, { ...tokenInfo, token: 'mkv_made.secret' })
  if (path === '/v1/tokens') return json(response, 200, { tokens: [tokenInfo] })
  if (path.startsWith('/v1/tokens/')) return json(response, 200, { revoked: path.slice('/v1/tokens/'.length) })
  if (path.startsWith('/v1/members/')) return json(response, 200, { members: [] })
  return problem('MESHKV_ERR_NOT_FOUND', 404)(request, response, '')
}

const tokenInfo = {
  id: '0123456789abcdef',
  role: 'read',
  prefix: 'app/',
  name: null,
  createdAt: '2026-12-06T23:00:00.000Z',
}

describe('the bearer token', () => {
  it('goes with every request, watch streams included; none without a token', async () => {
    const { url, seen } = await recordingServer(nodeLike)
    const client = new MeshClient({ nodes: url, token: TOKEN })
    await client.put('k', 'v')
    expect(await client.get('missing')).toBeUndefined()
    await client.list()
    await client.listTokens()
    const controller = new AbortController()
    const watch = client.watch({ signal: controller.signal })
    expect((await nextWithin(watch, 2_000, 'the first watch event')).value).toMatchObject({ event: 'put' })
    controller.abort()
    await watch.return(undefined)
    expect(seen.map((request) => request.url.split('?')[0])).toEqual([
      '/v1/kv/k',
      '/v1/kv/missing',
      '/v1/kv',
      '/v1/tokens',
      '/v1/watch',
    ])
    expect(seen.map((request) => request.authorization)).toEqual(Array(5).fill(`Bearer ${TOKEN}`))

    await new MeshClient({ nodes: url }).list()
    expect(seen.at(-1)?.authorization).toBeUndefined()
  })

  it('refuses a token a header cannot carry, without quoting it', async () => {
    for (const token of ['', 'two words', 'line\nbreak', 'é', 'x'.repeat(4097), 42]) {
      const error = await rejectionOf(() => new MeshClient({ nodes: 'http://127.0.0.1:1', token: token as string }))
      expect(error).toBeInstanceOf(MeshError)
      expect((error as MeshError).code).toBe('MESHKV_ERR_INVALID_ARGUMENT')
      if (typeof token === 'string' && token.length > 0) expect((error as MeshError).message).not.toContain(token)
    }
  })
})

describe('401 and 403', () => {
  it.each([
    ['MESHKV_ERR_UNAUTHENTICATED', 401],
    ['MESHKV_ERR_FORBIDDEN', 403],
  ] as const)('%s is thrown as it is and not retried on the next node', async (code, status) => {
    const first = await recordingServer(problem(code, status))
    const second = await recordingServer(nodeLike)
    for (const policy of ['sticky', 'round-robin'] as const) {
      const client = new MeshClient({ nodes: [first.url, second.url], policy, token: TOKEN })
      // A read (idempotent, so a network failure would be retried) and a write.
      expect(await meshCodeOf(client.get('k'))).toBe(code)
      if (policy === 'round-robin') continue
      expect(await meshCodeOf(client.put('k', 'v'))).toBe(code)
    }
    expect(first.seen).toHaveLength(3)
    expect(second.seen).toHaveLength(0)
  })

  it('a 401 or 403 without a problem body (a proxy) still gets its code', async () => {
    const bare = await recordingServer((_request, response) => {
      response.writeHead(Number(_request.url?.includes('denied') === true ? 403 : 401), { 'content-type': 'text/html' })
      response.end('<html>go away</html>')
    })
    const client = new MeshClient({ nodes: bare.url })
    expect(await meshCodeOf(client.get('k'))).toBe('MESHKV_ERR_UNAUTHENTICATED')
    expect(await meshCodeOf(client.get('denied'))).toBe('MESHKV_ERR_FORBIDDEN')
  })

  it('an unauthenticated watch fails when it opens', async () => {
    const { url } = await recordingServer(problem('MESHKV_ERR_UNAUTHENTICATED', 401))
    const watch = new MeshClient({ nodes: url }).watch()
    expect(await meshCodeOf(nextWithin(watch, 2_000, 'the refusal'))).toBe('MESHKV_ERR_UNAUTHENTICATED')
  })
})

describe('the token routes and forget', () => {
  it('createToken posts role, prefix and name and returns the CreatedToken', async () => {
    const { url, seen } = await recordingServer(nodeLike)
    const client = new MeshClient({ nodes: url, token: TOKEN })
    const created = await client.createToken({ role: 'read', prefix: 'app/' })
    expect(created).toEqual({ ...tokenInfo, token: 'mkv_made.secret' })
    expect(JSON.parse(seen[0]!.body)).toEqual({ role: 'read', prefix: 'app/' })
    await client.createToken({ role: 'admin', name: 'ops' })
    expect(JSON.parse(seen[1]!.body)).toEqual({ role: 'admin', name: 'ops' })
    expect(await meshCodeOf(client.createToken({ role: 'root' as 'admin' }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(client.createToken({ role: 'read', prefix: 7 as unknown as string }))).toBe(
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
    expect(seen).toHaveLength(2)
  })

  it('listTokens reads the list; revokeToken deletes by id; forget sends force only when asked', async () => {
    const { url, seen } = await recordingServer(nodeLike)
    const client = new MeshClient({ nodes: url })
    expect(await client.listTokens()).toEqual([tokenInfo])
    await client.revokeToken('0123456789abcdef')
    await client.forget('aaaaaaaaaaaaaaaa')
    await client.forget('aaaaaaaaaaaaaaaa', { force: true })
    expect(seen.map((request) => `${request.method} ${request.url}`)).toEqual([
      'GET /v1/tokens',
      'DELETE /v1/tokens/0123456789abcdef',
      'DELETE /v1/members/aaaaaaaaaaaaaaaa',
      'DELETE /v1/members/aaaaaaaaaaaaaaaa?force=true',
    ])
  })

  it('revoking an unknown id is MESHKV_ERR_NOT_FOUND; a malformed list is MESHKV_ERR_DECODE', async () => {
    const { url } = await recordingServer((request, response) =>
      request.method === 'DELETE'
        ? problem('MESHKV_ERR_NOT_FOUND', 404)(request, response, '')
        : json(response, 200, { tokens: [{ ...tokenInfo, role: 'root' }] }),
    )
    const client = new MeshClient({ nodes: url })
    expect(await meshCodeOf(client.revokeToken('ffffffffffffffff'))).toBe('MESHKV_ERR_NOT_FOUND')
    expect(await meshCodeOf(client.listTokens())).toBe('MESHKV_ERR_DECODE')
  })
})

describe('ca: a private CA for https nodes', () => {
  async function httpsNode(): Promise<{ url: string; ca: string; seen: Seen[] }> {
    const pems = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    })
    const server = createHttpsServer({ key: pems.private, cert: pems.cert })
    const { url, seen } = await recordingServer(nodeLike, server)
    return { url, ca: pems.cert, seen }
  }

  it('trusts the CA given (as text or bytes), with the token on the request', async () => {
    const node = await httpsNode()
    expect(node.url).toMatch(/^https:/)
    for (const ca of [node.ca, new TextEncoder().encode(node.ca)]) {
      const client = new MeshClient({ nodes: node.url, ca, token: TOKEN })
      cleanups.push(() => client.close())
      expect(await client.put('k', 'v')).toMatchObject({ version: 'v1.a' })
    }
    expect(node.seen.map((request) => request.authorization)).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`])
  })

  it('without the CA: a clear MESHKV_ERR_UNREACHABLE that names the CA, and nothing was sent', async () => {
    const node = await httpsNode()
    const error = await rejectionOf(new MeshClient({ nodes: node.url }).put('k', 'v'))
    expect(error).toBeInstanceOf(MeshError)
    const meshError = error as MeshError
    expect(meshError.code).toBe('MESHKV_ERR_UNREACHABLE')
    expect(meshError.message).toMatch(/certificate .* is not trusted .*--cacert/)
    // Never delivered: a write would have been tried on the next node.
    expect(meshError.details?.['attempts']).toEqual([expect.objectContaining({ kind: 'not-delivered' })])
    expect(node.seen).toEqual([])
  })

  it('refuses a ca that is not PEM', () => {
    for (const ca of ['not a certificate', 7 as unknown as string])
      expect(() => new MeshClient({ nodes: 'https://127.0.0.1:1', ca })).toThrow(
        expect.objectContaining({ code: 'MESHKV_ERR_INVALID_ARGUMENT' }),
      )
  })
})
