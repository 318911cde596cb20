/**
 * kvctl's access flags, in process: which token wins (`--token`, then `--token-file`, then
 * `MESHKV_TOKEN`), what a bad token file or CA file does (usage, exit 2), and that the token
 * reaches the node as a bearer header yet never kvctl's output. The `token` verbs and
 * `forget --force` against a node that answers like one.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveAccess } from '../../src/cli/kvctl-access.js'
import { runKvctl } from '../../src/cli/kvctl-program.js'

const FLAG_TOKEN = 'flag-token-aaaaaaaa'
const FILE_TOKEN = 'file-token-bbbbbbbb'
const ENV_TOKEN = 'env-token-cccccccc'
const CREATED_SECRET = 'mkv_0123456789abcdef.made-secret'
const TOKEN_INFO = { id: '0123456789abcdef', role: 'read', prefix: null, name: 'ci', createdAt: '2026-12-06T23:00:00Z' }

let dir: string
let tokenFile: string
let url: string
const seen: { line: string; authorization: string | undefined; body: string }[] = []
const server = createServer((request: IncomingMessage, response: ServerResponse) => {
  let body = ''
  request.setEncoding('utf8')
  request.on('data', (chunk: string) => (body += chunk))
  request.on('end', () => {
    seen.push({ line: `${request.method} ${request.url}`, authorization: request.headers.authorization, body })
    answer(request, response)
  })
})

function answer(request: IncomingMessage, response: ServerResponse): void {
  const send = (status: number, body: unknown, type = 'application/json'): void => {
    response.writeHead(status, { 'content-type': type })
    response.end(JSON.stringify(body))
  }
  const path = (request.url ?? '').split('?')[0] ?? ''
  if (request.headers.authorization === 'Bearer denied')
    return send(403, { status: 403, code: 'MESHKV_ERR_FORBIDDEN', detail: 'not yours' }, 'application/problem+json')
  if (path === '/v1/tokens' && request.method === 'POST') return send(201, { ...TOKEN_INFO, token: CREATED_SECRET })
  if (path === '/v1/tokens')
    return send(200, {
      tokens: [TOKEN_INFO, { ...TOKEN_INFO, id: 'fedcba9876543210', role: 'admin', prefix: 'app/', name: null }],
    })
  if (path.startsWith('/v1/tokens/')) return send(200, { revoked: path.slice(11) })
  // Like a node whose peer is still linked: forgotten only with force.
  if (path.startsWith('/v1/members/') && !(request.url ?? '').endsWith('?force=true'))
    return send(
      409,
      { status: 409, code: 'MESHKV_ERR_MEMBER_ALIVE', detail: 'it is alive' },
      'application/problem+json',
    )
  if (path.startsWith('/v1/members/')) return send(200, { members: [] })
  send(404, { status: 404, code: 'MESHKV_ERR_NOT_FOUND', detail: 'no' }, 'application/problem+json')
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshkv-kvctl-access-'))
  tokenFile = join(dir, 'token')
  await writeFile(tokenFile, `  ${FILE_TOKEN}  \nsecond line ignored\n`)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  url = `http://127.0.0.1:${address.port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  await rm(dir, { recursive: true, force: true })
})

function collector(): { stream: Writable; text: () => string } {
  let text = ''
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8')
      done()
    },
  })
  return { stream, text: () => text }
}

/** kvctl in this process against the recording node; resolves to its exit code and output. */
async function kv(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const stdout = collector()
  const stderr = collector()
  const stdin = new PassThrough()
  stdin.end()
  const code = await runKvctl(['--node', url, ...args], { stdin, stdout: stdout.stream, stderr: stderr.stream, env })
  return { code, out: stdout.text(), err: stderr.text() }
}

