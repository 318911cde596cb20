/**
 * `meshkv cluster`: a local cluster on this machine, one `meshkv node` process per node, for
 * trying meshkv without Docker (`npm start`). Node i listens on basePort + i with its data in
 * DIR/node<i+1> and its log in DIR/node<i+1>.log. The cluster secret is made once and kept in
 * DIR/cluster-secret (mode 0600), so a restart rejoins the same cluster.
 *
 * A node process that dies is reported and not restarted: the others keep serving, which is the
 * point. SIGTERM/SIGINT stop every node gracefully and exit 0; a second signal kills them and
 * exits 1.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import closeWithGrace from 'close-with-grace'
import { MeshError } from '../errors.js'
import { isLoopbackHost } from './config.js'

export interface LocalClusterConfig {
  dir: string
  nodes: number
  basePort: number
  host: string
  /** Every node's root token (passed in its environment, never on its command line). */
  rootToken: string | undefined
  insecureNoAuth: boolean
}

const READY_WAIT_MS = 30_000
const MESHKV_BIN = fileURLToPath(new URL('../../bin/meshkv.js', import.meta.url))

export async function runLocalCluster(config: LocalClusterConfig): Promise<void> {
  if (!Number.isSafeInteger(config.nodes) || config.nodes < 1 || config.nodes > 9)
    throw new MeshError('MESHKV_ERR_CONFIG', '--nodes must be from 1 to 9')
  await mkdir(config.dir, { recursive: true })
  const secret = await clusterSecret(config.dir)
  const urls = Array.from({ length: config.nodes }, (_, index) => `http://${config.host}:${config.basePort + index}`)
  const children = urls.map((url, index) => startNode(config, urls, index, secret))
  stopOnSignals(children)
  process.stdout.write(`meshkv local cluster: ${config.nodes} nodes, data in ${resolve(config.dir)}\n`)
  if (config.rootToken === undefined && !isLoopbackHost(config.host))
    process.stderr.write(
      `meshkv: INSECURE: no root token on ${config.host}: anyone who reaches these ports can do anything\n`,
    )
  await Promise.all(
    urls.map(async (url, index) => {
      const ready = await waitReady(url, children[index] as ChildProcess)
      const name = `node${index + 1}`
      process.stdout.write(
        `  ${name}  ${url}  ${ready ? 'ready' : 'NOT READY (see its log)'}  log: ${join(config.dir, `${name}.log`)}\n`,
      )
    }),
  )
  process.stdout.write(`\nTry it (every node takes reads and writes):\n`)
  if (config.rootToken !== undefined) process.stdout.write(`  (with MESHKV_TOKEN set to the root token)\n`)
  process.stdout.write(`  npx kvctl --node ${urls[0]} put hello world\n`)
  process.stdout.write(`  npx kvctl --node ${urls[urls.length - 1]} get hello\n`)
  process.stdout.write(`  npx kvctl --node ${urls.join(',')} status\n`)
  process.stdout.write(`Ctrl-C stops the cluster.\n`)
}

async function clusterSecret(dir: string): Promise<string> {
  const file = join(dir, 'cluster-secret')
  try {
    const kept = (await readFile(file, 'utf8')).trim()
    if (kept.length > 0) return kept
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error
  }
  const secret = randomBytes(24).toString('hex')
  await writeFile(file, `${secret}\n`, { mode: 0o600 })
  return secret
}

function startNode(config: LocalClusterConfig, urls: string[], index: number, secret: string): ChildProcess {
  const name = `node${index + 1}`
  const log = createWriteStream(join(config.dir, `${name}.log`), { flags: 'a' })
  const child = spawn(
    process.execPath,
    [
      MESHKV_BIN,
      'node',
      '--dir',
      join(config.dir, name),
      '--port',
      String(config.basePort + index),
      '--host',
      config.host,
      '--peers',
      urls.filter((_, other) => other !== index).join(','),
      ...(config.insecureNoAuth ? ['--insecure-no-auth'] : []),
    ],
    { env: nodeEnv(config, secret), stdio: ['ignore', 'pipe', 'pipe'] },
  )
  child.stdout?.pipe(log)
  child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(`[${name}] ${chunk.toString()}`))
  child.on('exit', (code, signal) => {
    process.stderr.write(`[${name}] exited (${signal ?? `code ${code}`}); the other nodes keep serving\n`)
  })
  return child
}

/** A node's environment: the cluster's secret and root token, in place of any file naming them. */
function nodeEnv(config: LocalClusterConfig, secret: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, MESHKV_SECRET: secret }
  delete env['MESHKV_SECRET_FILE']
  delete env['MESHKV_ROOT_TOKEN_FILE']
  delete env['MESHKV_ROOT_TOKEN']
  if (config.rootToken !== undefined) env['MESHKV_ROOT_TOKEN'] = config.rootToken
  return env
}

async function waitReady(url: string, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + READY_WAIT_MS
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) })
      if (response.ok) return true
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 200))
  }
  return false
}

/**
 * The first signal stops every node gracefully and exits 0 once they have all exited (each node
 * bounds its own shutdown, so there is no timer here); a second signal kills them and exits 1.
 * close-with-grace keeps that order, as it does for `meshkv node`.
 */
function stopOnSignals(children: ChildProcess[]): void {
  closeWithGrace(
    {
      delay: false,
      logger: false,
      skip: ['uncaughtException', 'unhandledRejection', 'beforeExit'],
      onSecondSignal: () => signalAll(children, 'SIGKILL'),
    },
    async () => {
      const exited = children.map((child) =>
        isRunning(child) ? new Promise<void>((done) => child.once('exit', () => done())) : undefined,
      )
      signalAll(children, 'SIGTERM')
      await Promise.all(exited)
    },
  )
}

function signalAll(children: readonly ChildProcess[], signal: NodeJS.Signals): void {
  for (const child of children) if (isRunning(child)) child.kill(signal)
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}
