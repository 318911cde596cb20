/**
 * kvctl against a real `meshkv node --root-token-file` process: the root (from a token file)
 * makes a read token, which reads but cannot write (exit 1, MESHKV_ERR_FORBIDDEN), `token ls`
 * shows it, `token revoke` ends it (exit 1, MESHKV_ERR_UNAUTHENTICATED). The token appears on
 * stdout once, from `token create`, and never on stderr.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildIfStale, cleanEnv, killAll, kvctl, startMeshkv } from './helpers.js'

const ROOT = 'kvctl-tests-root-token-0123456789abcdef'
const ERROR_LINE = /^kvctl: [^\n]+ \((MESHKV_ERR_[A-Z_]+)\)\n$/

let dir: string
let rootFile: string
let url: string

beforeAll(async () => {
  buildIfStale()
  dir = await mkdtemp(join(tmpdir(), 'meshkv-kvctl-tokens-'))
  rootFile = join(dir, 'root-token')
  await writeFile(rootFile, `${ROOT}\n`, { mode: 0o600 })
  url = (await startMeshkv(join(dir, 'data'), ['--root-token-file', rootFile])).url
}, 60_000)

afterAll(async () => {
  await killAll()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

/** kvctl against the node with `args`, and MESHKV_TOKEN when given. */
function kv(args: readonly string[], token?: string) {
  return kvctl(['--node', url, ...args], {
    env: { ...cleanEnv(), ...(token === undefined ? {} : { MESHKV_TOKEN: token }) },
  })
}

describe('kvctl with tokens against a meshkv node with a root token', () => {
  it('without a token: exit 1 and one line naming MESHKV_ERR_UNAUTHENTICATED', async () => {
    const result = await kv(['get', 'k'])
    expect(result.code).toBe(1)
    expect(ERROR_LINE.exec(result.stderr)?.[1]).toBe('MESHKV_ERR_UNAUTHENTICATED')
  })

  it('create, use, list and revoke a read token', async () => {
    expect((await kv(['--token-file', rootFile, 'put', 'app/k', 'v'])).code).toBe(0)
    const created = await kv(['--token-file', rootFile, 'token', 'create', '--role', 'read', '--name', 'ci'])
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' })
    const token = created.out.trim()
    expect(created.out).toBe(`${token}\n`)
    expect(token.length).toBeGreaterThan(16)

    const read = await kv(['get', 'app/k'], token)
    expect({ code: read.code, out: read.out }).toEqual({ code: 0, out: 'v' })
    const write = await kv(['put', 'app/k', 'overwritten'], token)
    expect(write.code).toBe(1)
    expect(ERROR_LINE.exec(write.stderr)?.[1]).toBe('MESHKV_ERR_FORBIDDEN')
    expect(write.stderr).not.toContain(token)

    // The root from the file wins over the read token in the environment.
    const list = await kv(['--token-file', rootFile, 'token', 'ls'], token)
    expect(list.code).toBe(0)
    const lines = list.out.trim().split('\n')
    expect(lines[0]).toMatch(/^ID +ROLE +PREFIX +NAME +CREATED$/)
    const row = lines.find((line) => line.includes(' ci '))
    expect(row).toMatch(/^[0-9a-f]{16} +read +- +ci +\d{4}-\d\d-\d\dT/)
    expect(list.out).not.toContain(token)
    const id = row!.split(/ +/)[0]!

    const json = JSON.parse((await kv(['-o', 'json', 'token', 'ls'], ROOT)).out) as { tokens: { id: string }[] }
    expect(json.tokens.map((listed) => listed.id)).toContain(id)

    const revoke = await kv(['--token', ROOT, 'token', 'revoke', id])
    expect({ code: revoke.code, out: revoke.out }).toEqual({ code: 0, out: `revoked ${id}\n` })
    const after = await kv(['get', 'app/k'], token)
    expect(after.code).toBe(1)
    expect(ERROR_LINE.exec(after.stderr)?.[1]).toBe('MESHKV_ERR_UNAUTHENTICATED')
    expect(after.stderr).not.toContain(token)
    const again = await kv(['token', 'revoke', id], ROOT)
    expect(again.code).toBe(3)
  })

  it('token create -o json prints the whole CreatedToken', async () => {
    const created = await kv(['-o', 'json', 'token', 'create', '--role', 'write', '--prefix', 'team/'], ROOT)
    expect(created.code).toBe(0)
    const body = JSON.parse(created.out) as Record<string, unknown>
    expect(body).toMatchObject({ role: 'write', prefix: 'team/', name: null })
    expect(Object.keys(body).sort()).toEqual(['createdAt', 'id', 'name', 'prefix', 'role', 'token'])
    const writer = String(body['token'])
    expect((await kv(['put', 'team/a', '1'], writer)).code).toBe(0)
    expect(ERROR_LINE.exec((await kv(['put', 'other/a', '1'], writer)).stderr)?.[1]).toBe('MESHKV_ERR_FORBIDDEN')
  })
})
