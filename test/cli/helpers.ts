/**
 * The real binaries for the CLI tests: `node bin/meshkv.js` and `node bin/kvctl.js` as child
 * processes, run from the built `dist/` (built here when it is missing or older than `src/`).
 * Every child started here is tracked, so `killAll` can end whatever a failed test left behind.
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cleanEnv } from '../support/processes.js'
import { freePort } from '../support/ports.js'

export { cleanEnv, freePort }

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const MESHKV_BIN = join(REPO_ROOT, 'bin', 'meshkv.js')
const KVCTL_BIN = join(REPO_ROOT, 'bin', 'kvctl.js')
const BUILT = [join(REPO_ROOT, 'dist', 'cli', 'meshkv.js'), join(REPO_ROOT, 'dist', 'cli', 'kvctl.js')]

const children = new Set<ChildProcessWithoutNullStreams>()

/** `npm test` builds first; a direct `vitest run` builds here when dist is missing or stale. */
export function buildIfStale(): void {
  const builtMs = Math.min(...BUILT.map((file) => (existsSync(file) ? statSync(file).mtimeMs : 0)))
  if (builtMs > newestMs(join(REPO_ROOT, 'src'))) return
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, stdio: 'inherit' })
}

function newestMs(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMs(path) : statSync(path).mtimeMs)
  }
  return newest
}

export interface Exited {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
}

/** A child whose output is collected; `exited` settles after it ends and its pipes drain. */
export interface RunningChild {
  child: ChildProcessWithoutNullStreams
  stdout: () => string
  stderr: () => string
  exited: Promise<Exited>
}

function track(child: ChildProcessWithoutNullStreams): RunningChild {
  children.add(child)
  const out: Buffer[] = []
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => (err += chunk))
  const exited = new Promise<Exited>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      children.delete(child)
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err })
    })
  })
  return { child, stdout: () => Buffer.concat(out).toString('utf8'), stderr: () => err, exited }
}

export function spawnMeshkv(args: readonly string[], env: Record<string, string> = cleanEnv()): RunningChild {
  return track(spawn(process.execPath, [MESHKV_BIN, ...args], { cwd: REPO_ROOT, env }))
}

export function spawnKvctl(args: readonly string[], env: Record<string, string> = cleanEnv()): RunningChild {
  return track(spawn(process.execPath, [KVCTL_BIN, ...args], { cwd: REPO_ROOT, env }))
}

/** Runs kvctl to the end, with `input` on stdin (stdin is closed either way). */
export async function kvctl(
  args: readonly string[],
  options: { input?: string | Uint8Array; env?: Record<string, string> } = {},
): Promise<Exited & { out: string }> {
  const running = spawnKvctl(args, options.env)
  running.child.stdin.on('error', () => undefined)
  running.child.stdin.end(options.input)
  const exited = await running.exited
  return { ...exited, out: exited.stdout.toString('utf8') }
}

/** Polls `/readyz` until it answers 200; fails early when the process ends first. */
export async function waitReady(url: string, running: RunningChild, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  let ended = false
  void running.exited.then(() => (ended = true))
  while (Date.now() < deadline) {
    if (ended) throw new Error(`meshkv ended before it was ready; stderr:\n${running.stderr()}`)
    try {
      const response = await fetch(`${url}/readyz`)
      if (response.status === 200) return
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`meshkv at ${url} was not ready within ${ms} ms; stderr:\n${running.stderr()}`)
}

/** Starts `meshkv node` on `dir` and a free port, and waits until it is ready. */
export async function startMeshkv(
  dir: string,
  extraArgs: readonly string[] = [],
): Promise<RunningChild & { url: string; port: number }> {
  const port = await freePort()
  const running = spawnMeshkv(['node', '--dir', dir, '--port', String(port), '--log-level', 'warn', ...extraArgs])
  const url = `http://127.0.0.1:${port}`
  await waitReady(url, running)
  return { ...running, url, port }
}

/** Ends every child still running (after a failed test) and waits for them. */
export async function killAll(): Promise<void> {
  const ending = [...children].map(
    (child) =>
      new Promise<void>((resolve) => {
        child.once('close', () => resolve())
        child.kill('SIGKILL')
      }),
  )
  await Promise.all(ending)
}
