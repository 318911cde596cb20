/**
 * TLS between real processes: three `meshkv node` processes with `--tls-cert/--tls-key/--tls-ca`
 * serve HTTPS and link over WSS with mutual TLS; a write replicates; HTTPS clients with no client
 * certificate are served. A fourth node that trusts the cluster's CA but whose own certificate
 * another CA signed is refused by all three at the upgrade (`MESHKV_ERR_AUTH` in their logs): its
 * link never opens, and the three keep serving and replicating.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { encodeCausalToken } from '../../src/clock/index.js'
import { closeApp } from '../../src/http/app.js'
import { buildIfStale } from '../cli/helpers.js'
import { openHarness } from '../http/helpers.js'
import type { Pem, TestPki } from '../support/certs.js'
import { makeTestPki } from '../support/certs.js'
import { waitFor } from '../support/poll.js'
import { freePort } from '../support/ports.js'
import type { Proc } from '../support/processes.js'
import { MESHKV_BIN, allLinked, nodeArgs, spawnNode, stopAllProcesses } from '../support/processes.js'

const SECRET = randomBytes(32).toString('hex')
const REQUEST_MS = 5_000

interface Answer {
  status: number
  text: string
  json: Record<string, unknown> | undefined
}

interface TlsNode {
  readonly n: number
  readonly url: string
  readonly proc: Proc
  /** The CA this node's server certificate chains to (what a client must trust). */
  readonly serverCa: string
  readonly lines: string[]
}

let scratch: string
let pki: TestPki
const nodes: TlsNode[] = []

/** One bounded HTTPS request, trusting `ca`, presenting no client certificate. */
function call(url: string, ca: string, method = 'GET', body?: string): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'text/plain' }
    const request = https.request(url, { method, ca, headers, agent: false, timeout: REQUEST_MS }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (text += chunk))
      response.on('end', () => {
        let json: Record<string, unknown> | undefined
        try {
          json = JSON.parse(text) as Record<string, unknown>
        } catch {
          json = undefined
        }
        resolve({ status: response.statusCode ?? 0, text, json })
      })
    })
    request.on('timeout', () => request.destroy(new Error(`${method} ${url}: no answer in ${REQUEST_MS} ms`)))
    request.on('error', reject)
    request.end(body)
  })
}

async function status(node: TlsNode): Promise<{ nodeId: string; linked: string[]; ready: boolean }> {
  const answer = await call(`${node.url}/v1/status`, node.serverCa)
  if (answer.status !== 200) throw new Error(`node ${node.n} /v1/status answered ${answer.status}: ${answer.text}`)
  return answer.json as unknown as { nodeId: string; linked: string[]; ready: boolean }
}

async function writePem(name: string, pem: Pem): Promise<{ cert: string; key: string }> {
  const files = { cert: join(scratch, `${name}.crt`), key: join(scratch, `${name}.key`) }
  await Promise.all([writeFile(files.cert, pem.cert), writeFile(files.key, pem.key)])
  return files
}

/** Starts `meshkv node` number `n` on `port` with this certificate, trusting the cluster's CA. */
async function startNode(n: number, port: number, peers: string[], pem: Pem, serverCa: string): Promise<TlsNode> {
  const files = await writePem(`node${n}`, pem)
  const url = `https://127.0.0.1:${port}`
  const args = nodeArgs({
    dir: join(scratch, `data${n}`),
    port,
    peers,
    secret: SECRET,
    advertiseUrl: url,
    peerTimeoutMs: 2_000,
    extra: ['--tls-cert', files.cert, '--tls-key', files.key, '--tls-ca', join(scratch, 'ca.crt')],
  })
  const proc = spawnNode(`meshkv node ${n} (tls)`, [MESHKV_BIN, ...args])
  const node: TlsNode = { n, url, proc, serverCa, lines: [] }
  proc.onLine((line) => node.lines.push(line))
  nodes.push(node)
  return node
}

/** The log records of `node` that pass `test`. */
function logs(node: TlsNode, test: (record: Record<string, unknown>) => boolean): Record<string, unknown>[] {
  const records: Record<string, unknown>[] = []
  for (const line of node.lines) {
    try {
      const record = JSON.parse(line) as Record<string, unknown>
      if (test(record)) records.push(record)
    } catch {
      // Not a JSON line.
    }
  }
  return records
}

const isAuthRefusal = (record: Record<string, unknown>): boolean =>
  record['msg'] === 'peer link refused' && record['code'] === 'MESHKV_ERR_AUTH'

