/**
 * Real child processes for tests: a fixture script under test/fixtures run with
 * `node --import tsx`, its stdout read line by line, its end awaited.
 */
import { spawn } from 'node:child_process'
import type { ChildProcessByStdio } from 'node:child_process'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

export type Child = ChildProcessByStdio<null, Readable, Readable>

/**
 * For a fixture (the child side): never outlive the parent (a lost stdout pipe ends the process
 * with 4, a run longer than `maxMs` with 3), and the function that writes one line to the parent.
 */
export function fixtureLines(maxMs = 30_000): (line: string) => void {
  process.stdout.on('error', () => process.exit(4))
  setTimeout(() => process.exit(3), maxMs).unref()
  return (line) => {
    process.stdout.write(`${line}\n`)
  }
}

interface LineWaiter {
  readonly test: (line: string) => boolean
  readonly resolve: (line: string) => void
}

/** Starts `test/fixtures/<name>` with `args`, from the repository root. */
export function spawnFixture(name: string, args: readonly string[]): Child {
  return spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'fixtures', name), ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/**
 * Collects a child's complete stdout lines (a line without its newline is not a line yet) and its
 * stderr, and ends once the process has exited and its pipes are drained.
 */
export class ChildLines {
  readonly lines: string[] = []
  stderr = ''
  /** Resolves with how the child ended, after all its output has been read. */
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  #partial = ''
  #waiters: LineWaiter[] = []

  constructor(readonly child: Child) {
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => this.#take(chunk))
    child.stderr.on('data', (chunk: string) => (this.stderr += chunk))
    this.ended = new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code, signal) => resolve({ code, signal }))
    })
  }

  /** The first line (already read or still to come) that passes `test`. */
  async waitFor(test: (line: string) => boolean, ms: number, what: string): Promise<string> {
    const seen = this.lines.find(test)
    if (seen !== undefined) return seen
    let timer: ReturnType<typeof setTimeout> | undefined
    let waiter: LineWaiter | undefined
    try {
      return await Promise.race([
        new Promise<string>((resolve) => {
          waiter = { test, resolve }
          this.#waiters.push(waiter)
        }),
        this.ended.then(({ code, signal }) => {
          throw new Error(`the child ended (code ${code}, signal ${signal}) before ${what}; stderr:\n${this.stderr}`)
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; stderr:\n${this.stderr}`)), ms)
        }),
      ])
    } finally {
      clearTimeout(timer)
      this.#waiters = this.#waiters.filter((other) => other !== waiter)
    }
  }

  #take(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n')
    this.#partial = parts.pop() ?? ''
    for (const line of parts) {
      this.lines.push(line)
      for (const waiter of this.#waiters) if (waiter.test(line)) waiter.resolve(line)
    }
  }
}
