import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeCausalToken } from '../../src/clock/index.js'
import type { NodeId } from '../../src/clock/index.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness, quoted } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
})

afterAll(async () => {
  await h.close()
})

async function put(key: string, payload: string | Buffer, headers: Record<string, string> = {}) {
  return h.app.inject({ method: 'PUT', url: `/v1/kv/${key}`, payload, headers })
}

describe('PUT /v1/kv/*', () => {
  it('stores the raw bytes and content type, and answers key, version, token with ETag and X-Causal-Token', async () => {
    const response = await put('greeting', '{"hello": "world"}', { 'content-type': 'application/json' })
    expect(response.statusCode).toBe(200)
    const body = response.json()
    expect(body).toEqual({
      key: 'greeting',
      version: expect.stringMatching(/^v1\./),
      token: expect.stringMatching(/^c1\./),
    })
    expect(response.headers['etag']).toBe(quoted(body.version))
    expect(response.headers['x-causal-token']).toBe(body.token)

    const read = await h.app.inject({ url: '/v1/kv/greeting' })
    expect(read.statusCode).toBe(200)
    // The bytes as sent, whitespace and all: stored, not re-encoded.
    expect(read.body).toBe('{"hello": "world"}')
    expect(read.headers['content-type']).toBe('application/json')
    expect(read.headers['etag']).toBe(quoted(body.version))
    expect(read.headers['x-siblings']).toBeUndefined()
    expect(read.headers['x-causal-token']).toBe(h.node.token())
  })

  it('stores bytes of any content type, and application/octet-stream when none is sent', async () => {
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe])
    expect((await put('bin/typed', bytes, { 'content-type': 'image/png' })).statusCode).toBe(200)
    const typed = await h.app.inject({ url: '/v1/kv/bin/typed' })
    expect(typed.headers['content-type']).toBe('image/png')
    expect(typed.rawPayload.equals(bytes)).toBe(true)

    expect((await put('bin/untyped', bytes)).statusCode).toBe(200)
    const untyped = await h.app.inject({ url: '/v1/kv/bin/untyped' })
    expect(untyped.headers['content-type']).toBe('application/octet-stream')
    expect(untyped.rawPayload.equals(bytes)).toBe(true)

    const bare = await h.app.inject({ method: 'PUT', url: '/v1/kv/bin/bare', payload: 'no type sent' })
    expect(bare.statusCode).toBe(200)
    expect((await h.app.inject({ url: '/v1/kv/bin/bare' })).headers['content-type']).toBe('application/octet-stream')

    expect((await h.app.inject({ method: 'PUT', url: '/v1/kv/bin/empty' })).statusCode).toBe(200)
    const empty = await h.app.inject({ url: '/v1/kv/bin/empty' })
    expect(empty.statusCode).toBe(200)
    expect(empty.rawPayload.length).toBe(0)
    expect(empty.headers['content-type']).toBe('application/octet-stream')

    expect((await put('text/plain', 'héllo', { 'content-type': 'text/plain; charset=utf-8' })).statusCode).toBe(200)
    const text = await h.app.inject({ url: '/v1/kv/text/plain' })
    expect(text.body).toBe('héllo')
    expect(text.headers['content-type']).toBe('text/plain; charset=utf-8')
  })

  it('refuses a body declared as JSON that is not JSON, and stores nothing', async () => {
    for (const [payload, type] of [
      ['{bad', 'application/json'],
      ['', 'application/json'],
      ['{"a":1', 'application/merge-patch+json'],
      [Buffer.from([0x22, 0xff, 0x22]), 'application/json; charset=utf-8'],
    ] as const) {
      expectProblem(await put('json/bad', payload, { 'content-type': type }), 'MESHKV_ERR_MALFORMED_JSON')
    }
    expectProblem(await h.app.inject({ url: '/v1/kv/json/bad' }), 'MESHKV_ERR_NOT_FOUND')
    // A JSON key named like a prototype is stored as any other.
    expect(
      (await put('json/ok', '{"__proto__": {"polluted": true}}', { 'content-type': 'application/json' })).statusCode,
    ).toBe(200)
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
  })

  it('takes keys with slashes, percent-encoding, unicode and prototype names', async () => {
    const keys = [
      '__proto__',
      'constructor',
      'a/b/c',
      '/leading',
      'trailing/',
      'with space',
      'q?mark',
      'hash#tag',
      '100%',
      'plus+sign',
      'ü/☃/🦀',
    ]
    for (const key of keys) {
      const response = await put(encodeURIComponent(key), `value of ${key}`, { 'content-type': 'text/plain' })
      expect({ key, status: response.statusCode }).toEqual({ key, status: 200 })
      expect(response.json().key).toBe(key)
    }
    for (const key of keys) {
      const response = await h.app.inject({ url: `/v1/kv/${encodeURIComponent(key)}` })
      expect({ key, body: response.body }).toEqual({ key, body: `value of ${key}` })
    }
    // A slash need not be encoded: the key is the rest of the path.
    const raw = await h.app.inject({ url: '/v1/kv/a/b/c' })
    expect(raw.body).toBe('value of a/b/c')
    expect((await h.node.get('__proto__'))?.contentType).toBe('text/plain')
    const listed = await h.app.inject({ url: '/v1/kv?prefix=__' })
    expect(listed.json().items.map((item: { key: string }) => item.key)).toEqual(['__proto__'])
  })

  it('refuses an empty key, a key that is not UTF-8, and a key over the limit', async () => {
    expectProblem(await put('', 'x'), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await h.app.inject({ url: '/v1/kv/' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await h.app.inject({ method: 'DELETE', url: '/v1/kv/' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await put('%FF', 'x'), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await put('bad%', 'x'), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await put('%ED%A0%80', 'x'), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await put('k'.repeat(h.node.limits.keyBytesMax + 1), 'x'), 'MESHKV_ERR_KEY_TOO_LARGE')
    expect((await put('k'.repeat(h.node.limits.keyBytesMax), 'x')).statusCode).toBe(200)
  })

  it('answers 413 MESHKV_ERR_VALUE_TOO_LARGE for a 2 MiB value, then goes on serving', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 0x61)
    expectProblem(await put('big', big), 'MESHKV_ERR_VALUE_TOO_LARGE')
    expectProblem(await put('big', big, { 'content-type': 'application/json' }), 'MESHKV_ERR_VALUE_TOO_LARGE')
    expectProblem(await h.app.inject({ url: '/v1/kv/big' }), 'MESHKV_ERR_NOT_FOUND')
    const atLimit = Buffer.alloc(h.node.limits.valueBytesMax, 0x62)
    expect((await put('big', atLimit)).statusCode).toBe(200)
    expect((await h.app.inject({ url: '/v1/kv/big' })).rawPayload.length).toBe(h.node.limits.valueBytesMax)
  })

  it('takes a write concern this single node can meet (1, quorum, all) and refuses one it cannot, before writing', async () => {
    expect((await put('w?w=1&timeout_ms=100', 'x')).statusCode).toBe(200)
    expect((await put('w?w=quorum', 'y')).statusCode).toBe(200)
    expect((await put('w?w=all', 'z')).statusCode).toBe(200)
    const before = h.node.status().lsn
    expectProblem(await put('w?w=2', 'never'), 'MESHKV_ERR_INVALID_ARGUMENT')
    expect(h.node.status().lsn).toBe(before)
    expectProblem(await put('w?w=0', 'x'), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await put('w?w=some', 'x'), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await put('w?timeout_ms=-1', 'x'), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await h.app.inject({ method: 'DELETE', url: '/v1/kv/w?w=3' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expect((await h.app.inject({ url: '/v1/kv/w' })).body).toBe('z')
  })

  it('takes a read concern this single node can meet on keys, counters and sets, and refuses a malformed one', async () => {
    await put('r', 'here')
    await h.app.inject({ method: 'POST', url: '/v1/counters/r', payload: '' })
    for (const r of ['1', 'quorum', 'all']) {
      expect((await h.app.inject({ url: `/v1/kv/r?r=${r}` })).body).toBe('here')
      expect((await h.app.inject({ url: `/v1/counters/r?r=${r}` })).json()).toEqual({ name: 'r', value: 1 })
      expect((await h.app.inject({ url: `/v1/sets/r?r=${r}` })).json()).toEqual({ name: 'r', members: [] })
    }
    for (const r of ['0', 'most', '10000', '1.5']) {
      expectProblem(await h.app.inject({ url: `/v1/kv/r?r=${r}` }), 'MESHKV_ERR_INVALID_ARGUMENT')
      expectProblem(await h.app.inject({ url: `/v1/counters/r?r=${r}` }), 'MESHKV_ERR_INVALID_ARGUMENT')
    }
  })

  it('refuses a content type the node cannot store', async () => {
    expectProblem(await put('ct', 'x', { 'content-type': `text/${'x'.repeat(300)}` }), 'MESHKV_ERR_INVALID_ARGUMENT')
  })
})

describe('preconditions', () => {
  it('If-None-Match: * writes only a missing key', async () => {
    const first = await put('pre/new', 'one', { 'if-none-match': '*' })
    expect(first.statusCode).toBe(200)
    expectProblem(await put('pre/new', 'two', { 'if-none-match': '*' }), 'MESHKV_ERR_PRECONDITION_FAILED')
    expect((await h.app.inject({ url: '/v1/kv/pre/new' })).body).toBe('one')
    expectProblem(
      await put('pre/new', 'two', { 'if-none-match': quoted(first.json().version) }),
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
  })

  it('If-Match: "<version>" writes only at that version; If-Match: * only an existing key', async () => {
    const first = (await put('pre/match', 'one')).json()
    const second = await put('pre/match', 'two', { 'if-match': quoted(first.version) })
    expect(second.statusCode).toBe(200)
    const stale = expectProblem(
      await put('pre/match', 'three', { 'if-match': quoted(first.version) }),
      'MESHKV_ERR_PRECONDITION_FAILED',
    )
    expect(stale['details']).toEqual({ current: second.json().version })
    expect((await put('pre/match', 'three', { 'if-match': '*' })).statusCode).toBe(200)
    expectProblem(await put('pre/missing', 'x', { 'if-match': '*' }), 'MESHKV_ERR_PRECONDITION_FAILED')
    expectProblem(
      await put('pre/missing', 'x', { 'if-match': quoted(first.version) }),
      'MESHKV_ERR_PRECONDITION_FAILED',
    )
    expectProblem(await put('pre/match', 'x', { 'if-match': '"not-a-version"' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(
      await put('pre/match', 'x', { 'if-match': `${quoted(first.version)}, ${quoted(first.version)}` }),
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
    expect((await h.app.inject({ url: '/v1/kv/pre/match' })).body).toBe('three')
  })

  it('DELETE honours If-Match', async () => {
    const first = (await put('pre/del', 'one')).json()
    await put('pre/del', 'two')
    expectProblem(
      await h.app.inject({ method: 'DELETE', url: '/v1/kv/pre/del', headers: { 'if-match': quoted(first.version) } }),
      'MESHKV_ERR_PRECONDITION_FAILED',
    )
    const current = await h.app.inject({ url: '/v1/kv/pre/del' })
    const deleted = await h.app.inject({
      method: 'DELETE',
      url: '/v1/kv/pre/del',
      headers: { 'if-match': current.headers['etag'] as string },
    })
    expect(deleted.statusCode).toBe(200)
    expectProblem(
      await h.app.inject({ method: 'DELETE', url: '/v1/kv/pre/del', headers: { 'if-match': '*' } }),
      'MESHKV_ERR_PRECONDITION_FAILED',
    )
  })

  it('GET with If-None-Match answers 304 when the version is current', async () => {
    const version = (await put('pre/cache', 'cached')).json().version
    const fresh = await h.app.inject({ url: '/v1/kv/pre/cache', headers: { 'if-none-match': quoted(version) } })
    expect(fresh.statusCode).toBe(304)
    expect(fresh.body).toBe('')
    expect(fresh.headers['etag']).toBe(quoted(version))
    expect(fresh.headers['x-causal-token']).toMatch(/^c1\./)
    expect(
      (await h.app.inject({ url: '/v1/kv/pre/cache', headers: { 'if-none-match': `W/"v1.AA", ${quoted(version)}` } }))
        .statusCode,
    ).toBe(304)
    expect((await h.app.inject({ url: '/v1/kv/pre/cache', headers: { 'if-none-match': '*' } })).statusCode).toBe(304)
    await put('pre/cache', 'changed')
    const changed = await h.app.inject({ url: '/v1/kv/pre/cache', headers: { 'if-none-match': quoted(version) } })
    expect(changed.statusCode).toBe(200)
    expect(changed.body).toBe('changed')
  })
})

describe('DELETE /v1/kv/*', () => {
  it('deletes, answers the token, and 404s when there is nothing to delete', async () => {
    await put('del/me', 'x')
    const response = await h.app.inject({ method: 'DELETE', url: '/v1/kv/del/me' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ key: 'del/me', deleted: true, token: expect.stringMatching(/^c1\./) })
    expect(response.headers['x-causal-token']).toBe(response.json().token)
    expectProblem(await h.app.inject({ url: '/v1/kv/del/me' }), 'MESHKV_ERR_NOT_FOUND')
    expectProblem(await h.app.inject({ method: 'DELETE', url: '/v1/kv/del/me' }), 'MESHKV_ERR_NOT_FOUND')
    expectProblem(await h.app.inject({ method: 'DELETE', url: '/v1/kv/del/never' }), 'MESHKV_ERR_NOT_FOUND')
  })
})

describe('siblings', () => {
  it('a write with an old X-Context keeps what it did not see: X-Siblings and ?siblings=true show them all', async () => {
    const first = (await put('sib', 'first', { 'content-type': 'text/plain' })).json()
    await put('sib', '{"n":2}', { 'content-type': 'application/json' })
    // A delete that saw only the first write: a tombstone beside the second.
    expect(
      (await h.app.inject({ method: 'DELETE', url: '/v1/kv/sib', headers: { 'x-context': first.version } })).statusCode,
    ).toBe(200)
    // The newest sibling is the delete: the key reads as deleted.
    expect((await h.app.inject({ url: '/v1/kv/sib' })).statusCode).toBe(404)
    // A write that saw only the first write keeps the second; the delete it follows is over.
    const third = await put('sib', Buffer.from([1, 2, 3]), {
      'x-context': quoted(first.version),
      'content-type': 'application/x-thing',
    })
    expect(third.statusCode).toBe(200)

    const read = await h.app.inject({ url: '/v1/kv/sib' })
    expect(read.statusCode).toBe(200)
    expect(read.headers['x-siblings']).toBe('2')
    expect(read.headers['content-type']).toBe('application/x-thing')
    expect(read.headers['etag']).toBe(quoted(third.json().version))

    const all = await h.app.inject({ url: '/v1/kv/sib?siblings=true' })
    expect(all.statusCode).toBe(200)
    expect(all.headers['content-type']).toMatch(/^application\/json/)
    const body = all.json()
    expect(body.key).toBe('sib')
    expect(body.version).toBe(third.json().version)
    const hlc = { wallMs: expect.any(Number), logical: expect.any(Number) }
    expect(body.siblings).toEqual(
      expect.arrayContaining([
        { contentType: 'application/json', deleted: false, hlc, node: h.node.nodeId, value: { n: 2 } },
        { contentType: 'application/x-thing', deleted: false, hlc, node: h.node.nodeId, valueBase64: 'AQID' },
      ]),
    )
    expect(body.siblings).toHaveLength(2)

    // A write with the version read replaces them all.
    const merged = await put('sib', 'merged', { 'x-context': read.headers['etag'] as string })
    expect(merged.statusCode).toBe(200)
    const after = await h.app.inject({ url: '/v1/kv/sib' })
    expect(after.headers['x-siblings']).toBeUndefined()
    expect(after.body).toBe('merged')
    expectProblem(await put('sib', 'x', { 'x-context': 'garbage' }), 'MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('shows text siblings as text, and takes the flag as true, 1 or bare', async () => {
    await put('sib/text', 'plain words', { 'content-type': 'text/markdown' })
    for (const flag of ['siblings=true', 'siblings=1', 'siblings']) {
      const body = (await h.app.inject({ url: `/v1/kv/sib/text?${flag}` })).json()
      expect(body.siblings).toEqual([expect.objectContaining({ contentType: 'text/markdown', value: 'plain words' })])
    }
    for (const flag of ['siblings=false', 'siblings=0'])
      expect((await h.app.inject({ url: `/v1/kv/sib/text?${flag}` })).body).toBe('plain words')
    expectProblem(await h.app.inject({ url: '/v1/kv/sib/text?siblings=yes' }), 'MESHKV_ERR_INVALID_ARGUMENT')
  })
})

describe('reads after a causal token', () => {
  function tokenAhead(by: number): string {
    const seq = h.node.vc[h.node.nodeId] ?? 0
    return encodeCausalToken({ [h.node.nodeId]: seq + by } as Record<NodeId, number>)
  }

  it('waits for the token (as ?after= or X-Causal-Token) until the node has seen it', async () => {
    await put('after/a', 'old')
    const pending = h.app.inject({ url: `/v1/kv/after/a?after=${tokenAhead(1)}&timeout_ms=5000` })
    const pendingHeader = h.app.inject({
      url: '/v1/kv/after/a?timeout_ms=5000',
      headers: { 'x-causal-token': tokenAhead(1) },
    })
    await new Promise((resolve) => setTimeout(resolve, 50))
    await put('after/a', 'new')
    expect((await pending).body).toBe('new')
    expect((await pendingHeader).body).toBe('new')
  })

  it('answers 504 MESHKV_ERR_READ_TIMEOUT when the node does not catch up in time', async () => {
    const foreign = encodeCausalToken({ ['0123456789abcdef' as NodeId]: 3 })
    expectProblem(
      await h.app.inject({ url: `/v1/kv/after/a?after=${foreign}&timeout_ms=30` }),
      'MESHKV_ERR_READ_TIMEOUT',
    )
    expectProblem(
      await h.app.inject({ url: '/v1/kv/after/a?timeout_ms=30', headers: { 'x-causal-token': foreign } }),
      'MESHKV_ERR_READ_TIMEOUT',
    )
    expectProblem(await h.app.inject({ url: `/v1/kv?after=${foreign}&timeout_ms=30` }), 'MESHKV_ERR_READ_TIMEOUT')
  })

  it('refuses a malformed token and a bad timeout', async () => {
    expectProblem(await h.app.inject({ url: '/v1/kv/after/a?after=nonsense' }), 'MESHKV_ERR_INVALID_TOKEN')
    expectProblem(
      await h.app.inject({ url: '/v1/kv/after/a', headers: { 'x-causal-token': 'c1.@@' } }),
      'MESHKV_ERR_INVALID_TOKEN',
    )
    expectProblem(await h.app.inject({ url: '/v1/kv/after/a?timeout_ms=soon' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await h.app.inject({ url: '/v1/kv/after/a?timeout_ms=99999999' }), 'MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('a token from a write, sent back, answers at once', async () => {
    const token = (await put('after/b', 'mine')).json().token
    const read = await h.app.inject({ url: '/v1/kv/after/b', headers: { 'x-causal-token': token } })
    expect(read.body).toBe('mine')
  })
})

describe('HEAD /v1/kv/*', () => {
  it('answers the headers of a GET without the body', async () => {
    await put('head', 'body', { 'content-type': 'text/plain' })
    const response = await h.app.inject({ method: 'HEAD', url: '/v1/kv/head' })
    expect(response.statusCode).toBe(200)
    expect(response.body).toBe('')
    expect(response.headers['etag']).toMatch(/^"v1\./)
    expect(response.headers['x-causal-token']).toMatch(/^c1\./)
  })
})
