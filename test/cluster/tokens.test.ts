/**
 * Client tokens across three real `meshkv node` processes, each started with the same root token
 * (`--root-token-file`) and logging at debug: a token made on node 1 works on node 3, a revocation
 * on node 1 is refused on node 3 within a bounded poll (the time it took is printed), and no token
 * ever reaches a node's log.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/ports.js'
import type { Proc } from '../support/processes.js'
import { MESHKV_BIN, allLinked, nodeArgs, spawnNode, stopAllProcesses } from '../support/processes.js'
import type { HttpAnswer } from './helpers.js'
import { buildIfStale, request, waitFor } from './helpers.js'

const ROOT = randomBytes(24).toString('base64url')
const SECRET = randomBytes(24).toString('base64url')
const REVOKED_WITHIN_MS = 10_000
const ROUNDS = 5

interface Node {
  url: string
  proc: Proc
  lines: string[]
}

let scratch: string
const nodes: Node[] = []
const used: string[] = [ROOT]

beforeAll(async () => {
  buildIfStale()
  scratch = await mkdtemp(join(tmpdir(), 'meshkv-tokens-'))
  const tokenFile = join(scratch, 'root-token')
  await writeFile(tokenFile, `${ROOT}\n`, { mode: 0o600 })
  const ports = [await freePort(), await freePort(), await freePort()]
  const urls = ports.map((port) => `http://127.0.0.1:${port}`)
  for (const [index, port] of ports.entries()) {
    const args = nodeArgs({
      dir: join(scratch, `node${index + 1}`),
      port,
      peers: urls.filter((_, other) => other !== index),
      secret: SECRET,
      advertiseUrl: urls[index] as string,
      logLevel: 'debug',
      extra: ['--root-token-file', tokenFile],
    })
    const proc = spawnNode(`meshkv node ${index + 1}`, [MESHKV_BIN, ...args])
    const node: Node = { url: urls[index] as string, proc, lines: [] }
    proc.onLine((line) => node.lines.push(line))
    nodes.push(node)
  }
  for (const node of nodes)
    await waitFor(`${node.url} ready; stderr: ${node.proc.stderr}`, 20_000, async () =>
      (await request(`${node.url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
    )
  await waitFor('all three linked', 20_000, async () => {
    const statuses = await Promise.all(nodes.map((node) => call(node, 'GET', '/v1/status', ROOT)))
    return allLinked(statuses.map((status) => status.json as { nodeId: string; linked: string[] })) ? true : undefined
  })
}, 60_000)

afterAll(async () => {
  await stopAllProcesses()
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
})

function call(node: Node, method: string, path: string, token?: string, body?: unknown): Promise<HttpAnswer> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
  if (body !== undefined) headers['content-type'] = typeof body === 'string' ? 'text/plain' : 'application/json'
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  return request(`${node.url}${path}`, { method, headers, ...(payload === undefined ? {} : { body: payload }) })
}

async function createToken(node: Node, spec: object): Promise<{ id: string; token: string }> {
  const answer = await call(node, 'POST', '/v1/tokens', ROOT, spec)
  expect(answer.status).toBe(201)
  const created = answer.json as { id: string; token: string }
  used.push(created.token)
  return created
}

/** Polls until `node` answers `path` for `token` with a status that passes `done`; how long that took. */
async function timeUntil(node: Node, token: string, done: (status: number) => boolean): Promise<number> {
  const started = performance.now()
  await waitFor(
    `${node.url} to change its answer`,
    REVOKED_WITHIN_MS,
    async () => (done((await call(node, 'GET', '/v1/kv/shared/probe', token)).status) ? true : undefined),
    2,
  )
  return performance.now() - started
}

describe('tokens in a three-node cluster', () => {
  it('every route but the open ones asks for a token', async () => {
    const [, , n3] = nodes as [Node, Node, Node]
    expect((await call(n3, 'GET', '/v1/kv/x')).status).toBe(401)
    expect((await call(n3, 'GET', '/v1/kv/x', 'not-the-root-token')).status).toBe(401)
    expect((await call(n3, 'GET', '/livez')).status).toBe(200)
    expect((await call(n3, 'GET', '/v1/kv/x', ROOT)).status).toBe(404)
  })

  it('a token made on node 1 works on node 3; revoked on node 1, node 3 refuses it within a bounded time', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node]
    const reached: number[] = []
    const revoked: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      const { id, token } = await createToken(n1, { role: 'write', prefix: 'shared/', name: `round ${round}` })
      // 404: the probe key does not exist, so the token was let in.
      reached.push(await timeUntil(n3, token, (status) => status === 404))
      expect((await call(n3, 'PUT', `/v1/kv/shared/${round}`, token, 'v')).status).toBe(200)
      expect((await call(n3, 'PUT', `/v1/kv/other/${round}`, token, 'v')).status).toBe(403)

      const answer = await call(n1, 'DELETE', `/v1/tokens/${id}`, ROOT)
      expect({ status: answer.status, body: answer.json }).toEqual({ status: 200, body: { revoked: id } })
      expect((await call(n1, 'GET', '/v1/kv/shared/probe', token)).status).toBe(401)
      revoked.push(await timeUntil(n3, token, (status) => status === 401))
      await timeUntil(n2, token, (status) => status === 401)
    }
    const median = (values: number[]): number =>
      [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
    const show = (values: number[]): string => values.map((ms) => ms.toFixed(1)).join(', ')
    console.log(
      `token made on node 1, usable on node 3 after (ms): ${show(reached)}; median ${median(reached).toFixed(1)}\n` +
        `token revoked on node 1, refused on node 3 after (ms): ${show(revoked)}; median ${median(revoked).toFixed(1)}`,
    )
    const listed = await call(n3, 'GET', '/v1/tokens', ROOT)
    expect((listed.json as { tokens: unknown[] }).tokens).toEqual([])
  })

  it('a read token from node 2 reads on node 3 but may not write there', async () => {
    const [, n2, n3] = nodes as [Node, Node, Node]
    const { token } = await createToken(n2, { role: 'read' })
    await timeUntil(n3, token, (status) => status === 404)
    expect((await call(n3, 'PUT', '/v1/kv/x', token, 'v')).status).toBe(403)
    expect((await call(n3, 'GET', '/v1/tokens', token)).status).toBe(403)
  })

  it('no token appears in any node log at debug level', () => {
    const lines = nodes.flatMap((node) => node.lines)
    expect(lines.some((line) => line.includes('incoming request'))).toBe(true)
    const text = lines.join('\n') + nodes.map((node) => node.proc.stderr).join('\n')
    for (const token of used) expect(text).not.toContain(token.slice(-16))
  })
})
