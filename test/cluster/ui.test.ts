/**
 * The cluster page `/ui` in a real browser (headless Chromium, test/support/browser.ts) on node 1
 * of a real three-process cluster with a root token: the page first says it needs a token; with
 * the token typed in, it shows the three members up and a lag figure for each peer, charts a line
 * per peer; keys written on node 2 are found in its key browser over two pages (the list API's
 * cursor) with the value written; node 3 stopped turns `down`, and its lag in changes grows as
 * node 1 writes on. The page is then saved as a screenshot (test-results/ui-cluster.png, printed).
 * A single node without auth shows the same page with no token at all.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { Page } from 'playwright-core'
import { useBrowser } from '../support/browser.js'
import { freePort } from '../support/ports.js'
import { MESHKV_BIN, REPO_ROOT, allLinked, nodeArgs, spawnNode } from '../support/processes.js'
import type { HttpAnswer } from './helpers.js'
import { Cluster, buildIfStale, request, stopAllClusters, waitFor } from './helpers.js'

const ROOT = randomBytes(24).toString('base64url')
const SCREENSHOT = join(REPO_ROOT, 'test-results', 'ui-cluster.png')
const KEYS = 25
const PAGE = 20
const WAIT = { timeout: 15_000, interval: 100 }

const theBrowser = useBrowser()
let scratch: string
let cluster: Cluster

beforeAll(async () => {
  buildIfStale()
  scratch = await mkdtemp(join(tmpdir(), 'meshkv-ui-'))
  const tokenFile = join(scratch, 'root-token')
  await writeFile(tokenFile, `${ROOT}\n`, { mode: 0o600 })
  cluster = await Cluster.start({ args: ['--root-token-file', tokenFile] })
  // The cluster's own waitLinked asks /v1/status without a token: here it needs the root token.
  await waitFor('all three linked', 20_000, async () => {
    const statuses = await Promise.all(cluster.urls().map((url) => call(url, 'GET', '/v1/status')))
    return allLinked(statuses.map((status) => status.json as { nodeId: string; linked: string[] })) ? true : undefined
  })
}, 60_000)

afterAll(async () => {
  await stopAllClusters()
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
})

function call(url: string, method: string, path: string, body?: string, token = ROOT): Promise<HttpAnswer> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (body !== undefined) headers['content-type'] = 'text/plain'
  return request(`${url}${path}`, { method, headers, ...(body === undefined ? {} : { body }), timeoutMs: 15_000 })
}

/** A page on `url`/ui that collects script errors and failed requests. */
async function openPage(url: string): Promise<{ page: Page; failures: string[] }> {
  const page = await (await theBrowser()).newPage({ viewport: { width: 1400, height: 1000 } })
  const failures: string[] = []
  page.on('pageerror', (error) => failures.push(error.message))
  page.on('requestfailed', (failed) => failures.push(`${failed.url()}: ${failed.failure()?.errorText}`))
  await page.goto(`${url}/ui`)
  return { page, failures }
}

/** The members table as the page shows it: node id → state and lag figures. */
async function members(page: Page): Promise<Map<string, { state: string; lagChanges: string; lagMs: string }>> {
  const rows = await page.$$eval('#members tbody tr', (trs) =>
    trs.map((tr) => ({
      node: tr.getAttribute('data-node') ?? '',
      state: tr.querySelector('.state')?.getAttribute('data-state') ?? '',
      lagChanges: tr.querySelector('.lag-changes')?.textContent ?? '',
      lagMs: tr.querySelector('.lag-ms')?.textContent ?? '',
    })),
  )
  return new Map(rows.map(({ node, ...row }) => [node, row]))
}

const listedKeys = (page: Page): Promise<string[]> =>
  page.$$eval('#keys tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-key') ?? ''))

