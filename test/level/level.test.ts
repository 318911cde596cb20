/**
 * MeshLevel against abstract-level's own suite (a child process, test/level/abstract-suite.ts),
 * with and without a key prefix and no case excused; and over a shared node and its HTTP app: what
 * Level writes the node and HTTP read, key prefixes, one change per batch, the stored forms of
 * binary keys, the key size limit, and moving keys stored before the key encoding.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MeshNode } from '../../src/node/index.js'
import { MeshLevel } from '../../src/level.js'
import { openHarness } from '../http/helpers.js'

const run = promisify(execFile)

/** The names of the suite's cases that failed, from tape's output. */
function failedCases(tap: string): string[] {
  const failed = new Set<string>()
  let current = ''
  for (const line of tap.split('\n')) {
    if (line.startsWith('# ')) current = line.slice(2)
    else if (line.startsWith('not ok')) failed.add(current)
  }
  return [...failed]
}

async function runSuite(args: string[]): Promise<{ stdout: string; code: number }> {
  return run(process.execPath, ['--import', 'tsx', 'test/level/abstract-suite.ts', ...args], {
    maxBuffer: 64 * 1024 * 1024,
    timeout: 240_000,
  }).then(
    (result) => ({ stdout: result.stdout, code: 0 }),
    (error: { stdout: string; code: number }) => ({ stdout: error.stdout, code: error.code }),
  )
}

