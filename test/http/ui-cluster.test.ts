/**
 * The cluster page's routes (src/http/ui-cluster.ts) through inject, with tokens on: the page and
 * its two files answer without a token (they hold no data), with their media types, and are the
 * files of the package's `ui/` folder; every file the page loads is one of them; and the folder
 * is in what an install gets (`npm pack`'s file list, the Dockerfile). The page running in a
 * real browser against a real cluster: test/cluster/ui.test.ts.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../support/processes.js'
import type { Harness } from './helpers.js'
import { openHarness } from './helpers.js'

const ROOT = 'the-root-token-of-the-cluster-page-tests'
const FILES = { '/ui': 'cluster.html', '/ui/cluster.js': 'cluster.js', '/ui/cluster.css': 'cluster.css' }
let h: Harness

beforeAll(async () => {
  h = await openHarness({ app: { rootToken: ROOT } })
})

afterAll(async () => {
  await h.close()
})

const get = (url: string) => h.app.inject({ method: 'GET', url })

describe('GET /ui and its files', () => {
  it('answers without a token, with the media type, the bytes of ui/ and no-cache', async () => {
    const types = { '/ui': 'text/html', '/ui/cluster.js': 'text/javascript', '/ui/cluster.css': 'text/css' }
    for (const [url, file] of Object.entries(FILES)) {
      const answer = await get(url)
      expect(answer.statusCode, url).toBe(200)
      expect(answer.headers['content-type'], url).toBe(`${types[url as keyof typeof types]}; charset=utf-8`)
      expect(answer.headers['cache-control'], url).toBe('no-cache')
      expect(answer.rawPayload.equals(readFileSync(`${REPO_ROOT}/ui/${file}`)), url).toBe(true)
    }
  })

  it('loads only files the node serves, and the data only through the token-checked API', async () => {
    const html = (await get('/ui')).body
    const loaded = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1])
    expect(loaded.sort()).toEqual(['/ui/cluster.css', '/ui/cluster.js'])
    const script = (await get('/ui/cluster.js')).body
    // No import at all: one module, no library.
    expect(script).not.toMatch(/^\s*import\s/m)
    const paths = [...script.matchAll(/api\(['`]([^'`?$]+)/g)].map((match) => match[1])
    expect(paths.sort()).toEqual(['/v1/kv', '/v1/kv/', '/v1/members', '/v1/status'])
    // The API refuses the same requests without the token.
    for (const path of ['/v1/status', '/v1/members', '/v1/kv']) expect((await get(path)).statusCode, path).toBe(401)
  })

  it('ships ui/ in the package and the container image', () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO_ROOT, encoding: 'utf8' }),
    ) as { files: { path: string }[] }[]
    const paths = packed[0]?.files.map((file) => file.path) ?? []
    for (const file of Object.values(FILES)) expect(paths).toContain(`ui/${file}`)
    expect(readFileSync(`${REPO_ROOT}/Dockerfile`, 'utf8')).toMatch(/^COPY ui \.\/ui$/m)
  })
})
