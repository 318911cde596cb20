/**
 * What a client can make one node hold, bounded (src/node/bounds.ts): parked causal and quorum
 * reads, writes parked on their write concern (refused BEFORE they are committed), list pages by
 * bytes, reverse prefix scans bounded to the prefix (a property against a model), and the digest
 * cached per clock. Real LevelDB where the node is opened on a directory.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { encodeCausalToken, toNodeId } from '../../src/clock/index.js'
import type { ListOptions, MeshNodeOptions } from '../../src/node/index.js'
import { MeshError } from '../../src/errors.js'
import { MeshNode } from '../../src/node/index.js'
import { Parking } from '../../src/node/bounds.js'
import { listRange, prefixSuccessor } from '../../src/node/list.js'
import { quorumRead } from '../../src/node/quorum.js'
import { DigestCache, MemoryBackend, Store, digestOf } from '../../src/storage/index.js'
import { byUtf8, meshCodeOf, sleep } from '../helpers/async.js'
import { RUNS } from '../helpers/runs.js'
import { freePort } from '../support/ports.js'
import { nodeFixture } from './fixture.js'

const OTHER = toNodeId('c3c3c3c3c3c3c3c3')
/** A token no node here will ever cover: a read after it parks until its timeout. */
const FUTURE = encodeCausalToken({ [OTHER]: 5 })

const fixture = nodeFixture('bounds')
const open = fixture.open

function codeOf(error: unknown): string | undefined {
  return error instanceof MeshError ? error.code : undefined
}

async function openStore(): Promise<Store> {
  const store = await Store.open({ backend: new MemoryBackend(), now: Date.now, randomBytes: (n) => new Uint8Array(n) })
  fixture.closeAfter(store)
  return store
}

describe('settings', () => {
  it('refuses a bound that is not a positive integer before opening anything', async () => {
    expect(await meshCodeOf(open({ parkedReadsMax: 0 }))).toBe('MESHKV_ERR_CONFIG')
    expect(await meshCodeOf(open({ parkedWritesMax: 1.5 }))).toBe('MESHKV_ERR_CONFIG')
    expect(await meshCodeOf(open({ listPageBytesMax: -1 }))).toBe('MESHKV_ERR_CONFIG')
  })
})

describe('parked reads', () => {
  it('parks at most parkedReadsMax causal waits, refuses more with BUSY, and takes reads again once one ends', async () => {
    const node = await open({ parkedReadsMax: 2 })
    await node.put('k', 'v')
    const first = new AbortController()
    const parked = [
      node.get('k', { after: FUTURE, timeoutMs: 10_000, signal: first.signal }).catch((error: unknown) => error),
      node.get('k', { after: FUTURE, timeoutMs: 10_000 }).catch((error: unknown) => error),
    ]
    await sleep(20)
    expect(node.status().parked.reads).toEqual({ open: 2, max: 2, refused: 0 })
    expect(await meshCodeOf(node.get('k', { after: FUTURE, timeoutMs: 10_000 }))).toBe('MESHKV_ERR_BUSY')
    expect(await meshCodeOf(node.list({ after: FUTURE }))).toBe('MESHKV_ERR_BUSY')
    // A read with no token, or one already covered, parks nothing and is served.
    expect((await node.get('k'))?.key).toBe('k')
    expect((await node.get('k', { after: node.token() }))?.key).toBe('k')
    expect(node.status().parked.reads.refused).toBe(2)

    first.abort()
    expect(codeOf(await parked[0])).toBe('MESHKV_ERR_ABORTED')
    expect(await meshCodeOf(node.get('k', { after: FUTURE, timeoutMs: 50 }))).toBe('MESHKV_ERR_READ_TIMEOUT')
    expect(node.status().parked.reads.open).toBe(1)
    await node.close()
    expect(codeOf(await parked[1])).toBe('MESHKV_ERR_ABORTED')
  })

  it('counts quorum reads and causal waits together', async () => {
    const store = await openStore()
    const parking = new Parking('reads', 1)
    // A causal wait holds the one place; a quorum read is then refused before it asks anyone.
    const waiting = new AbortController()
    const { waitForClock } = await import('../../src/node/watch.js')
    const wait = waitForClock(store, { [OTHER]: 1 }, 10_000, waiting.signal, parking).catch(() => undefined)
    let asked = 0
    const read = quorumRead({
      space: 'kv',
      key: 'k',
      own: await store.getState('kv', 'k'),
      ownVc: store.vc,
      required: 2,
      targets: [{ nodeId: OTHER, url: 'http://127.0.0.1:1' }],
      secret: 'bounds-test-secret-0123456789',
      self: store.nodeId,
      now: () => (asked++, Date.now()),
      timeoutMs: 1000,
      signal: new AbortController().signal,
      parked: parking,
    })
    expect(await meshCodeOf(read)).toBe('MESHKV_ERR_BUSY')
    expect(asked).toBe(0)
    waiting.abort()
    await wait
    expect(parking.status).toEqual({ open: 0, max: 1, refused: 1 })
  })
})

