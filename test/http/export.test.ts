/**
 * `GET /v1/export` on one real node (LevelDB) through inject: the NDJSON its readers check (a
 * header, one entry per state, a trailer whose counts and SHA-256 match), the reserved sets only
 * for an admin without a prefix (which is what makes an export full), a prefix-limited token held
 * to its prefix, and the one snapshot: a write made while an export is read is not in it.
 */
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ExportReader } from '../../src/api/index.js'
import { docEdit } from '../helpers/ydoc.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

const ROOT = 'the-root-token-of-the-export-tests'
let h: Harness
const tokens: Record<'read' | 'prefixed', string> = { read: '', prefixed: '' }

beforeAll(async () => {
  h = await openHarness({ app: { rootToken: ROOT } })
  tokens.read = (await h.node.tokens.create({ role: 'read' })).token
  tokens.prefixed = (await h.node.tokens.create({ role: 'read', prefix: 'app-' })).token
  await h.node.put('app-k', 'text', { contentType: 'text/plain' })
  await h.node.put('other', new Uint8Array([0, 1, 255]))
  await h.node.counter('app-c').incr(-7)
  await h.node.set('app-s').add('x')
  await h.node.set('app-s').add('y')
  await h.node.applyDocUpdate('app-d', docEdit(1, 'hello'))
})

afterAll(async () => {
  await h.close()
})

async function exported(token: string, query = ''): Promise<{ status: number; lines: Record<string, unknown>[] }> {
  const response = await h.app.inject({ url: `/v1/export${query}`, headers: { authorization: `Bearer ${token}` } })
  if (response.statusCode !== 200) return { status: response.statusCode, lines: [] }
  expect(response.headers['content-type']).toMatch(/^application\/x-ndjson/)
  // Every line passes the reader, trailer and digest included.
  const reader = new ExportReader(createHash('sha256'))
  const texts = response.body.trimEnd().split('\n')
  for (const text of texts) reader.line(text)
  reader.finish()
  return { status: 200, lines: texts.map((text) => JSON.parse(text) as Record<string, unknown>) }
}

const keysOf = (lines: Record<string, unknown>[]): string[] =>
  lines.slice(1, -1).map((line) => `${line['space']} ${line['key']}`)

describe('GET /v1/export', () => {
  it('an admin without a prefix gets every state, the reserved sets too: a full export', async () => {
    const { lines } = await exported(ROOT)
    expect(lines[0]).toMatchObject({ format: 'meshkv-export', version: 1, node: h.node.nodeId, full: true, prefix: '' })
    expect(lines[0]?.['vc']).toEqual(h.node.vc)
    const keys = keysOf(lines)
    expect(keys).toEqual(expect.arrayContaining(['kv app-k', 'kv other', 'counter app-c', 'set app-s', 'doc app-d']))
    expect(
      keys.some((key) => key.startsWith('set \u0000')),
      'the token set',
    ).toBe(true)
    expect(lines.find((line) => line['key'] === 'app-c')).toMatchObject({ value: -7 })
    expect(lines.find((line) => line['key'] === 'other')).toMatchObject({
      value: Buffer.from([0, 1, 255]).toString('base64'),
      contentType: 'application/octet-stream',
    })
  })

  it('a read token gets the keys without the reserved sets: not full', async () => {
    const { lines } = await exported(tokens.read)
    expect(lines[0]).toMatchObject({ full: false })
    expect(keysOf(lines).sort()).toEqual(['counter app-c', 'doc app-d', 'kv app-k', 'kv other', 'set app-s'])
  })

  it('a prefix-limited token exports its prefix only, and is refused without one', async () => {
    const { lines } = await exported(tokens.prefixed, '?prefix=app-&types=kv,set')
    expect(keysOf(lines)).toEqual(['kv app-k', 'set app-s'])
    expect((await exported(tokens.prefixed)).status).toBe(403)
    const bad = await h.app.inject({ url: '/v1/export?types=kv,tables', headers: { authorization: `Bearer ${ROOT}` } })
    expectProblem(bad, 'MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('holds a stream place: with every place taken by a watch, an export is 503 BUSY', async () => {
    const small = await openHarness({ app: { watchStreamsMax: 1 } })
    try {
      const base = await small.app.listen({ port: 0, host: '127.0.0.1' })
      const watching = new AbortController()
      expect((await fetch(`${base}/v1/watch`, { signal: watching.signal })).status).toBe(200)
      expectProblem(await small.app.inject({ url: '/v1/export' }), 'MESHKV_ERR_BUSY')
      watching.abort()
      await vi.waitFor(async () => expect((await small.app.inject({ url: '/v1/export' })).statusCode).toBe(200))
    } finally {
      await small.close()
    }
  })

  it('is one snapshot: a write made while the export is read is not in it', async () => {
    const lines = h.node.export({ reserved: true })
    const first = await lines.next()
    const header = JSON.parse(first.value as string) as { vc: Record<string, number>; keys: number }
    await h.node.put('app-late', 'after the snapshot')
    const rest: string[] = []
    for await (const line of lines) rest.push(line)
    expect(rest.some((line) => line.includes('app-late'))).toBe(false)
    expect(rest.length).toBe(header.keys + 1)
    expect(header.vc).not.toEqual(h.node.vc)
  })
})