beforeAll(async () => {
  buildIfStale()
  scratch = await mkdtemp(join(tmpdir(), 'meshkv-tls-'))
  pki = await makeTestPki()
  await writeFile(join(scratch, 'ca.crt'), pki.ca.cert)
  const ports = [await freePort(), await freePort(), await freePort()]
  const urls = ports.map((port) => `https://127.0.0.1:${port}`)
  for (const [index, port] of ports.entries())
    await startNode(
      index + 1,
      port,
      urls.filter((_url, other) => other !== index),
      pki.leaf,
      pki.ca.cert,
    )
  const three = nodes.slice(0, 3)
  await waitFor(
    `three TLS nodes linked to each other (${nodes.map((node) => node.proc.stderr).join('\n')})`,
    30_000,
    async () => {
      const statuses = await Promise.all(three.map(status))
      return allLinked(statuses) && statuses.every((entry) => entry.ready) ? true : undefined
    },
  )
}, 90_000)

afterAll(async () => {
  await stopAllProcesses()
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
})

describe('a cluster over TLS', () => {
  it('replicates a write over WSS, and serves HTTPS clients that present no certificate', async () => {
    const [one, two, three] = nodes as [TlsNode, TlsNode, TlsNode]
    const written = await call(`${one.url}/v1/kv/greeting?w=3`, pki.ca.cert, 'PUT', 'hello over TLS')
    expect(written.status).toBe(200)
    for (const node of [two, three]) {
      const read = await call(`${node.url}/v1/kv/greeting`, pki.ca.cert)
      expect({ status: read.status, text: read.text }).toEqual({ status: 200, text: 'hello over TLS' })
    }
    // A quorum read asks the other members over HTTPS, with the node's certificate and the CA.
    const quorum = await call(`${three.url}/v1/kv/greeting?r=all`, pki.ca.cert)
    expect({ status: quorum.status, text: quorum.text }).toEqual({ status: 200, text: 'hello over TLS' })
    // A client that does not trust the cluster's CA gets no answer at all.
    await expect(call(`${two.url}/v1/kv/greeting`, pki.otherCa.cert)).rejects.toThrow()
  })

  it('refuses a fourth node whose certificate another CA signed; the three keep serving', async () => {
    const three = nodes.slice(0, 3)
    const ids = await Promise.all(three.map(async (node) => (await status(node)).nodeId))
    const outsider = await startNode(
      4,
      await freePort(),
      three.map((node) => node.url),
      pki.otherLeaf,
      pki.otherCa.cert,
    )
    // Each of the three refuses it again and again (it redials with backoff).
    await vi.waitFor(
      () => expect(three.map((node) => logs(node, isAuthRefusal).length >= 2)).toEqual([true, true, true]),
      { timeout: 30_000, interval: 100 },
    )
    const outsiderId = (await status(outsider)).nodeId
    console.log(
      `refused by node 1: ${JSON.stringify(logs(three[0] as TlsNode, isAuthRefusal)[0])}\n` +
        `the outsider's side: ${JSON.stringify(logs(outsider, (record) => record['msg'] === 'peer link refused')[0])}`,
    )
    expect((await status(outsider)).linked).toEqual([])
    expect(logs(outsider, (record) => record['msg'] === 'peer link refused').length).toBeGreaterThan(0)
    for (const node of three) {
      const seen = await status(node)
      expect(seen.linked.sort()).toEqual(ids.filter((id) => id !== seen.nodeId).sort())
      const members = await call(`${node.url}/v1/members`, pki.ca.cert)
      expect(JSON.stringify(members.json)).not.toContain(outsiderId)
    }
    const [one, two, third] = three as [TlsNode, TlsNode, TlsNode]
    const written = await call(`${two.url}/v1/kv/after-the-outsider?w=3`, pki.ca.cert, 'PUT', 'still serving')
    expect(written.status).toBe(200)
    for (const node of [one, third])
      expect((await call(`${node.url}/v1/kv/after-the-outsider`, pki.ca.cert)).text).toBe('still serving')
    // A brand-new node that never linked never joined: it is not ready.
    expect((await status(outsider)).ready).toBe(false)
  }, 60_000)
})

describe('an embedded app over HTTPS', () => {
  it('drains an in-flight request on close, as over plain HTTP', async () => {
    const own = await openHarness({ app: { tls: { ...pki.leaf, ca: pki.ca.cert } } })
    try {
      const address = await own.app.listen({ port: 0, host: '127.0.0.1' })
      expect(address).toMatch(/^https:/)
      // A read waiting for a write this node has not seen keeps the request in flight for 300 ms.
      const after = encodeCausalToken({ [own.node.nodeId]: 1 } as Record<NodeId, number>)
      const arrived = once(own.app.server, 'request')
      const inFlight = call(`${address}/v1/kv/k?timeout_ms=300&after=${after}`, pki.ca.cert)
      await arrived
      const closing = closeApp(own.app)
      expect((await inFlight).status).toBe(504)
      await closing
    } finally {
      await own.close()
    }
  })
})