describe('parked writes', () => {
  /** A node that has written before (so it is ready) and counts one unreachable configured peer: w=2 waits. */
  async function lonelyMember(options: Partial<MeshNodeOptions>): Promise<MeshNode> {
    const first = await open()
    await first.put('seed', 'x')
    await first.close()
    const port = await freePort()
    return open({ peers: [`http://127.0.0.1:${port}`], secret: 'bounds-test-secret-0123456789', ...options })
  }

  it('refuses a write over parkedWritesMax with BUSY before committing it, so nothing was written', async () => {
    const node = await lonelyMember({ parkedWritesMax: 1 })
    expect(node.ready).toBe(true)
    const parked = node.put('a', 'waits', { w: 2, timeoutMs: 10_000 }).catch((error: unknown) => error)
    await sleep(50)
    expect(node.status().parked.writes).toMatchObject({ open: 1, max: 1 })
    const lsn = node.status().lsn
    expect(await meshCodeOf(node.put('b', 'refused', { w: 2, timeoutMs: 10_000 }))).toBe('MESHKV_ERR_BUSY')
    expect(await meshCodeOf(node.counter('c').incr(1, { w: 'all' }))).toBe('MESHKV_ERR_BUSY')
    expect(await node.get('b')).toBeUndefined()
    expect((await node.counter('c').value()) ?? 0).toBe(0)
    expect(node.status().lsn).toBe(lsn)
    // A write that waits for no one is not parked, and is served.
    await node.put('c', 'async')
    expect((await node.get('c'))?.key).toBe('c')
    expect(node.status().parked.writes).toEqual({ open: 1, max: 1, refused: 2 })
    // Closing lets the parked write go (the write stays committed), and with it its place.
    await node.close()
    await parked
    expect(node.status().parked.writes.open).toBe(0)
  })

  it('gives the place back when the wait times out', async () => {
    const node = await lonelyMember({ parkedWritesMax: 1 })
    expect(await meshCodeOf(node.put('a', 'v', { w: 2, timeoutMs: 50 }))).toBe('MESHKV_ERR_WRITE_CONCERN_TIMEOUT')
    expect(await meshCodeOf(node.put('b', 'v', { w: 2, timeoutMs: 50 }))).toBe('MESHKV_ERR_WRITE_CONCERN_TIMEOUT')
    expect(node.status().parked.writes).toEqual({ open: 0, max: 1, refused: 0 })
  })
})

describe('list pages by bytes', () => {
  it('ends a page before the entry that would pass the budget, at least one entry a page, and pages through all', async () => {
    const node = await open({ listPageBytesMax: 2500 })
    const sizes = [100, 1000, 1000, 1000, 4000, 10, 10, 2400, 1]
    await node.batch(sizes.map((size, index) => ({ type: 'put', key: `p/${index}`, value: 'x'.repeat(size) })))
    await node.put('q/after', 'x'.repeat(5000))
    const pages: string[][] = []
    let cursor: string | undefined
    do {
      const page = await node.list({ prefix: 'p/', limit: 1000, ...(cursor === undefined ? {} : { cursor }) })
      const bytes = page.items.reduce((sum, item) => sum + item.key.length + item.value.byteLength, 0)
      expect(page.items.length).toBeGreaterThan(0)
      if (page.items.length > 1) expect(bytes).toBeLessThanOrEqual(2500)
      pages.push(page.items.map((item) => item.key))
      cursor = page.next ?? undefined
    } while (cursor !== undefined)
    // Keys and values: 103, 1003, 1003 | 1003 | 4003 (alone, over the budget) | 13, 13, 2403, 4.
    expect(pages).toEqual([['p/0', 'p/1', 'p/2'], ['p/3'], ['p/4'], ['p/5', 'p/6', 'p/7', 'p/8']])
  })
})

