/**
 * Real child processes for the cluster and chaos tests and the benchmarks: `node` with arguments,
 * from the repository root, with meshkv settings kept out of the environment; stdout read line by
 * line, stderr kept (its last 20,000 characters). Every child is tracked, so `stopAllProcesses()`
 * ends whatever a failed test or case left behind, and an exiting parent SIGKILLs stragglers.
 */
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The built server binary (runs dist/; `npm run build` first). */
export const MESHKV_BIN = join(REPO_ROOT, 'bin', 'meshkv.js')

const STDERR_KEPT = 20_000
const children = new Set<Proc>()

/** The environment for children: ours, without meshkv settings that would leak in, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env))
    if (value !== undefined && !name.startsWith('MESHKV_')) env[name] = value
  return { ...env, ...extra }
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** One tracked child process. */
export class Proc {
  readonly child: ChildProcessWithoutNullStreams
  /** Settles once the process has ended and its pipes are closed. */
  readonly exited: Promise<Exit>
  stderr = ''
  #partial = ''
  readonly #lineListeners = new Set<(line: string) => void>()
  #ended = false

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    env: Record<string, string> = {},
  ) {
    this.child = spawn(command, args, { cwd: REPO_ROOT, env: cleanEnv(env) })
    children.add(this)
    this.child.stdout.setEncoding('utf8')
    this.child.stderr.setEncoding('utf8')
    this.child.stdout.on('data', (chunk: string) => {
      const lines = (this.#partial + chunk).split('\n')
      this.#partial = lines.pop() ?? ''
      for (const line of lines) this.#emit(line)
    })
    this.child.stderr.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_KEPT)
    })
    this.exited = new Promise<Exit>((resolve) => {
      this.child.once('error', (error) => {
        this.stderr += String(error)
      })
      this.child.once('close', (code, signal) => {
        // A last line without its newline is still output the process wrote.
        if (this.#partial !== '') this.#emit(this.#partial)
        this.#partial = ''
        this.#ended = true
        children.delete(this)
        resolve({ code, signal })
      })
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get running(): boolean {
    return !this.#ended
  }

  /** Calls `listener` with every later stdout line; returns the function that stops it. */
  onLine(listener: (line: string) => void): () => void {
    this.#lineListeners.add(listener)
    return () => this.#lineListeners.delete(listener)
  }

  /** The first later stdout line passing `test`; fails when the process ends first or after `ms`. */
  waitLine(test: (line: string) => boolean, ms: number, what: string): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => finish(new Error(`${this.name}: no ${what} within ${ms} ms; stderr:\n${this.stderr}`)),
        ms,
      )
      const off = this.onLine((line) => {
        if (test(line)) finish(undefined, line)
      })
      void this.exited.then((exit) =>
        finish(new Error(`${this.name} ended (${exit.signal ?? exit.code}) before ${what}; stderr:\n${this.stderr}`)),
      )
      let done = false
      function finish(error: Error | undefined, line?: string): void {
        if (done) return
        done = true
        clearTimeout(timer)
        off()
        if (error === undefined) resolve(line as string)
        else reject(error)
      }
    })
  }

  /** Sends `signal` (after SIGCONT, so a stopped process gets it), SIGKILL after `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<Exit> {
    if (!this.running) return this.exited
    this.child.kill('SIGCONT')
    this.child.kill(signal)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  #emit(line: string): void {
    for (const listener of this.#lineListeners) listener(line)
  }
}

/** `node <nodeOptions> <args>` as a tracked child, with `env` added to the clean environment. */
export function spawnNode(
  name: string,
  args: readonly string[],
  nodeOptions: readonly string[] = [],
  env: Record<string, string> = {},
): Proc {
  return new Proc(name, process.execPath, [...nodeOptions, ...args], env)
}

/** SIGKILLs every tracked child still running and waits until each has ended. */
export async function stopAllProcesses(): Promise<void> {
  await Promise.all([...children].map((proc) => proc.stop('SIGKILL', 2_000).catch(() => undefined)))
}

process.on('exit', () => {
  for (const proc of children) {
    try {
      proc.child.kill('SIGKILL')
    } catch {
      // Already gone.
    }
  }
})

/** What a `meshkv node` process is started with (bin/meshkv.js `node`). */
export interface NodeArgs {
  dir: string
  port: number
  /** Peer URLs; none starts a standalone node (no secret passed either). */
  peers?: readonly string[]
  secret?: string
  advertiseUrl?: string
  peerTimeoutMs?: number
  /** Default warn: refusals and link failures, no per-request lines. */
  logLevel?: string
  sync?: boolean
  extra?: readonly string[]
}

/** The command line of `meshkv node` (after the binary) for `options`. */
export function nodeArgs(options: NodeArgs): string[] {
  const peers = options.peers ?? []
  return [
    'node',
    '--dir',
    options.dir,
    '--port',
    String(options.port),
    '--host',
    '127.0.0.1',
    ...(peers.length > 0 ? ['--peers', peers.join(',')] : []),
    ...(options.secret === undefined ? [] : ['--secret', options.secret]),
    ...(options.advertiseUrl === undefined ? [] : ['--advertise-url', options.advertiseUrl]),
    ...(options.peerTimeoutMs === undefined ? [] : ['--peer-timeout-ms', String(options.peerTimeoutMs)]),
    '--log-level',
    options.logLevel ?? 'warn',
    ...(options.sync === true ? ['--sync'] : []),
    ...(options.extra ?? []),
  ]
}

/** Does every node in `statuses` (from /v1/status) hold a live link to every other one? */
export function allLinked(statuses: readonly { nodeId: string; linked: readonly string[] }[]): boolean {
  const ids = statuses.map((status) => status.nodeId)
  return statuses.every((status) => ids.every((id) => id === status.nodeId || status.linked.includes(id)))
}
