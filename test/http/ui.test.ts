/**
 * The browser page's routes (src/http/ui.ts) through inject, with tokens on: the page takes its
 * token as `?token=` (a browser sends no header) and hands it to the websocket; a name is escaped
 * in the HTML; the module route serves the packages' files and nothing outside them; every file
 * the import map names exists. The page running in a real browser: test/cluster/browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Harness } from './helpers.js'
import { openHarness } from './helpers.js'

const ROOT = 'the-root-token-of-the-ui-tests'
let h: Harness

beforeAll(async () => {
  h = await openHarness({ app: { rootToken: ROOT } })
})

afterAll(async () => {
  await h.close()
})

const get = (url: string, headers: Record<string, string> = {}) => h.app.inject({ method: 'GET', url, headers })

function embedded(html: string): { name: string; token: string | null } {
  const json = /<script type="application\/json" id="meshkv">(.*?)<\/script>/s.exec(html)?.[1]
  expect(json, 'the page carries its settings').toBeDefined()
  return JSON.parse(json as string) as { name: string; token: string | null }
}

function importMap(html: string): Record<string, string> {
  const json = /<script type="importmap">(.*?)<\/script>/s.exec(html)?.[1]
  return (JSON.parse(json as string) as { imports: Record<string, string> }).imports
}

describe('GET /ui/docs/:name', () => {
  it('takes the token as ?token= or as a header, and refuses none or a wrong one', async () => {
    expect((await get('/ui/docs/pad')).statusCode).toBe(401)
    expect((await get('/ui/docs/pad?token=not-a-token')).statusCode).toBe(401)
    const viaQuery = await get(`/ui/docs/pad?token=${ROOT}`)
    expect(viaQuery.statusCode).toBe(200)
    expect(viaQuery.headers['content-type']).toMatch(/^text\/html/)
    expect(embedded(viaQuery.body)).toEqual({ name: 'pad', token: ROOT })
    const viaHeader = await get('/ui/docs/pad', { authorization: `Bearer ${ROOT}` })
    expect(viaHeader.statusCode).toBe(200)
    expect(embedded(viaHeader.body)).toEqual({ name: 'pad', token: null })
  })

  it('does not take ?token= on the API routes', async () => {
    expect((await get(`/v1/docs/pad?token=${ROOT}`)).statusCode).toBe(401)
  })

  it('escapes the name in the HTML', async () => {
    const name = '</script><b>x&y'
    const answer = await get(`/ui/docs/${encodeURIComponent(name)}?token=${ROOT}`)
    expect(answer.statusCode).toBe(200)
    expect(answer.body).not.toContain('<b>')
    expect(embedded(answer.body).name).toBe(name)
  })

  it('names in its import map module files the node serves, with no token', async () => {
    const imports = importMap((await get(`/ui/docs/pad?token=${ROOT}`)).body)
    for (const specifier of ['yjs', 'y-websocket', 'y-protocols/sync', 'y-protocols/awareness', 'lib0/encoding'])
      expect(imports[specifier], specifier).toBeDefined()
    // lib0's browser build, not its Node one.
    expect(imports['lib0/webcrypto']).toBe('/ui/modules/lib0/webcrypto.js')
    for (const [specifier, url] of Object.entries(imports)) {
      const answer = await get(url)
      expect(answer.statusCode, `${specifier} → ${url}`).toBe(200)
      expect(answer.headers['content-type']).toMatch(/^text\/javascript/)
    }
  })
})

describe('GET /ui/modules/*', () => {
  it('serves nothing outside the packages, and only module files', async () => {
    for (const url of [
      '/ui/modules/yjs/..%2f..%2f..%2fpackage.json',
      '/ui/modules/yjs/..%2f..%2ffastify%2ffastify.js',
      '/ui/modules/yjs/package.json',
      '/ui/modules/fastify/fastify.js',
      '/ui/modules/yjs/no-such-file.js',
      '/ui/modules/lib0/..%2ffastify%2ffastify.js',
      '/ui/modules/lib0/hash/..%2f..%2ffastify%2ffastify.js',
    ])
      expect((await get(url)).statusCode, url).toBe(404)
  })
})
