/**
 * The list-memory attack against a REAL node process: 100 values of 1 MB, then rounds of four
 * concurrent `GET /v1/kv?prefix=blob/&limit=1000`. Before list pages had a byte budget each answer
 * held every value (the same attack over 300 values took one node from 205 MB to 5.2 GB of RSS).
 * Now each page stops at the budget (8 MiB by default, at least one value), its `next` cursor
 * reaches every key, and the node's resident memory, as its own `/metrics` reports it, stays low.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RealNode } from './helpers.js'
import { request, startRealNode, stopAllNodes } from './helpers.js'

const VALUES = 100
const VALUE_BYTES = 1_000_000
const PAGE_BYTES_MAX = 8 * 1024 * 1024
/** Keys, versions and JSON punctuation of one page's items: generous. */
const PAGE_OVERHEAD_BYTES = 64 * 1024

let node: RealNode

beforeAll(async () => {
  node = await startRealNode()
}, 120_000)

afterAll(async () => {
  await node?.stop()
  await stopAllNodes()
})

async function residentBytes(): Promise<number> {
  const text = (await request(`${node.url}/metrics`, { timeoutMs: 10_000 })).text
  const line = text.split('\n').find((row) => row.startsWith('process_resident_memory_bytes '))
  if (line === undefined) throw new Error('no process_resident_memory_bytes in /metrics')
  return Number(line.split(' ')[1])
}

interface Page {
  bytes: number
  keys: string[]
  next: string | null
}

async function listPage(cursor?: string): Promise<Page> {
  const query = `prefix=blob/&limit=1000${cursor === undefined ? '' : `&cursor=${cursor}`}`
  const answer = await request(`${node.url}/v1/kv?${query}`, { timeoutMs: 30_000 })
  expect(answer.status).toBe(200)
  const body = answer.json as { items: { key: string; value: string }[]; next: string | null }
  return { bytes: Buffer.byteLength(answer.text), keys: body.items.map((item) => item.key), next: body.next }
}

describe('list pages under memory attack', () => {
  it('answers four concurrent full-page lists within the byte budget, pages through every key, and stays small', async () => {
    const value = 'x'.repeat(VALUE_BYTES)
    for (let start = 0; start < VALUES; start += 4) {
      await Promise.all(
        Array.from({ length: Math.min(4, VALUES - start) }, async (_, offset) => {
          const key = `blob/${String(start + offset).padStart(3, '0')}`
          const put = await request(`${node.url}/v1/kv/${key}`, {
            method: 'PUT',
            headers: { 'content-type': 'text/plain' },
            body: value,
            timeoutMs: 30_000,
          })
          expect(put.status).toBe(200)
        }),
      )
    }
    const before = await residentBytes()
    let peak = before
    for (let round = 0; round < 3; round++) {
      const pages = await Promise.all(Array.from({ length: 4 }, () => listPage()))
      for (const page of pages) {
        expect(page.bytes).toBeLessThanOrEqual(PAGE_BYTES_MAX + VALUE_BYTES + PAGE_OVERHEAD_BYTES)
        expect(page.keys.length).toBeGreaterThan(0)
        expect(page.next).not.toBeNull()
      }
      peak = Math.max(peak, await residentBytes())
    }

    const seen: string[] = []
    let cursor: string | undefined
    do {
      const page = await listPage(cursor)
      expect(page.bytes).toBeLessThanOrEqual(PAGE_BYTES_MAX + VALUE_BYTES + PAGE_OVERHEAD_BYTES)
      seen.push(...page.keys)
      cursor = page.next ?? undefined
    } while (cursor !== undefined)
    expect(seen).toEqual(Array.from({ length: VALUES }, (_, index) => `blob/${String(index).padStart(3, '0')}`))

    const after = await residentBytes()
    peak = Math.max(peak, after)
    console.info(
      `list attack: RSS ${Math.round(before / 2 ** 20)} MiB before the lists, peak ${Math.round(peak / 2 ** 20)} MiB, ${Math.round(after / 2 ** 20)} MiB after`,
    )
    expect(peak).toBeLessThan(1024 ** 3)
    expect(peak - before).toBeLessThan(400 * 2 ** 20)
    expect((await request(`${node.url}/livez`)).status).toBe(200)
  }, 180_000)
})