describe('the cluster page on a three-node cluster with tokens on', () => {
  it('shows members, lag and keys, and a stopped node turning down', async () => {
    const [n1, n2] = cluster.urls() as [string, string, string]
    const ids = await Promise.all(
      cluster.urls().map(async (url) => (await call(url, 'GET', '/v1/status')).json?.nodeId),
    )
    const [id1, id2, id3] = ids as [string, string, string]
    const { page, failures } = await openPage(n1)

    // No token yet: the API refuses, and the page says so.
    await vi.waitFor(async () => {
      expect(await page.getAttribute('#conn', 'data-state')).toBe('error')
      expect(await page.textContent('#conn')).toContain('401')
    }, WAIT)
    await page.fill('#token', ROOT)
    await page.click('#token-save')

    await vi.waitFor(async () => {
      const shown = await members(page)
      expect([...shown.keys()].sort()).toEqual([...ids].sort())
      for (const row of shown.values()) expect(row.state).toBe('up')
      for (const peer of [id2, id3]) {
        expect(shown.get(peer)?.lagChanges).toMatch(/^\d[\d,]*$/)
        expect(shown.get(peer)?.lagMs).toMatch(/^\d+(\.\d)? m?s$/)
      }
      expect(await page.textContent('#node-id')).toBe(id1)
    }, WAIT)
    expect(await page.evaluate("sessionStorage.getItem('meshkv.token')")).toBe(ROOT)
    // One line per peer on each lag chart, some points in each.
    await vi.waitFor(async () => {
      for (const chart of ['#chart-lag-changes', '#chart-lag-ms']) {
        const lines = await page.$$eval(`${chart} polyline`, (all) =>
          all.map((line) => [line.getAttribute('data-series'), line.getAttribute('points')?.split(' ').length ?? 0]),
        )
        expect(lines.map(([series]) => series).sort()).toEqual([id2, id3].sort())
        for (const [, points] of lines) expect(points).toBeGreaterThan(1)
      }
    }, WAIT)

    // Keys written on node 2 (held by all three before the write returns), found on node 1's page.
    const written = new Map<string, string>()
    for (let i = 0; i < KEYS; i++) written.set(`ui/k${String(i).padStart(2, '0')}`, `value ${i} ${'·'.repeat(i)}`)
    for (const [key, value] of written)
      expect((await call(n2, 'PUT', `/v1/kv/${encodeURIComponent(key)}?w=all`, value)).status).toBe(200)
    await page.fill('#prefix', 'ui/')
    await page.selectOption('#limit', String(PAGE))
    await page.click('#list')
    await vi.waitFor(async () => expect(await listedKeys(page)).toHaveLength(PAGE), WAIT)
    const first = await listedKeys(page)
    expect(await page.isDisabled('#next')).toBe(false)
    await page.click('#next')
    await vi.waitFor(async () => expect(await listedKeys(page)).toHaveLength(KEYS - PAGE), WAIT)
    expect([...first, ...(await listedKeys(page))]).toEqual([...written.keys()].sort())
    expect(await page.isDisabled('#next')).toBe(true)

    const key = 'ui/k23'
    await page.click(`#keys tr[data-key="${key}"] button`)
    await vi.waitFor(async () => {
      expect(await page.getAttribute('#value', 'data-key')).toBe(key)
      expect(await page.textContent('#value pre.shown')).toBe(written.get(key))
    }, WAIT)

    // Node 3 stops: node 1's page shows it down, and its lag in changes growing as node 1 writes.
    await cluster.node(3).kill('SIGTERM')
    await vi.waitFor(async () => expect((await members(page)).get(id3)?.state).toBe('down'), WAIT)
    for (let i = 0; i < 5; i++) expect((await call(n1, 'PUT', `/v1/kv/after-stop-${i}`, 'x')).status).toBe(200)
    await vi.waitFor(async () => {
      const shown = await members(page)
      expect(Number(shown.get(id3)?.lagChanges.replace(/,/g, ''))).toBeGreaterThanOrEqual(5)
      expect(shown.get(id2)?.state).toBe('up')
    }, WAIT)

    await mkdir(join(REPO_ROOT, 'test-results'), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    console.log(`cluster page screenshot: ${SCREENSHOT}`)
    expect(failures, 'the page ran without script errors or failed requests').toEqual([])
  }, 120_000)
})

describe('the cluster page on a node without auth', () => {
  it('works with no token', async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const proc = spawnNode('meshkv node (no auth)', [MESHKV_BIN, ...nodeArgs({ dir: join(scratch, 'open'), port })])
    try {
      await waitFor(`${url} ready; stderr: ${proc.stderr}`, 20_000, async () =>
        (await request(`${url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
      )
      expect((await request(`${url}/v1/kv/open-key`, { method: 'PUT', body: 'open value' })).status).toBe(200)
      const { page, failures } = await openPage(url)
      await vi.waitFor(async () => {
        expect(await page.getAttribute('#conn', 'data-state')).toBe('ok')
        expect([...(await members(page)).values()].map((row) => row.state)).toEqual(['up'])
      }, WAIT)
      await page.click('#list')
      await page.click('#keys tr[data-key="open-key"] button')
      await vi.waitFor(async () => expect(await page.textContent('#value pre.shown')).toBe('open value'), WAIT)
      expect(await page.textContent('#token-state')).toBe('no token')
      expect(failures).toEqual([])
    } finally {
      await proc.stop()
    }
  }, 60_000)
})