describe('reverse prefix scans', () => {
  it('bound the range above by the prefix successor', () => {
    expect(prefixSuccessor('')).toBeUndefined()
    expect(prefixSuccessor('blob/')).toBe('blob0')
    expect(prefixSuccessor('a\u{10FFFF}')).toBe('b')
    expect(prefixSuccessor('\u{10FFFF}\u{10FFFF}')).toBeUndefined()
    expect(prefixSuccessor('a\ud7ff')).toBe('a\ue000')
    expect(prefixSuccessor('a\uffff')).toBe('a\u{10000}')
    expect(listRange({ prefix: 'blob/', reverse: true })).toEqual({ reverse: true, gte: 'blob/', lt: 'blob0' })
    expect(listRange({ prefix: 'blob/', end: 'blob/m', reverse: true }).lt).toBe('blob/m')
    expect(listRange({ prefix: 'blob/', end: 'c', reverse: true }).lt).toBe('blob0')
  })

  it('list exactly the model, page by page, forward and reverse (property)', async () => {
    const alphabet = [
      'a',
      'b',
      '/',
      '\u007f',
      '\u00ff',
      '\u0800',
      '\ud7ff',
      '\ue000',
      '\uffff',
      '\u{10000}',
      '\u{10FFFF}',
    ]
    const text = (min: number, max: number): fc.Arbitrary<string> =>
      fc.array(fc.constantFrom(...alphabet), { minLength: min, maxLength: max }).map((chars) => chars.join(''))
    const input = fc.record({
      keys: fc.uniqueArray(text(1, 4), { minLength: 0, maxLength: 40 }),
      deleted: fc.array(fc.nat(), { maxLength: 6 }),
      prefix: text(0, 3),
      end: fc.option(text(1, 4), { nil: undefined }),
      reverse: fc.boolean(),
      limit: fc.integer({ min: 1, max: 7 }),
      bytesMax: fc.integer({ min: 1, max: 40 }),
    })
    const seed = Number(process.env['MESHKV_SEED'] ?? Date.now() % 2 ** 31)
    console.info(`reverse prefix scans: fast-check seed ${seed}`)
    await fc.assert(
      fc.asyncProperty(input, async ({ keys, deleted, prefix, end, reverse, limit, bytesMax }) => {
        const node = await MeshNode.open({ dir: '', memory: true, listPageBytesMax: bytesMax })
        try {
          if (keys.length > 0) await node.batch(keys.map((key) => ({ type: 'put', key, value: key })))
          const gone = new Set(deleted.filter((index) => index < keys.length).map((index) => keys[index] as string))
          for (const key of gone) await node.del(key)
          const model = keys
            .filter((key) => !gone.has(key) && key.startsWith(prefix) && (end === undefined || byUtf8(key, end) < 0))
            .sort(byUtf8)
          if (reverse) model.reverse()
          const listed: string[] = []
          let cursor: string | undefined
          for (let pages = 0; pages <= keys.length + 1; pages++) {
            const options: ListOptions = { prefix, end, reverse, limit, ...(cursor === undefined ? {} : { cursor }) }
            const page = await node.list(options)
            listed.push(...page.items.map((item) => item.key))
            if (page.next === null) break
            expect(page.items.length).toBeGreaterThan(0)
            cursor = page.next
          }
          expect(listed).toEqual(model)
        } finally {
          await node.close()
        }
      }),
      { numRuns: Math.min(RUNS, 200), seed },
    )
  })
})

describe('digest cache', () => {
  it('walks once for a flood, again after every write, and not after garbage collection purges tombstones', async () => {
    const store = await openStore()
    const cache = new DigestCache(store)
    await store.commitLocal([{ type: 'kv.put', key: 'a', value: new Uint8Array([1]), contentType: 'x' }])
    const flood = await Promise.all(Array.from({ length: 50 }, () => cache.digest()))
    expect(cache.walks).toBe(1)
    expect(new Set(flood.map((digest) => digest.digest)).size).toBe(1)

    for (let round = 0; round < 3; round++) {
      const before = await cache.digest()
      await store.commitLocal([{ type: 'kv.put', key: `k${round}`, value: new Uint8Array([round]), contentType: 'x' }])
      const after = await cache.digest()
      expect(after.digest).not.toBe(before.digest)
      expect(after.vc).toEqual(store.vc)
    }
    expect(cache.walks).toBe(4)

    // A deleted key's tombstone leaves the digest as it was, and so does purging it.
    await store.commitLocal([{ type: 'kv.put', key: 'gone', value: new Uint8Array([9]), contentType: 'x' }])
    await store.commitLocal([{ type: 'kv.del', key: 'gone' }])
    const cached = await cache.digest()
    expect(await store.tombstoneCount()).toBe(1)
    await store.purge(store.vc, store.vc)
    expect(await store.tombstoneCount()).toBe(0)
    expect((await cache.digest()).digest).toBe(cached.digest)
    const snapshot = await store.snapshot()
    try {
      expect((await digestOf(snapshot)).digest).toBe(cached.digest)
    } finally {
      await snapshot.close()
    }
    cache.close()
  })

  it('walks again after a snapshot join, which changes states without a log entry', async () => {
    const store = await openStore()
    const cache = new DigestCache(store)
    await cache.digest()
    await store.applyStagedSnapshot(store.vc)
    await cache.digest()
    expect(cache.walks).toBe(2)
    cache.close()
  })

  it('is what MeshNode.digest answers, and follows its writes', async () => {
    const node = await open()
    const empty = await node.digest()
    await node.put('k', 'v')
    const written = await node.digest()
    expect(written.digest).not.toBe(empty.digest)
    expect(written.keys).toBe(1)
    expect((await node.digest()).digest).toBe(written.digest)
  })
})
