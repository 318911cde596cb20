/**
 * The access table (test/http/access-table.ts) asked of a real `meshkv node` process over real
 * HTTP: every route, HEAD included, by every kind of caller (no token, a wrong one, read, write,
 * admin, a write token limited to a prefix inside and outside it, and the root token from
 * `--root-token-file`). The tokens are made through `POST /v1/tokens`, as an operator would.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/ports.js'
import { MESHKV_BIN, nodeArgs, spawnNode, stopAllProcesses } from '../support/processes.js'
import type { Call, Who } from '../http/access-table.js'
import { ALL_ROWS, PREFIX, ROOT, expectRowAnswers } from '../http/access-table.js'
import type { HttpAnswer } from './helpers.js'
import { buildIfStale, request, waitFor } from './helpers.js'

let scratch: string
let url: string
const tokens: Partial<Record<Who, string>> = {}

beforeAll(async () => {
  buildIfStale()
  scratch = await mkdtemp(join(tmpdir(), 'meshkv-auth-table-'))
  const tokenFile = join(scratch, 'root-token')
  await writeFile(tokenFile, `${ROOT}\n`, { mode: 0o600 })
  const port = await freePort()
  url = `http://127.0.0.1:${port}`
  const proc = spawnNode('meshkv node (auth table)', [
    MESHKV_BIN,
    ...nodeArgs({ dir: join(scratch, 'node'), port, extra: ['--root-token-file', tokenFile] }),
  ])
  await waitFor(`${url} ready; stderr: ${proc.stderr}`, 20_000, async () =>
    (await request(`${url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
  )
  tokens.root = ROOT
  tokens.wrong = `mkv_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`
  for (const role of ['read', 'write', 'admin'] as const) tokens[role] = await createToken({ role })
  tokens.prefixed = await createToken({ role: 'write', prefix: PREFIX })
  for (const key of ['app-k', 'other-k'])
    expect((await send('PUT', { url: `/v1/kv/${key}`, body: 'v' }, ROOT)).status).toBe(200)
}, 60_000)

afterAll(async () => {
  await stopAllProcesses()
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
})

async function createToken(spec: object): Promise<string> {
  const answer = await send('POST', { url: '/v1/tokens', body: spec }, ROOT)
  expect(answer.status).toBe(201)
  return (answer.json as { token: string }).token
}

function send(method: string, call: Call, token: string | undefined): Promise<HttpAnswer> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
  let body: string | undefined
  if (typeof call.body === 'string') {
    headers['content-type'] = 'text/plain'
    body = call.body
  } else if (call.body !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(call.body)
  }
  return request(`${url}${call.url}`, { method, headers, ...(body === undefined ? {} : { body }) })
}

describe('every route by every caller, on a real process', () => {
  for (const row of ALL_ROWS) {
    it(`${row.method} ${row.route}`, async () => {
      await expectRowAnswers(
        row,
        (call, who) => send(row.method, call, tokens[who]),
        (answer, status) => {
          expect(answer.json?.['code']).toBe(status === 401 ? 'MESHKV_ERR_UNAUTHENTICATED' : 'MESHKV_ERR_FORBIDDEN')
          if (status === 401) expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="meshkv"')
        },
      )
    })
  }
})
