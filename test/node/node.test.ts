/**
 * The embeddable API (`MeshNode`) over a real LevelDB directory: values and content types,
 * siblings and contexts, preconditions, deletes, listing and paging, batches, counters, sets,
 * watch, causal waits, limits, locking, events and status.
 */
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { encodeCausalToken, encodeVersion, toNodeId, vcGet } from '../../src/clock/index.js'
import { MeshError } from '../../src/errors.js'
import type { BatchOp, Entry, ListOptions, WatchEvent } from '../../src/node/index.js'
import { readFile } from 'node:fs/promises'
import { MeshNode, PACKAGE_VERSION } from '../../src/node/index.js'
import { Replicator } from '../../src/replication/index.js'
import { MemoryBackend, Store } from '../../src/storage/index.js'
import { decodeValue } from '../../src/node/index.js'
import { byUtf8, meshCodeOf, nextWithin, sleep, takeWithin, turn } from '../helpers/async.js'
import { fromUtf8, plainBytes } from '../helpers/bytes.js'
import { ChildLines, spawnFixture } from '../helpers/child.js'
import { nodeFixture } from './fixture.js'

const packageJson = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string
}
const OTHER = toNodeId('c3c3c3c3c3c3c3c3')
const EMPTY_VERSION = encodeVersion([])

const fixture = nodeFixture('node')
const open = fixture.open

function textOf(entry: Entry | undefined): string | undefined {
  return entry === undefined ? undefined : fromUtf8(entry.value)
}

/** A short summary of a watch event, for comparing sequences. */
function brief(event: WatchEvent): string {
  switch (event.type) {
    case 'put':
      return `put ${event.key}=${fromUtf8(event.value)} @${event.cursor}`
    case 'del':
      return `del ${event.key} @${event.cursor}`
    case 'counter':
      return `counter ${event.name}${event.delta >= 0 ? '+' : ''}${event.delta} @${event.cursor}`
    case 'set.add':
    case 'set.remove':
      return `${event.type} ${event.name}:${event.member} @${event.cursor}`
    case 'doc':
      return `doc ${event.name} (${event.update.length} bytes) @${event.cursor}`
  }
}

describe('MeshNode: open, close, reopen', () => {
  it('keeps its node id and all data across close and reopen', async () => {
    const node = await open()
    const nodeId = node.nodeId
    expect(nodeId).toMatch(/^[0-9a-f]{16}$/)
    await node.put('k', 'v')
    await node.counter('c').incr(41)
    await node.set('s').add('m')
    const status = node.status()
    await node.close()
    expect(node.ready).toBe(false)
    await node.close() // twice is fine

    const again = await open()
    expect(again.nodeId).toBe(nodeId)
    expect(textOf(await again.get('k'))).toBe('v')
    expect(await again.counter('c').value()).toBe(41)
    expect(await again.set('s').members()).toEqual(['m'])
    expect(again.status().lsn).toBe(status.lsn)
    expect(again.vc).toEqual(status.vc)
    expect(again.token()).toBe(status.token)
  })

  it('refuses a second open of the same directory with MESHKV_ERR_LOCKED', async () => {
    const node = await open()
    expect(await meshCodeOf(MeshNode.open({ dir: fixture.dir() }))).toBe('MESHKV_ERR_LOCKED')
    await node.put('still', 'serving')
    await node.close()
    const again = await open()
    expect(textOf(await again.get('still'))).toBe('serving')
  })

  it('refuses bad configuration with MESHKV_ERR_CONFIG', async () => {
    expect(await meshCodeOf(MeshNode.open({ dir: '' }))).toBe('MESHKV_ERR_CONFIG')
    expect(await meshCodeOf(MeshNode.open({ dir: fixture.dir(), keyBytesMax: 0 }))).toBe('MESHKV_ERR_CONFIG')
    expect(await meshCodeOf(MeshNode.open({ dir: fixture.dir(), batchOpsMax: 1.5 }))).toBe('MESHKV_ERR_CONFIG')
    expect(await meshCodeOf(MeshNode.open({ dir: fixture.dir(), valueBytesMax: 65 * 1024 * 1024 }))).toBe(
      'MESHKV_ERR_CONFIG',
    )
    // A write must fit in one replication frame.
    expect(await meshCodeOf(MeshNode.open({ dir: fixture.dir(), valueBytesMax: 3 * 1024 * 1024 + 1 }))).toBe(
      'MESHKV_ERR_CONFIG',
    )
    expect(await meshCodeOf(MeshNode.open({ dir: fixture.dir(), peers: ['http://127.0.0.1:1'] }))).toBe(
      'MESHKV_ERR_CONFIG',
    )
  })

  it('refuses a batch too large to replicate (over 3.5 MiB in all) with MESHKV_ERR_VALUE_TOO_LARGE, writing none of it', async () => {
    const node = await open()
    const mib = Buffer.alloc(1024 * 1024, 0x61)
    const before = node.status().lsn
    const ops = [1, 2, 3, 4].map((n) => ({ type: 'put' as const, key: `big${n}`, value: mib }))
    expect(await meshCodeOf(node.batch(ops))).toBe('MESHKV_ERR_VALUE_TOO_LARGE')
    expect(node.status().lsn).toBe(before)
    expect(await node.get('big1')).toBeUndefined()
    await node.batch(ops.slice(0, 3))
    expect((await node.get('big3'))?.value.length).toBe(mib.length)
  })

  it('answers every call on a closed node with MESHKV_ERR_CLOSED', async () => {
    const node = await open()
    await node.put('k', 'v')
    await node.close()
    const calls: (() => unknown)[] = [
      () => node.get('k'),
      () => node.put('k', 'w'),
      () => node.del('k'),
      () => node.batch([{ type: 'put', key: 'k', value: 1 }]),
      () => node.list(),
      () => node.counter('c').incr(),
      () => node.counter('c').value(),
      () => node.set('s').add('m'),
      () => node.set('s').members(),
      () => node.watch().next(),
    ]
    for (const call of calls) expect(await meshCodeOf(call)).toBe('MESHKV_ERR_CLOSED')
  })
})

