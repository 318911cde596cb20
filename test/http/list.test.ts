import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
  for (let i = 0; i < 25; i++) await h.node.put(`page/${String(i).padStart(2, '0')}`, { i })
  await h.node.put('mixed/json', { a: [1, 2] })
  await h.node.put('mixed/text', 'some text')
  await h.node.put('mixed/bytes', new Uint8Array([0, 255]))
  await h.node.put('mixed/gone', 'x')
  await h.node.del('mixed/gone')
  await h.node.put('other', 1)
})

afterAll(async () => {
  await h.close()
})

interface Item {
  key: string
  contentType: string
  version: string
  siblings: number
  value?: unknown
  valueBase64?: string
}

async function list(query: string): Promise<{ items: Item[]; next: string | null }> {
  const response = await h.app.inject({ url: `/v1/kv${query}` })
  expect(response.statusCode).toBe(200)
  expect(response.headers['x-causal-token']).toBe(h.node.token())
  return response.json()
}

describe('GET /v1/kv', () => {
  it('lists by prefix with each value encoded by its content type', async () => {
    const page = await list('?prefix=mixed/')
    expect(page).toEqual({
      items: [
        {
          key: 'mixed/bytes',
          contentType: 'application/octet-stream',
          version: expect.stringMatching(/^v1\./),
          siblings: 1,
          valueBase64: 'AP8=',
        },
        {
          key: 'mixed/json',
          contentType: 'application/json',
          version: expect.stringMatching(/^v1\./),
          siblings: 1,
          value: { a: [1, 2] },
        },
        {
          key: 'mixed/text',
          contentType: 'text/plain; charset=utf-8',
          version: expect.stringMatching(/^v1\./),
          siblings: 1,
          value: 'some text',
        },
      ],
      next: null,
    })
  })

  it('pages with limit and cursor until next is null, forwards and in reverse', async () => {
    for (const reverse of [false, true]) {
      const seen: string[] = []
      let cursor: string | null = null
      let pages = 0
      do {
        const page: { items: Item[]; next: string | null } = await list(
          `?prefix=page/&limit=10&reverse=${reverse}${cursor === null ? '' : `&cursor=${cursor}`}`,
        )
        seen.push(...page.items.map((item) => item.key))
        cursor = page.next
        pages++
      } while (cursor !== null)
      const expected = Array.from({ length: 25 }, (_, i) => `page/${String(i).padStart(2, '0')}`)
      expect(seen).toEqual(reverse ? expected.reverse() : expected)
      expect(pages).toBe(3)
    }
  })

  it('pages within start and end bounds, and takes a bare reverse flag', async () => {
    const first = await list('?start=page/10&end=page/20&limit=4')
    expect(first.items.map((item) => item.key)).toEqual(['page/10', 'page/11', 'page/12', 'page/13'])
    const second = await list(`?start=page/10&end=page/20&limit=4&cursor=${first.next as string}`)
    expect(second.items.map((item) => item.key)).toEqual(['page/14', 'page/15', 'page/16', 'page/17'])
    const reversed = await list('?start=page/10&end=page/20&limit=4&reverse')
    expect(reversed.items.map((item) => item.key)).toEqual(['page/19', 'page/18', 'page/17', 'page/16'])
    const back = await list(`?start=page/10&end=page/20&limit=4&reverse&cursor=${reversed.next as string}`)
    expect(back.items.map((item) => item.key)).toEqual(['page/15', 'page/14', 'page/13', 'page/12'])
  })

  it('bounds by start (inclusive) and end (exclusive); empty parameters mean none', async () => {
    const page = await list('?start=page/05&end=page/08&cursor=&after=')
    expect(page.items.map((item) => item.key)).toEqual(['page/05', 'page/06', 'page/07'])
    const all = await list('?prefix=&start=&end=&limit=1000')
    expect(all.items.map((item) => item.key)).toContain('other')
    expect(all.items.map((item) => item.key)).not.toContain('mixed/gone')
    expect(all.items).toHaveLength(29)
  })

  it('refuses a bad limit, a foreign cursor or a non-boolean reverse', async () => {
    for (const query of [
      '?limit=0',
      '?limit=1001',
      '?limit=ten',
      '?reverse=maybe',
      '?cursor=%21%21',
      '?timeout_ms=-5',
    ]) {
      expectProblem(await h.app.inject({ url: `/v1/kv${query}` }), 'MESHKV_ERR_INVALID_ARGUMENT')
    }
  })
})
