/**
 * Protected mode and the start-up security checks, on real `meshkv` processes: a node without a
 * root token serves loopback only (any other host exits 2 with one line naming how to set a
 * token) unless `--insecure-no-auth`, which starts it with a warning in its log; a short or
 * published cluster secret and a short root token exit 2. `meshkv cluster` keeps the same rule.
 * The embedded face (`MeshNode.open`) refuses the same secrets.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshNode } from '../../src/node/index.js'
import { REFUSED_SECRETS } from '../../src/node/options.js'
import { meshCodeOf } from '../helpers/async.js'
import { buildIfStale, cleanEnv, freePort, killAll, spawnMeshkv, waitReady } from './helpers.js'

/** The one line a configuration error leaves on stderr. */
const CONFIG_LINE = /^meshkv: [^\n]+ \(MESHKV_ERR_CONFIG\)\n$/
const TOKEN = 'a-root-token-of-32-bytes-0123456'
const SECRET = 'a-cluster-secret-0123456789abcdef'

let root: string

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-protected-'))
}, 60_000)

afterAll(async () => {
  await killAll()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

/** Runs `meshkv ARGS` to its end under `env` (no other MESHKV_* variable); its exit and stderr. */
async function run(args: readonly string[], env: Record<string, string> = {}) {
  const running = spawnMeshkv(args, cleanEnv(env))
  const exited = await running.exited
  return { code: exited.code, stderr: exited.stderr }
}

/** Starts `meshkv node` on a fresh directory and a free port, waits until ready, stops it with SIGTERM; its stdout. */
async function startAndStop(name: string, extra: readonly string[], env: Record<string, string>): Promise<string> {
  const port = await freePort()
  const running = spawnMeshkv(
    ['node', '--dir', join(root, name), '--port', String(port), '--log-level', 'warn', ...extra],
    cleanEnv(env),
  )
  await waitReady(`http://127.0.0.1:${port}`, running)
  running.child.kill('SIGTERM')
  const exited = await running.exited
  expect(exited.code).toBe(0)
  return exited.stdout.toString('utf8')
}

async function nodeArgs(name: string, ...extra: string[]): Promise<string[]> {
  return ['node', '--dir', join(root, name), '--port', String(await freePort()), '--log-level', 'warn', ...extra]
}

describe('protected mode', () => {
  it('a node on 0.0.0.0 (or any non-loopback host) without a root token exits 2 with one line', async () => {
    for (const host of ['0.0.0.0', '::']) {
      const { code, stderr } = await run(await nodeArgs('open', '--host', host))
      expect(code).toBe(2)
      expect(stderr).toMatch(CONFIG_LINE)
      expect(stderr).toContain('--root-token-file FILE or MESHKV_ROOT_TOKEN')
    }
    const byEnv = await run(await nodeArgs('open-env'), { MESHKV_HOST: '0.0.0.0' })
    expect(byEnv.code).toBe(2)
    expect(byEnv.stderr).toMatch(CONFIG_LINE)
  }, 30_000)

  it('with --insecure-no-auth it starts on 0.0.0.0, logs a warning, and stops cleanly', async () => {
    const stdout = await startAndStop('insecure', ['--host', '0.0.0.0', '--insecure-no-auth'], {})
    const warnings = stdout.split('\n').filter((line) => line.includes('"level":40') && line.includes('INSECURE'))
    expect(warnings).toHaveLength(1)
    expect(JSON.parse(warnings[0] as string)).toMatchObject({ host: '0.0.0.0' })
  }, 30_000)

  it('with a root token from MESHKV_ROOT_TOKEN it starts on 0.0.0.0 and does not warn', async () => {
    const stdout = await startAndStop('token', ['--host', '0.0.0.0'], { MESHKV_ROOT_TOKEN: TOKEN })
    expect(stdout).not.toContain('INSECURE')
    // The token is never logged.
    expect(stdout).not.toContain(TOKEN)
  }, 30_000)

  it('meshkv cluster on 0.0.0.0 without a root token exits 2 with one line, before starting any node', async () => {
    const dir = join(root, 'cluster')
    const port = await freePort()
    const { code, stderr } = await run([
      'cluster',
      '--dir',
      dir,
      '--nodes',
      '1',
      '--base-port',
      String(port),
      '--host',
      '0.0.0.0',
    ])
    expect(code).toBe(2)
    expect(stderr).toMatch(CONFIG_LINE)
    expect(stderr).toContain('MESHKV_ROOT_TOKEN')
    expect(existsSync(dir)).toBe(false)
  }, 30_000)
  it('meshkv cluster on 0.0.0.0 with --insecure-no-auth starts its nodes, warns, and stops cleanly', async () => {
    const dir = join(root, 'cluster-insecure')
    const port = await freePort()
    const running = spawnMeshkv(
      ['cluster', '--dir', dir, '--nodes', '1', '--base-port', String(port), '--host', '0.0.0.0', '--insecure-no-auth'],
      cleanEnv(),
    )
    await waitReady(`http://127.0.0.1:${port}`, running)
    running.child.kill('SIGTERM')
    const exited = await running.exited
    expect(exited.code).toBe(0)
    expect(exited.stderr).toMatch(/^meshkv: INSECURE: no root token on 0\.0\.0\.0/m)
    // The node itself warns in its log too.
    expect(await readFile(join(dir, 'node1.log'), 'utf8')).toContain('INSECURE')
  }, 30_000)
})

describe('secrets and tokens at start', () => {
  it('a cluster secret shorter than 16 bytes exits 2 with one line, by flag, variable or file', async () => {
    const secretFile = join(root, 'short-secret.txt')
    await writeFile(secretFile, 'fifteen-bytes!!\n')
    for (const [args, env] of [
      [['--secret', 'fifteen-bytes!!'], {}],
      [[], { MESHKV_SECRET: 'short' }],
      [['--secret-file', secretFile], {}],
    ] as const) {
      const { code, stderr } = await run(await nodeArgs('short-secret', ...args), env)
      expect(code).toBe(2)
      expect(stderr).toMatch(CONFIG_LINE)
    }
  }, 30_000)

  it('the secret docker-compose.yml used to ship, and every other published one, exits 2', async () => {
    expect(REFUSED_SECRETS).toContain('change-me-meshkv-demo-secret')
    for (const secret of REFUSED_SECRETS) {
      const { code, stderr } = await run(await nodeArgs('published'), { MESHKV_SECRET: secret })
      expect(code).toBe(2)
      expect(stderr).toMatch(CONFIG_LINE)
    }
  }, 30_000)

  it('a root token shorter than 16 bytes exits 2 with one line; so does giving it twice', async () => {
    const short = await run(await nodeArgs('short-token'), { MESHKV_ROOT_TOKEN: 'fifteen-bytes!!' })
    expect(short.code).toBe(2)
    expect(short.stderr).toMatch(CONFIG_LINE)
    expect(short.stderr).not.toContain('fifteen-bytes!!')
    const twice = await run(await nodeArgs('twice', '--root-token-file', join(root, 'any')), {
      MESHKV_ROOT_TOKEN: TOKEN,
    })
    expect(twice.code).toBe(2)
    expect(twice.stderr).toMatch(CONFIG_LINE)
  }, 30_000)

  it('a good secret starts a node', async () => {
    expect(await startAndStop('good', [], { MESHKV_SECRET: SECRET })).not.toContain('INSECURE')
  }, 30_000)

  it('MeshNode.open refuses a short or published secret (MESHKV_ERR_CONFIG), and takes a good one', async () => {
    for (const secret of ['x', 'not-the-secret', ...REFUSED_SECRETS])
      expect(await meshCodeOf(MeshNode.open({ dir: '', memory: true, secret }))).toBe('MESHKV_ERR_CONFIG')
    const node = await MeshNode.open({ dir: '', memory: true, secret: SECRET })
    await node.close()
  })
})
