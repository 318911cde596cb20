/**
 * A real browser on the node's own page: headless Chromium (Debian's `chromium`, driven by
 * playwright-core; CI installs it in .ci/run) opens `/ui/docs/{name}` on two different nodes of a
 * three-process cluster, types in both text areas, and both come to show the same text holding
 * both typings; node 3, which no browser touched, serves that text over HTTP. This covers what the
 * Node-side y-websocket tests cannot: the page, its import map and the module files load in a
 * browser with no internet, and the browser's own WebSocket speaks to the rooms.
 * With tokens on (one node with a root token), the page takes `?token=` and hands it to the
 * websocket: the root token's page writes, a `read` token's page shows the text and changes nothing.
 * A missing Chromium fails the test (with where to get it); it is never skipped (test/support/browser.ts).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { Page } from 'playwright-core'
import { useBrowser } from '../support/browser.js'
import { freePort } from '../support/ports.js'
import { MESHKV_BIN, nodeArgs, spawnNode, type Proc } from '../support/processes.js'
import { Cluster, request, useLinkedCluster, waitFor } from './helpers.js'

let cluster: Cluster
const theBrowser = useBrowser()

useLinkedCluster((started) => (cluster = started))

async function open(node: string, name: string): Promise<Page> {
  const page = await (await theBrowser()).newPage()
  const failures: string[] = []
  page.on('pageerror', (error) => failures.push(error.message))
  page.on('requestfailed', (failed) => failures.push(`${failed.url()}: ${failed.failure()?.errorText}`))
  await page.goto(`${node}/ui/docs/${name}`)
  await vi.waitFor(
    async () => {
      expect(failures, 'the page loads without errors').toEqual([])
      expect(await page.getAttribute('#body', 'data-synced'), `the page on ${node} to sync`).toBe('true')
    },
    { timeout: 15_000, interval: 50 },
  )
  return page
}

describe('the shared text area in a real browser', () => {
  it('two pages on two nodes show the same text, and the third node serves it', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    const a = await open(n1, 'browser-pad')
    const b = await open(n2, 'browser-pad')
    await Promise.all([a.type('#body', 'hello from one. '), b.type('#body', 'hello from two. ')])

    let shown = ''
    await vi.waitFor(
      async () => {
        const [left, right] = [await a.inputValue('#body'), await b.inputValue('#body')]
        expect(left).toContain('hello from one. ')
        expect(left).toContain('hello from two. ')
        expect(right).toBe(left)
        shown = left
      },
      { timeout: 15_000, interval: 50 },
    )
    expect(shown).toHaveLength('hello from one. hello from two. '.length)

    await vi.waitFor(
      async () => {
        const answer = await request(`${n3}/v1/docs/browser-pad?format=json`)
        expect(answer.status).toBe(200)
        expect(answer.json?.body).toBe(shown)
      },
      { timeout: 15_000, interval: 100 },
    )
  }, 90_000)
})

describe('the page with tokens on', () => {
  const root = randomBytes(24).toString('hex')
  let scratch: string
  let node: Proc
  let url: string

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'meshkv-browser-'))
    const tokenFile = join(scratch, 'root-token')
    await writeFile(tokenFile, `${root}\n`, { mode: 0o600 })
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    const args = nodeArgs({ dir: join(scratch, 'node'), port, secret: randomBytes(16).toString('hex') })
    node = spawnNode('meshkv node (tokens)', [MESHKV_BIN, ...args, '--root-token-file', tokenFile])
    await waitFor(`${url} ready; stderr: ${node.stderr}`, 20_000, async () =>
      (await request(`${url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
    )
  }, 60_000)

  afterAll(async () => {
    await node?.stop()
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
  })

  const docText = async (): Promise<unknown> =>
    (await request(`${url}/v1/docs/locked?format=json`, { headers: { authorization: `Bearer ${root}` } })).json?.body

  it('a root token writes through the page, a read token only reads', async () => {
    const writer = await open(url, `locked?token=${root}`)
    await writer.type('#body', 'written with the root token')
    await vi.waitFor(async () => expect(await docText()).toBe('written with the root token'), {
      timeout: 15_000,
      interval: 100,
    })

    const made = await request(`${url}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${root}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'read' }),
    })
    expect(made.status).toBe(201)
    const reader = await open(url, `locked?token=${String(made.json?.token)}`)
    expect(await reader.inputValue('#body')).toBe('written with the root token')
    await reader.type('#body', ' and more')
    // The writer's page is a live client: had the read token's edit been taken, it would show.
    await writer.type('#body', '!')
    await vi.waitFor(async () => expect(await docText()).toBe('written with the root token!'), {
      timeout: 15_000,
      interval: 100,
    })
    expect(await writer.inputValue('#body')).toBe('written with the root token!')
  }, 90_000)

  it('a page without a token is refused', async () => {
    expect((await request(`${url}/ui/docs/locked`)).status).toBe(401)
  })
})