describe('MeshLevel', () => {
  // The whole suite, no case excused: as the node's whole key space (what `new MeshLevel({ dir })`
  // gives) and under a key prefix. Both store binary keys, the empty key and keys starting with 0x00.
  it.each([
    { form: 'its own node, no prefix', args: [] },
    { form: 'a key prefix', args: ['l:'] },
  ])(
    "passes abstract-level's own compliance suite in full over $form",
    async ({ args }) => {
      const result = await runSuite(args)
      expect(failedCases(result.stdout)).toEqual([])
      expect(result.code).toBe(0)
      // The suite ran to its end (tape prints its totals last) and made its thousands of checks,
      // has(), hasMany() and aborted iterators among them.
      expect(result.stdout).toMatch(/^# tests\s+\d+/m)
      expect(result.stdout).toMatch(/^# ok$/m)
      expect(result.stdout).toMatch(/^# has\(\) /m)
      expect(result.stdout).toMatch(/with signal yields error when aborted/)
      expect(Number(/^# pass\s+(\d+)/m.exec(result.stdout)?.[1] ?? 0)).toBeGreaterThanOrEqual(4300)
    },
    300_000,
  )

  it('keeps a text key the same key over HTTP, both ways; a binary key is there under its stored form', async () => {
    const h = await openHarness()
    try {
      const db = new MeshLevel<string, string>(h.node)
      await db.put('user:1/café', 'from level')
      const read = await h.app.inject({ method: 'GET', url: `/v1/kv/${encodeURIComponent('user:1/café')}` })
      expect(read.statusCode).toBe(200)
      expect(read.body).toBe('from level')
      const url = `/v1/kv/${encodeURIComponent('user:2/日本')}`
      expect((await h.app.inject({ method: 'PUT', url, payload: 'from http' })).statusCode).toBe(200)
      expect(await db.get('user:2/日本')).toBe('from http')
      await new MeshLevel<Buffer, string>(h.node, { keyEncoding: 'buffer' }).put(Buffer.from([0xff]), 'bytes')
      const stored = encodeURIComponent('\u{10FFFE}\u{10FFFF}\u00ff')
      expect((await h.app.inject({ method: 'GET', url: `/v1/kv/${stored}` })).body).toBe('bytes')
      const listed = await h.app.inject({ method: 'GET', url: '/v1/kv?prefix=user' })
      expect(listed.json().items.map((item: { key: string }) => item.key)).toEqual(['user:1/café', 'user:2/日本'])
    } finally {
      await h.close()
    }
  })

  describe('over a shared node', () => {
    let dir: string
    let node: MeshNode
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'meshkv-level-test-'))
      node = await MeshNode.open({ dir })
    })
    afterEach(async () => {
      await node.close()
      await rm(dir, { recursive: true, force: true })
    })

    it('writes through the node: what level puts, the node reads, and the other way round', async () => {
      const db = new MeshLevel<string, string>(node, { valueEncoding: 'json' })
      await db.open()
      const text = JSON.stringify({ name: 'Ada' })
      await db.put('user:1', text)
      // The json encoding stores the string as a JSON string, as opaque bytes.
      const entry = await node.get('user:1')
      expect(entry?.contentType).toBe('application/octet-stream')
      expect(Buffer.from(entry?.value ?? []).toString('utf8')).toBe(JSON.stringify(text))
      expect(await db.get('user:1')).toBe(text)
      await node.put('user:2', Buffer.from('"Grace"'))
      expect(await db.get('user:2')).toBe('Grace')
      await db.close()
      expect(node.ready).toBe(true)
    })

    it('keeps databases with different key prefixes apart', async () => {
      const a = new MeshLevel<string, string>(node, { keyPrefix: 'a/' })
      const b = new MeshLevel<string, string>(node, { keyPrefix: 'b/' })
      await a.put('k', '1')
      await b.put('k', '2')
      expect(await a.get('k')).toBe('1')
      expect(await b.get('k')).toBe('2')
      expect(await a.keys().all()).toEqual(['k'])
      expect(await b.values({ reverse: true }).all()).toEqual(['2'])
      expect((await node.get('a/k'))?.value.toString()).toBe('1')
      await a.clear()
      expect(await a.keys().all()).toEqual([])
      expect(await b.keys().all()).toEqual(['k'])
    })

    it('makes a level batch one change: one step of the vector clock', async () => {
      const db = new MeshLevel<string, string>(node)
      const before = node.status().lsn
      await db.batch([
        { type: 'put', key: 'x', value: '1' },
        { type: 'put', key: 'y', value: '2' },
        { type: 'del', key: 'x' },
      ])
      expect(node.status().lsn).toBe(before + 1)
      expect(await db.get('x')).toBeUndefined()
      expect(await db.get('y')).toBe('2')
    })

    it('stores a text key as itself and a binary key escaped, and reads both back', async () => {
      const db = new MeshLevel<Uint8Array, string>(node, { keyPrefix: 'b/', keyEncoding: 'view' })
      const text = Buffer.from('café/日本/🙂', 'utf8')
      const binary = Uint8Array.from([0xc0, 0xff])
      await db.put(text, 'text')
      await db.put(binary, 'binary')
      await db.put(new Uint8Array(0), 'empty')
      // The text key is the same key to the node (and so to HTTP and kvctl); the binary one is
      // the code point below 0xC0's gap (U+007F), the escape, and its bytes in Latin-1.
      expect(Buffer.from((await node.get('b/café/日本/🙂'))?.value ?? []).toString()).toBe('text')
      expect(Buffer.from((await node.get('b/\u007f\u{10FFFF}\u00c0\u00ff'))?.value ?? []).toString()).toBe('binary')
      expect(Buffer.from((await node.get('b/'))?.value ?? []).toString()).toBe('empty')
      expect(await db.get(binary)).toBe('binary')
      const keys = await db.keys().all()
      expect(keys.map((key) => Buffer.from(key).toString('hex'))).toEqual(['', text.toString('hex'), 'c0ff'])
    })

    it('refuses a key whose stored form passes the node limit, and says what fits', async () => {
      const db = new MeshLevel<Uint8Array, string>(node, { keyEncoding: 'view' })
      // Text keys cost their bytes; with no prefix any key fits at (1024 - 8) / 2 bytes.
      await db.put(Buffer.alloc(1024, 'k'), 'longest text')
      await db.put(new Uint8Array(508).fill(0xff), 'longest bytes')
      expect(await db.get(new Uint8Array(508).fill(0xff))).toBe('longest bytes')
      await expect(db.put(new Uint8Array(509).fill(0xff), 'x')).rejects.toMatchObject({
        code: 'MESHKV_ERR_KEY_TOO_LARGE',
        details: { limitBytes: 1024, actualBytes: 1026, keyBytes: 509 },
      })
      await expect(db.put(Buffer.alloc(1025, 'k'), 'x')).rejects.toMatchObject({ code: 'MESHKV_ERR_KEY_TOO_LARGE' })
    })

    it('passes over keys it could not have written, and migrateKeys moves the ones it wrote before escapes', async () => {
      // What a MeshLevel over the whole space stored as text before keys could be bytes, and
      // stores escaped now: a key starting with U+0001 and one holding U+10FFFF.
      await node.put('\u0001lead', Buffer.from('1'))
      await node.put('a\u{10FFFF}', Buffer.from('2'))
      await node.put('plain', Buffer.from('3'))
      const db = new MeshLevel<string, string>(node)
      expect(await db.keys().all()).toEqual(['plain'])
      expect(await db.get('\u0001lead')).toBeUndefined()
      expect(await MeshLevel.migrateKeys(node)).toBe(2)
      expect(await db.keys().all()).toEqual(['\u0001lead', 'a\u{10FFFF}', 'plain'])
      expect(await db.get('\u0001lead')).toBe('1')
      expect(await db.get('a\u{10FFFF}')).toBe('2')
      expect(await node.get('\u0001lead')).toBeUndefined()
      expect(await MeshLevel.migrateKeys(node)).toBe(0)
    })
  })
})