describe('MeshNode: values', () => {
  it('stores bytes, text and JSON with their content types, and reads a missing key as undefined', async () => {
    const node = await open()
    await node.put('bytes', new Uint8Array([0, 1, 255]))
    await node.put('png', new Uint8Array([137, 80]), { contentType: 'image/png' })
    await node.put('text', 'héllo 😀')
    await node.put(
      'json',
      JSON.parse('{"a":1,"b":[true,null,"x"],"nested":{"__proto__":"plain key"}}') as Record<string, unknown>,
    )
    await node.put('number', 42)
    await node.put('null', null)
    await node.put('false', false)
    await node.put('array', [1, 'two'])
    await node.put('vendor', { x: 1 }, { contentType: 'application/vnd.example+json' })
    await node.put('csv', 'a,b\n1,2', { contentType: 'text/csv' })

    const bytes = await node.get('bytes')
    expect(bytes).toMatchObject({ key: 'bytes', contentType: 'application/octet-stream', siblingCount: 1 })
    expect(plainBytes(bytes?.value)).toEqual(new Uint8Array([0, 1, 255]))
    expect(bytes?.version).toMatch(/^v1\./)
    expect(bytes?.hlc.wallMs).toBeGreaterThan(0)
    expect((await node.get('png'))?.contentType).toBe('image/png')

    const text = await node.get('text')
    expect(text?.contentType).toBe('text/plain; charset=utf-8')
    expect(decodeValue(text as Entry)).toBe('héllo 😀')

    const json = await node.get('json')
    expect(json?.contentType).toBe('application/json')
    const decoded = decodeValue(json as Entry) as { a: number; b: unknown[]; nested: object }
    expect(decoded.a).toBe(1)
    expect(decoded.b).toEqual([true, null, 'x'])
    expect(Object.getOwnPropertyNames(decoded.nested)).toEqual(['__proto__'])
    expect(Object.getPrototypeOf(decoded.nested)).toBe(Object.prototype)
    expect(decodeValue((await node.get('number')) as Entry)).toBe(42)
    expect(decodeValue((await node.get('null')) as Entry)).toBeNull()
    expect(decodeValue((await node.get('false')) as Entry)).toBe(false)
    expect(decodeValue((await node.get('array')) as Entry)).toEqual([1, 'two'])
    expect(decodeValue((await node.get('vendor')) as Entry)).toEqual({ x: 1 })
    const csv = await node.get('csv')
    expect(csv?.contentType).toBe('text/csv')
    expect(decodeValue(csv as Entry)).toBe('a,b\n1,2')

    expect(await node.get('missing')).toBeUndefined()
    expect(await node.get('missing', { siblings: true })).toBeUndefined()
  })

  it('refuses values JSON cannot hold and bad content types with MESHKV_ERR_INVALID_ARGUMENT', async () => {
    const node = await open()
    const circular: Record<string, unknown> = {}
    circular['self'] = circular
    expect(await meshCodeOf(node.put('k', circular))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(node.put('k', { big: 10n }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(node.put('k', undefined as never))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(node.put('k', 'v', { contentType: '' }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(node.put('k', 'v', { contentType: 'text/plain\r\nX-Evil: 1' }))).toBe(
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
    expect(await node.get('k')).toBeUndefined()
    expect(node.status().lsn).toBe(0)
  })
})

describe('MeshNode: siblings, contexts, preconditions', () => {
  it('keeps concurrent writes as siblings; a write with a context replaces only what it saw', async () => {
    const node = await open()
    const a = await node.put('k', 'A')
    // A write that saw nothing (a client that read before A existed) is concurrent with A.
    const b = await node.put('k', 'B', { context: EMPTY_VERSION })
    expect(b.changed).toBe(true)
    const both = await node.get('k', { siblings: true })
    expect(both?.siblingCount).toBe(2)
    expect(textOf(both)).toBe('B') // the highest HLC
    expect(both?.version).toBe(b.version)
    expect(
      both?.siblings?.map((sibling) => [
        sibling.value === null ? null : fromUtf8(sibling.value),
        sibling.deleted,
        sibling.node,
      ]),
    ).toEqual(
      expect.arrayContaining([
        ['A', false, node.nodeId],
        ['B', false, node.nodeId],
      ]),
    )
    expect((await node.get('k'))?.siblings).toBeUndefined()

    // Saw A only: B stays.
    const c = await node.put('k', 'C', { context: a.version })
    const afterC = await node.get('k', { siblings: true })
    expect(afterC?.siblings?.map((sibling) => fromUtf8(sibling.value as Uint8Array)).sort()).toEqual(['B', 'C'])
    expect(c.version).toBe(afterC?.version)

    // Saw both: one value is left.
    const d = await node.put('k', 'D', { context: c.version })
    const afterD = await node.get('k', { siblings: true })
    expect(afterD?.siblingCount).toBe(1)
    expect(textOf(afterD)).toBe('D')
    expect(afterD?.version).toBe(d.version)

    // A blind write replaces everything the node holds.
    await node.put('k2', 'x')
    await node.put('k2', 'y', { context: EMPTY_VERSION })
    await node.put('k2', 'blind')
    expect((await node.get('k2'))?.siblingCount).toBe(1)

    expect(await meshCodeOf(node.put('k', 'E', { context: 'not-a-version' }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('honours ifMatch and ifNoneMatch with MESHKV_ERR_PRECONDITION_FAILED', async () => {
    const node = await open()
    const v1 = (await node.put('k', 'one')).version
    const v2 = (await node.put('k', 'two', { ifMatch: v1 })).version
    expect(v2).not.toBe(v1)
    const lsn = node.status().lsn
    expect(await meshCodeOf(node.put('k', 'stale', { ifMatch: v1 }))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
    expect(await meshCodeOf(node.put('k', 'exists', { ifNoneMatch: true }))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
    expect(await meshCodeOf(node.del('k', { ifMatch: v1 }))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
    expect(await meshCodeOf(node.put('missing', 'x', { ifMatch: v2 }))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
    expect(await meshCodeOf(node.put('k', 'bad', { ifMatch: 'garbage' }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(node.status().lsn).toBe(lsn)
    expect(textOf(await node.get('k'))).toBe('two')
    expect(await node.get('missing')).toBeUndefined()

    expect((await node.put('fresh', 'new', { ifNoneMatch: true })).changed).toBe(true)
    expect((await node.del('k', { ifMatch: v2 })).changed).toBe(true)
    // Deleted: If-None-Match holds again.
    await node.put('k', 'reborn', { ifNoneMatch: true })
    expect(textOf(await node.get('k'))).toBe('reborn')
  })

  it('deletes with tombstones: a deleted key reads as missing, a delete of a missing key changes nothing', async () => {
    const node = await open()
    const put = await node.put('d', 'x')
    const deleted = await node.del('d')
    expect(deleted.changed).toBe(true)
    expect(deleted.version).not.toBe(put.version)
    expect(await node.get('d')).toBeUndefined()
    expect(await node.get('d', { siblings: true })).toBeUndefined()
    expect((await node.list()).items.map((entry) => entry.key)).toEqual([])

    const lsn = node.status().lsn
    const again = await node.del('d')
    expect(again.changed).toBe(false)
    const never = await node.del('never-was')
    expect(never.changed).toBe(false)
    expect(never.version).toBe(EMPTY_VERSION)
    expect(node.status().lsn).toBe(lsn)

    await node.put('d', 'y')
    const back = await node.get('d')
    expect(textOf(back)).toBe('y')
    expect(back?.siblingCount).toBe(1)
  })
})

describe('MeshNode: list', () => {
  const named = [
    'a',
    'a/1',
    'a/2',
    'a/3',
    'ab',
    'b',
    'user/1',
    'user/10',
    'user/2',
    'users/x',
    'é',
    'é/1',
    '中',
    'ｚ',
    '😀',
    '😀/1',
    '__proto__',
    'constructor',
    'zz',
  ]
  const numbered = Array.from({ length: 40 }, (_, i) => `n/${String(i).padStart(2, '0')}`)
  const removed = new Set(['a/2', 'n/05', 'n/17', 'n/18', 'ｚ'])
  const live = [...named, ...numbered].filter((key) => !removed.has(key)).sort(byUtf8)

  async function filled(): Promise<MeshNode> {
    const node = await open()
    await Promise.all([...named, ...numbered].map((key) => node.put(key, `v:${key}`)))
    await Promise.all([...removed].map((key) => node.del(key)))
    return node
  }

  function expected(options: ListOptions): string[] {
    const prefix = options.prefix ?? ''
    const keys = live.filter(
      (key) =>
        key.startsWith(prefix) &&
        (options.start === undefined || byUtf8(key, options.start) >= 0) &&
        (options.end === undefined || byUtf8(key, options.end) < 0),
    )
    return options.reverse === true ? keys.reverse() : keys
  }

  /** All pages of a listing, checking each page's size and the `next` cursors. */
  async function pageThrough(node: MeshNode, options: ListOptions, limit: number): Promise<string[]> {
    const keys: string[] = []
    let cursor: string | undefined
    for (let pages = 0; pages < 200; pages++) {
      const page = await node.list({ ...options, limit, ...(cursor === undefined ? {} : { cursor }) })
      expect(page.items.length).toBeLessThanOrEqual(limit)
      for (const entry of page.items) expect(fromUtf8(entry.value)).toBe(`v:${entry.key}`)
      keys.push(...page.items.map((entry) => entry.key))
      if (page.next === null) return keys
      expect(page.items).toHaveLength(limit)
      cursor = page.next
    }
    throw new Error('listing did not end')
  }

  it('lists by prefix, start/end, limit and reverse, skipping deleted keys', async () => {
    const node = await filled()
    expect((await node.list()).items.map((entry) => entry.key)).toEqual(live)
    expect((await node.list()).next).toBeNull()
    expect((await node.list({ prefix: 'a' })).items.map((entry) => entry.key)).toEqual(['a', 'a/1', 'a/3', 'ab'])
    expect((await node.list({ prefix: 'user/' })).items.map((entry) => entry.key)).toEqual([
      'user/1',
      'user/10',
      'user/2',
    ])
    expect((await node.list({ prefix: 'user/', reverse: true })).items.map((entry) => entry.key)).toEqual([
      'user/2',
      'user/10',
      'user/1',
    ])
    expect((await node.list({ prefix: '😀' })).items.map((entry) => entry.key)).toEqual(['😀', '😀/1'])
    expect((await node.list({ start: 'user/10', end: 'é' })).items.map((entry) => entry.key)).toEqual([
      'user/10',
      'user/2',
      'users/x',
      'zz',
    ])
    expect((await node.list({ prefix: 'n/', limit: 3, reverse: true })).items.map((entry) => entry.key)).toEqual([
      'n/39',
      'n/38',
      'n/37',
    ])
    expect((await node.list({ prefix: 'nothing' })).items).toEqual([])
    const first = await node.list({ limit: 2 })
    expect(first.items.map((entry) => entry.key)).toEqual(live.slice(0, 2))
    expect(first.next).not.toBeNull()

    expect(await meshCodeOf(node.list({ limit: 0 }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(node.list({ limit: 1001 }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(node.list({ cursor: '***' }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('pages through every key with cursors in both directions, none missed, none twice', async () => {
    const node = await filled()
    const shapes: ListOptions[] = [
      {},
      { prefix: 'n/' },
      { prefix: 'é' },
      { prefix: 'a' },
      { start: 'a/3', end: 'n/10' },
      { prefix: 'n/', start: 'n/10', end: 'n/30' },
      { start: 'user/2' },
      { end: 'b' },
      { prefix: 'zzz' },
    ]
    for (const shape of shapes) {
      for (const reverse of [false, true]) {
        const options = { ...shape, reverse }
        const want = expected(options)
        for (const limit of [1, 3, 7, 1000]) {
          const keys = await pageThrough(node, options, limit)
          expect({ options, limit, keys }).toEqual({ options, limit, keys: want })
          expect(new Set(keys).size).toBe(keys.length)
        }
      }
    }
  })

  it('continues after a key deleted between pages', async () => {
    const node = await filled()
    const first = await node.list({ prefix: 'n/', limit: 4 })
    expect(first.items.map((entry) => entry.key)).toEqual(['n/00', 'n/01', 'n/02', 'n/03'])
    await node.del('n/04')
    await node.put('n/03a', 'v:n/03a')
    const second = await node.list({ prefix: 'n/', limit: 4, cursor: first.next as string })
    expect(second.items.map((entry) => entry.key)).toEqual(['n/03a', 'n/06', 'n/07', 'n/08'])
  })
})

describe('MeshNode: batch', () => {
  it('commits a batch as one atomic change (one VC step), results in order', async () => {
    const node = await open()
    await node.put('b0', 'old')
    const events: WatchEvent[] = []
    node.on('change', (event) => events.push(event))
    const before = node.status()
    const { token, results } = await node.batch([
      { type: 'put', key: 'b1', value: 1 },
      { type: 'put', key: 'b2', value: 'two' },
      { type: 'del', key: 'b0' },
      { type: 'del', key: 'missing' },
    ])
    const after = node.status()
    expect(after.lsn).toBe(before.lsn + 1)
    expect(vcGet(after.vc, node.nodeId)).toBe(vcGet(before.vc, node.nodeId) + 1)
    expect(token).toBe(after.token)
    expect(results.map((result) => result.changed)).toEqual([true, true, true, false])
    expect(new Set(results.map((result) => result.token))).toEqual(new Set([token]))
    expect(results[0]?.version).toBe((await node.get('b1'))?.version)
    expect(decodeValue((await node.get('b1')) as Entry)).toBe(1)
    expect(textOf(await node.get('b2'))).toBe('two')
    expect(await node.get('b0')).toBeUndefined()
    const lsn = after.lsn
    expect(events.map(brief)).toEqual([`put b1=1 @${lsn}.0`, `put b2=two @${lsn}.1`, `del b0 @${lsn}`])
  })

  it('writes none of a batch whose precondition fails, and refuses malformed batches', async () => {
    const node = await open({ batchOpsMax: 5 })
    await node.put('b1', 'one')
    const lsn = node.status().lsn
    const failing: BatchOp[] = [
      { type: 'put', key: 'b3', value: 3 },
      { type: 'put', key: 'b1', value: 'again', ifNoneMatch: true },
    ]
    expect(await meshCodeOf(node.batch(failing))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
    expect(await node.get('b3')).toBeUndefined()
    expect(textOf(await node.get('b1'))).toBe('one')

    const six = Array.from({ length: 6 }, (_, i): BatchOp => ({ type: 'put', key: `k${i}`, value: i }))
    expect(await meshCodeOf(node.batch(six))).toBe('MESHKV_ERR_BATCH_INVALID')
    expect(await meshCodeOf(node.batch([]))).toBe('MESHKV_ERR_BATCH_INVALID')
    expect(
      await meshCodeOf(
        node.batch([
          { type: 'put', key: 'dup', value: 1 },
          { type: 'del', key: 'dup' },
        ]),
      ),
    ).toBe('MESHKV_ERR_BATCH_INVALID')
    expect(
      await meshCodeOf(
        node.batch([
          { type: 'put', key: 'fine', value: 1 },
          { type: 'put', key: '', value: 2 },
        ]),
      ),
    ).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await node.get('fine')).toBeUndefined()
    expect(node.status().lsn).toBe(lsn)
    expect((await node.batch(six.slice(0, 5))).results).toHaveLength(5)
    expect(node.status().lsn).toBe(lsn + 1)
  })
})

describe('MeshNode: counters', () => {
  it('increments and decrements exactly, also under concurrency, and survives reopen', async () => {
    const node = await open()
    const hits = node.counter('hits')
    expect(hits.name).toBe('hits')
    expect(await hits.value()).toBe(0)
    expect(await hits.incr()).toBe(1)
    expect(await hits.incr(5)).toBe(6)
    expect(await hits.decr()).toBe(5)
    expect(await hits.decr(10)).toBe(-5)
    expect(await hits.value()).toBe(-5)

    const values = await Promise.all(Array.from({ length: 100 }, () => hits.incr(1)))
    expect([...values].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i - 4))
    expect(await hits.value()).toBe(95)

    // The kv space and the counter space are apart.
    await node.put('hits', 'text')
    expect(await hits.value()).toBe(95)
    expect(textOf(await node.get('hits'))).toBe('text')

    await node.close()
    const again = await open()
    expect(await again.counter('hits').value()).toBe(95)
  })

  it('stays exact at the edge of safe integers: MESHKV_ERR_COUNTER_OVERFLOW, bad deltas MESHKV_ERR_INVALID_ARGUMENT', async () => {
    const node = await open()
    const big = node.counter('big')
    expect(await big.incr(2 ** 52)).toBe(2 ** 52)
    expect(await big.incr(2 ** 52 - 1)).toBe(Number.MAX_SAFE_INTEGER)
    expect(await meshCodeOf(big.incr(1))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
    expect(await big.value()).toBe(Number.MAX_SAFE_INTEGER)
    expect(await big.decr(Number.MAX_SAFE_INTEGER)).toBe(0)
    expect(await meshCodeOf(big.decr(1))).toBe('MESHKV_ERR_COUNTER_OVERFLOW')
    expect(await big.value()).toBe(0)

    for (const delta of [0, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(await meshCodeOf(node.counter('c').incr(delta))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
      expect(await meshCodeOf(node.counter('c').decr(delta))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    }
    expect(await node.counter('c').value()).toBe(0)
    expect(await meshCodeOf(() => node.counter(''))).toBe('MESHKV_ERR_INVALID_KEY')
  })
})

describe('MeshNode: sets', () => {
  it('adds, removes, updates atomically, and answers members and has', async () => {
    const node = await open()
    const tags = node.set('tags')
    expect(await tags.members()).toEqual([])
    expect((await tags.add('a', 'b')).changed).toBe(true)
    expect(await tags.members()).toEqual(['a', 'b'])
    expect(await tags.has('a')).toBe(true)
    expect(await tags.has('zz')).toBe(false)
    expect((await tags.remove('a')).changed).toBe(true)
    expect(await tags.has('a')).toBe(false)
    expect((await tags.remove('a')).changed).toBe(false)
    expect((await tags.remove('never')).changed).toBe(false)

    const lsn = node.status().lsn
    const updated = await tags.update({ add: ['c', '__proto__', 'ü', '😀'], remove: ['b'] })
    expect(updated.changed).toBe(true)
    expect(node.status().lsn).toBe(lsn + 1)
    expect(await tags.members()).toEqual(['__proto__', 'c', 'ü', '😀'].sort())
    expect(await tags.has('__proto__')).toBe(true)
    expect(await tags.has('constructor')).toBe(false)

    expect(await meshCodeOf(tags.update({ add: ['x'], remove: ['x'] }))).toBe('MESHKV_ERR_BATCH_INVALID')
    expect(await meshCodeOf(tags.add(''))).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await meshCodeOf(tags.add('ok', '\uD800'))).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await meshCodeOf(tags.has('\uDC00'))).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await tags.has('ok')).toBe(false)
    expect(await node.set('other').members()).toEqual([])

    await node.close()
    const again = await open()
    expect(await again.set('tags').members()).toEqual(['__proto__', 'c', 'ü', '😀'].sort())
  })
})

describe('MeshNode: watch', () => {
  it('watches from the moment watch() is called', async () => {
    const node = await open()
    await node.put('before', 'b')
    const watcher = node.watch()
    await node.put('after', 'a')
    const [event] = await takeWithin(watcher, 1)
    expect(event).toMatchObject({
      type: 'put',
      key: 'after',
      origin: 'local',
      node: node.nodeId,
      contentType: 'text/plain; charset=utf-8',
    })
    expect(fromUtf8((event as Extract<WatchEvent, { type: 'put' }>).value)).toBe('a')
    await watcher.return(undefined)
  })

  it('resumes from any cursor, also inside a batch, with no gap and no duplicate', async () => {
    const node = await open()
    const abort = new AbortController()
    const first = node.watch({ signal: abort.signal })
    await node.put('w/1', 1)
    await node.batch([
      { type: 'put', key: 'w/2', value: 2 },
      { type: 'put', key: 'w/3', value: 3 },
      { type: 'del', key: 'w/1' },
    ])
    await node.counter('w/c').incr(2)
    await node.set('w/s').update({ add: ['x', 'y'] })
    const all = await takeWithin(first, 7)
    abort.abort()
    expect((await nextWithin(first)).done).toBe(true)
    const lsn = node.status().lsn
    expect(all.map(brief)).toEqual([
      `put w/1=1 @${lsn - 3}`,
      `put w/2=2 @${lsn - 2}.0`,
      `put w/3=3 @${lsn - 2}.1`,
      `del w/1 @${lsn - 2}`,
      `counter w/c+2 @${lsn - 1}`,
      `set.add w/s:x @${lsn}.0`,
      `set.add w/s:y @${lsn}`,
    ])

    // Resume after each event in turn; each round's live write joins the history.
    const history = all.map(brief)
    for (const [index, event] of all.entries()) {
      const resumed = node.watch({ since: event.cursor })
      const rest = await takeWithin(resumed, history.length - index - 1)
      expect(rest.map(brief)).toEqual(history.slice(index + 1))
      // Then live changes, nothing repeated in between.
      await node.put(`live/${index}`, index)
      const [live] = await takeWithin(resumed, 1)
      const expected = `put live/${index}=${index} @${node.status().lsn}`
      expect(live && brief(live)).toBe(expected)
      history.push(expected)
      await resumed.return(undefined)
    }
    // From the very beginning.
    const everything = await takeWithin(node.watch({ since: '0' }), history.length)
    expect(everything.map(brief)).toEqual(history)

    for (const bad of ['abc', '-1', '1.x', '0.0', '01', ' 1']) {
      expect(await meshCodeOf(node.watch({ since: bad }).next())).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    }
  })

  it('filters by prefix', async () => {
    const node = await open()
    const watcher = node.watch({ prefix: 'p/' })
    await node.put('q/1', 1)
    await node.put('p/1', 1)
    await node.counter('p/c').incr()
    await node.set('q/s').add('p/member')
    await node.batch([
      { type: 'put', key: 'q/2', value: 2 },
      { type: 'put', key: 'p/2', value: 2 },
    ])
    await node.put('p/end', 'end')
    const events = await takeWithin(watcher, 4)
    expect(events.map((event) => ('key' in event ? event.key : event.name))).toEqual(['p/1', 'p/c', 'p/2', 'p/end'])
    await watcher.return(undefined)
  })

  it('ends on abort and on close', async () => {
    const node = await open()
    const abort = new AbortController()
    const seen: string[] = []
    const consuming = (async () => {
      for await (const event of node.watch({ signal: abort.signal })) seen.push(brief(event))
    })()
    await node.put('one', 1)
    for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(5)
    abort.abort()
    await Promise.race([
      consuming,
      sleep(2_000).then(() => Promise.reject(new Error('the watch did not end on abort'))),
    ])
    expect(seen).toHaveLength(1)

    const watcher = node.watch()
    const waiting = nextWithin(watcher, 2_000, 'the end of the watch on close')
    await turn()
    await node.close()
    expect((await waiting).done).toBe(true)
    expect(await meshCodeOf(node.watch().next())).toBe('MESHKV_ERR_CLOSED')
  })
})

describe('MeshNode: causal tokens', () => {
  it('times out with MESHKV_ERR_READ_TIMEOUT on a token this node has not seen', async () => {
    const node = await open()
    await node.put('k', 'v')
    const unseen = encodeCausalToken({ [OTHER]: 1 } as Record<NodeId, number>)
    expect(await meshCodeOf(node.waitFor(unseen, 30))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(await meshCodeOf(node.get('k', { after: unseen, timeoutMs: 30 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(await meshCodeOf(node.list({ after: unseen, timeoutMs: 30 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(await meshCodeOf(node.counter('c').value({ after: unseen, timeoutMs: 30 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(await meshCodeOf(node.set('s').members({ after: unseen, timeoutMs: 30 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    const abort = new AbortController()
    const aborted = node.waitFor(unseen, 5_000, abort.signal)
    abort.abort()
    expect(await meshCodeOf(aborted)).toBe('MESHKV_ERR_ABORTED')
    expect(await meshCodeOf(node.get('k', { after: 'garbage' }))).toBe('MESHKV_ERR_INVALID_TOKEN')
  })

  it('answers at once for a token it has seen, and as soon as it catches up otherwise', async () => {
    const node = await open()
    const written = await node.put('k', 'v')
    expect(textOf(await node.get('k', { after: written.token, timeoutMs: 1 }))).toBe('v')
    const ahead = encodeCausalToken({ [node.nodeId]: vcGet(node.vc, node.nodeId) + 1 } as Record<NodeId, number>)
    const waiting = node.get('k', { after: ahead, timeoutMs: 2_000 })
    await sleep(20)
    await node.put('k', 'newer')
    expect(textOf(await waiting)).toBe('newer')
  })
})

describe('MeshNode: causal waits end with the node', () => {
  it('refuses at once a wait whose signal is already aborted', async () => {
    const node = await open()
    const unseen = encodeCausalToken({ [OTHER]: 1 } as Record<NodeId, number>)
    expect(await meshCodeOf(node.waitFor(unseen, 60_000, AbortSignal.abort()))).toBe('MESHKV_ERR_ABORTED')
  })

  it('ends a causal wait when the node closes, instead of holding it to its deadline', async () => {
    const node = await open()
    const unseen = encodeCausalToken({ [OTHER]: 1 } as Record<NodeId, number>)
    const waiting = meshCodeOf(node.get('k', { after: unseen, timeoutMs: 600_000 }))
    await turn()
    await node.close()
    expect(await waiting).toBe('MESHKV_ERR_ABORTED')
  })
})

describe('MeshNode: version', () => {
  it("reports package.json's version", () => {
    expect(PACKAGE_VERSION).toBe(packageJson.version)
  })
})

describe('MeshNode: keys and limits', () => {
  it('enforces key and value limits in bytes, refuses empty and ill-formed keys', async () => {
    const node = await open({ keyBytesMax: 16, valueBytesMax: 64, batchOpsMax: 5 })
    await node.put('k'.repeat(16), 'ok')
    await node.put('é'.repeat(8), 'ok') // 16 bytes
    expect(await meshCodeOf(node.put('k'.repeat(17), 'x'))).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(await meshCodeOf(node.put('é'.repeat(9), 'x'))).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(await meshCodeOf(node.get('k'.repeat(17)))).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(await meshCodeOf(node.del('k'.repeat(17)))).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(await meshCodeOf(() => node.counter('c'.repeat(17)))).toBe('MESHKV_ERR_KEY_TOO_LARGE')

    await node.put('v64', new Uint8Array(64))
    expect(await meshCodeOf(node.put('v65', new Uint8Array(65)))).toBe('MESHKV_ERR_VALUE_TOO_LARGE')
    expect(await meshCodeOf(node.put('v66', 'é'.repeat(33)))).toBe('MESHKV_ERR_VALUE_TOO_LARGE')
    expect(await meshCodeOf(node.put('vjson', { a: 'x'.repeat(60) }))).toBe('MESHKV_ERR_VALUE_TOO_LARGE')

    for (const key of ['', '\uD800', 'a\uDC00', '\uDC00\uD800']) {
      expect(await meshCodeOf(node.put(key, 'x'))).toBe('MESHKV_ERR_INVALID_KEY')
      expect(await meshCodeOf(node.get(key))).toBe('MESHKV_ERR_INVALID_KEY')
      expect(await meshCodeOf(node.del(key))).toBe('MESHKV_ERR_INVALID_KEY')
    }
    expect(await meshCodeOf(() => node.set(''))).toBe('MESHKV_ERR_INVALID_KEY')
    expect((await node.list()).items.map((entry) => entry.key).sort(byUtf8)).toEqual([
      'kkkkkkkkkkkkkkkk',
      'v64',
      'éééééééé',
    ])
  })

  it('treats __proto__ and other Object.prototype names as plain keys', async () => {
    const node = await open()
    for (const key of ['__proto__', 'constructor', 'hasOwnProperty', 'toString']) {
      await node.put(key, { key })
      expect(decodeValue((await node.get(key)) as Entry)).toEqual({ key })
      expect(await node.counter(key).incr(3)).toBe(3)
      await node.set(key).add('__proto__', key)
      expect(await node.set(key).has('__proto__')).toBe(true)
    }
    expect((await node.list({ prefix: '__' })).items.map((entry) => entry.key)).toEqual(['__proto__'])
    expect((await node.del('__proto__')).changed).toBe(true)
    expect(await node.get('__proto__')).toBeUndefined()
    expect(textOf(await node.get('constructor'))).toBe('{"key":"constructor"}')
    expect(await node.get('valueOf')).toBeUndefined()
  })
})

describe('MeshNode: events and status', () => {
  it("emits 'change' with origin 'local' for every kind of write", async () => {
    const node = await open()
    const events: WatchEvent[] = []
    node.on('change', (event) => events.push(event))
    await node.put('k', 'v')
    await node.del('k')
    await node.counter('c').decr(2)
    await node.set('s').add('m')
    await node.set('s').remove('m')
    expect(events.map((event) => [event.type, event.origin, event.node])).toEqual([
      ['put', 'local', node.nodeId],
      ['del', 'local', node.nodeId],
      ['counter', 'local', node.nodeId],
      ['set.add', 'local', node.nodeId],
      ['set.remove', 'local', node.nodeId],
    ])
    expect(events.map((event) => event.cursor)).toEqual(['1', '2', '3', '4', '5'])
    expect(events[2]).toMatchObject({ name: 'c', delta: -2 })
  })

  it('keeps committing when a change listener throws (checked in a child process)', async () => {
    const child = new ChildLines(spawnFixture('throwing-listener.ts', [fixture.dir()]))
    const line = await child.waitFor((text) => text.startsWith('{'), 20_000, 'the report line')
    expect(JSON.parse(line)).toEqual({ secondPut: true, watched: ['boom', 'after'], uncaught: ['listener failed'] })
    expect((await child.ended).code).toBe(0)
  })

  it('reports its status', async () => {
    let now = 1_700_000_000_000
    const node = await open({ now: () => now, keyBytesMax: 100, valueBytesMax: 1000, batchOpsMax: 10 })
    await node.put('k', 'v')
    now += 1_234
    const status = node.status()
    expect(status).toEqual({
      nodeId: node.nodeId,
      ready: true,
      vc: { [node.nodeId]: 1 },
      token: node.token(),
      lsn: 1,
      hlc: { wallMs: 1_700_000_000_000, logical: 0 },
      version: packageJson.version,
      uptimeMs: 1_234,
      storage: 'level',
      limits: { keyBytesMax: 100, valueBytesMax: 1000, batchOpsMax: 10 },
      members: 1,
      linked: [],
      replication: expect.any(Object),
      transport: {},
      forgotten: null,
      // A node alone (no other member) need not wait for anyone: it writes at once.
      seqGuard: {
        state: 'writable',
        startSeq: 0,
        claimedSeq: 0,
        claimedBy: null,
        sinceMs: 1_700_000_000_000,
        reason: null,
      },
      role: 'member',
      snapshot: { receiving: null, last: null },
      parked: { reads: { open: 0, max: 1000, refused: 0 }, writes: { open: 0, max: 1000, refused: 0 } },
      writeConcernTimeouts: {},
      siblingsCreated: { put: 0, del: 0 },
      peerTraffic: {},
    })
    // The replicator's counters, each zero on a node that has had no peer: the same keys as a
    // fresh replicator's (its one definition), so a counter added there needs no edit here.
    const store = await Store.open({
      backend: new MemoryBackend(),
      now: () => now,
      randomBytes: (size) => new Uint8Array(size),
    })
    const fresh = new Replicator({ store, now: () => now })
    expect(Object.keys(status.replication).sort()).toEqual(Object.keys(fresh.counters).sort())
    await fresh.close()
    await store.close()
    expect(Object.values(status.replication).every((count) => count === 0)).toBe(true)
    expect(Object.keys(status.replication)).toContain('changesApplied')
    status.limits.keyBytesMax = 1
    expect(node.limits.keyBytesMax).toBe(100)
    await node.close()
    expect(node.status().ready).toBe(false)
  })
})

describe('MeshNode: errors', () => {
  it('throws MeshErrors with stable codes', async () => {
    const node = await open()
    const error = await node.put('', 'x').catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(MeshError)
    expect((error as MeshError).code).toBe('MESHKV_ERR_INVALID_KEY')
    expect((error as MeshError).status).toBe(400)
  })
})
