/**
 * Processes, ports and directories of a benchmark run. Every child and temp directory made here
 * is tracked, so `cleanupAll()` (called by run.ts in a `finally`, and on SIGINT/SIGTERM) stops
 * whatever a failed case left behind; `process.on('exit')` SIGKILLs any straggler.
 */
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const MESHKV_BIN = join(REPO_ROOT, 'bin', 'meshkv.js')
export const WORKERS_DIR = join(REPO_ROOT, 'bench', 'workers')

const children = new Set<Proc>()
const dirs = new Set<string>()

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Monotonic milliseconds (fractional). */
export function nowMs(): number {
  return performance.now()
}

/** Polls `check` until it returns something other than undefined; throws after `ms`. */
export async function waitFor<T>(
  what: string,
  ms: number,
  check: () => Promise<T | undefined> | T | undefined,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + ms
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline) {
      const because =
        lastError === undefined
          ? ''
          : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`
      throw new Error(`timed out after ${ms} ms waiting for ${what}${because}`)
    }
    await sleep(everyMs)
  }
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return address.port
}

export async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `meshkv-bench-${label}-`))
  dirs.add(dir)
  return dir
}

export async function removeDir(dir: string): Promise<void> {
  dirs.delete(dir)
  await rm(dir, { recursive: true, force: true })
}

/** The environment for children, without meshkv settings that would leak in. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env))
    if (value !== undefined && !name.startsWith('MESHKV_')) env[name] = value
  return env
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** One tracked child process: stdout read line by line, stderr kept (bounded). */
export class Proc {
  readonly child: ChildProcessWithoutNullStreams
  readonly exited: Promise<Exit>
  stderr = ''
  #partial = ''
  #lineListeners = new Set<(line: string) => void>()
  #ended = false

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
  ) {
    this.child = spawn(command, args, { cwd: REPO_ROOT, env: cleanEnv() })
    children.add(this)
    this.child.stdout.setEncoding('utf8')
    this.child.stderr.setEncoding('utf8')
    this.child.stdout.on('data', (chunk: string) => {
      const lines = (this.#partial + chunk).split('\n')
      this.#partial = lines.pop() ?? ''
      for (const line of lines) for (const listener of this.#lineListeners) listener(line)
    })
    this.child.stderr.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-20_000)
    })
    this.exited = new Promise<Exit>((resolve) => {
      this.child.once('error', (error) => {
        this.stderr += String(error)
      })
      this.child.once('close', (code, signal) => {
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

  onLine(listener: (line: string) => void): () => void {
    this.#lineListeners.add(listener)
    return () => this.#lineListeners.delete(listener)
  }

  /** The first stdout line passing `test`; fails when the process ends first or after `ms`. */
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

  /** SIGTERM, then SIGKILL if it is still running after `graceMs`. */
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
}

/** `node <args>` as a tracked child. */
export function spawnNode(name: string, args: readonly string[], nodeOptions: readonly string[] = []): Proc {
  return new Proc(name, process.execPath, [...nodeOptions, ...args])
}

/** A TypeScript worker under bench/workers, run with tsx. */
export function spawnWorker(name: string, file: string, args: readonly string[] = []): Proc {
  return spawnNode(name, ['--import', 'tsx', join(WORKERS_DIR, file), ...args])
}

/** Stops every tracked child and removes every tracked temp directory. */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((proc) => proc.stop('SIGKILL', 2000).catch(() => undefined)))
  await Promise.all([...dirs].map((dir) => removeDir(dir).catch(() => undefined)))
}

process.on('exit', () => {
  for (const proc of children) {
    try {
      proc.child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
})

/** Resident set size and its peak of a process, in bytes (Linux /proc). */
export async function rssOf(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises')
  const text = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)
    return match === null ? NaN : Number(match[1]) * 1024
  }
  return { rss: field('VmRSS'), peak: field('VmHWM') }
}