describe('which token kvctl sends', () => {
  it('--token wins over --token-file, which wins over MESHKV_TOKEN', () => {
    const env = { MESHKV_TOKEN: ENV_TOKEN }
    expect(resolveAccess({ token: FLAG_TOKEN, tokenFile }, env).token).toBe(FLAG_TOKEN)
    expect(resolveAccess({ tokenFile }, env).token).toBe(FILE_TOKEN)
    expect(resolveAccess({}, env).token).toBe(ENV_TOKEN)
    expect(resolveAccess({}, { MESHKV_TOKEN: '  ' }).token).toBeUndefined()
    expect(resolveAccess({}, {})).toEqual({})
  })

  it('the chosen token reaches the node as a bearer header', async () => {
    const env = { MESHKV_TOKEN: ENV_TOKEN }
    const cases = [
      [['--token', FLAG_TOKEN, '--token-file', tokenFile], FLAG_TOKEN],
      [['--token-file', tokenFile], FILE_TOKEN],
      [[], ENV_TOKEN],
    ] as const
    for (const [flags, expected] of cases) {
      const before = seen.length
      const result = await kv([...flags, 'token', 'ls'], env)
      expect(result.code).toBe(0)
      expect(seen.slice(before).map((request) => request.authorization)).toEqual([`Bearer ${expected}`])
      expect(result.out + result.err).not.toContain(expected)
    }
  })

  it('a missing or empty token file, or a missing CA file, is a usage error (exit 2) and nothing is sent', async () => {
    const empty = join(dir, 'empty')
    await writeFile(empty, '\n  \n')
    const before = seen.length
    for (const flags of [
      ['--token-file', join(dir, 'nope')],
      ['--token-file', empty],
      ['--cacert', join(dir, 'nope.pem')],
    ]) {
      const result = await kv([...flags, 'token', 'ls'])
      expect(result.code).toBe(2)
      expect(result.err).toMatch(/^kvctl: [^\n]+\(see kvctl --help\)\n$/)
    }
    expect((await kv(['token', 'ls'], { MESHKV_CACERT: join(dir, 'nope.pem') })).code).toBe(2)
    expect(seen.length).toBe(before)
  })
})

describe('kvctl token and forget --force', () => {
  it('token create prints the token alone in plain output, the whole CreatedToken with -o json', async () => {
    const plain = await kv([
      '--token',
      FLAG_TOKEN,
      'token',
      'create',
      '--role',
      'read',
      '--prefix',
      'app/',
      '--name',
      'ci',
    ])
    expect(plain).toEqual({ code: 0, out: `${CREATED_SECRET}\n`, err: '' })
    expect(JSON.parse(seen.at(-1)!.body)).toEqual({ role: 'read', prefix: 'app/', name: 'ci' })
    const json = await kv(['-o', 'json', 'token', 'create', '--role', 'admin'])
    expect(JSON.parse(json.out)).toEqual({ ...TOKEN_INFO, token: CREATED_SECRET })
    expect(JSON.parse(seen.at(-1)!.body)).toEqual({ role: 'admin' })
  })

  it('token create without a valid --role is a usage error', async () => {
    expect((await kv(['token', 'create'])).code).toBe(2)
    expect((await kv(['token', 'create', '--role', 'root'])).code).toBe(2)
  })

  it('token ls is a table (id, role, prefix, name, created); revoke names the id', async () => {
    const list = await kv(['token', 'ls'])
    expect(list.code).toBe(0)
    expect(list.out.split('\n')).toEqual([
      'ID                ROLE   PREFIX  NAME  CREATED',
      '0123456789abcdef  read   -       ci    2026-12-06T23:00:00Z',
      'fedcba9876543210  admin  app/    -     2026-12-06T23:00:00Z',
      '',
    ])
    expect(JSON.parse((await kv(['-o', 'json', 'token', 'ls'])).out).tokens).toHaveLength(2)
    const revoke = await kv(['token', 'revoke', '0123456789abcdef'])
    expect(revoke).toEqual({ code: 0, out: 'revoked 0123456789abcdef\n', err: '' })
    expect(seen.at(-1)!.line).toBe('DELETE /v1/tokens/0123456789abcdef')
  })

  it('a 403 exits 1 with one line naming the code, and no token in it', async () => {
    const result = await kv(['--token', 'denied', 'token', 'ls'])
    expect(result.code).toBe(1)
    expect(result.out).toBe('')
    expect(result.err).toMatch(/^kvctl: [^\n]+ \(MESHKV_ERR_FORBIDDEN\)\n$/)
  })

  it('forget --force sends force=true; plain forget does not, and a living member is refused (exit 1)', async () => {
    const refused = await kv(['forget', 'aaaaaaaaaaaaaaaa'])
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(/^kvctl: [^\n]+ \(MESHKV_ERR_MEMBER_ALIVE\)\n$/)
    expect(seen.at(-1)!.line).toBe('DELETE /v1/members/aaaaaaaaaaaaaaaa')
    expect((await kv(['forget', 'aaaaaaaaaaaaaaaa', '--force'])).code).toBe(0)
    expect(seen.at(-1)!.line).toBe('DELETE /v1/members/aaaaaaaaaaaaaaaa?force=true')
  })
})
