/**
 * Processes, ports and directories of a benchmark run: the shared support of test/support (one
 * process, port and polling module for tests and benchmarks), plus the benchmarks' own workers
 * and temp directories. Every child and temp directory is tracked, so `cleanupAll()` (called by
 * run.ts in a `finally`, and on SIGINT/SIGTERM) stops whatever a failed case left behind.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT, spawnNode, stopAllProcesses } from '../../test/support/processes.js'
import type { Proc } from '../../test/support/processes.js'

export { sleep, waitFor } from '../../test/support/poll.js'
export { freePort } from '../../test/support/ports.js'
export { MESHKV_BIN, REPO_ROOT, Proc, cleanEnv, spawnNode } from '../../test/support/processes.js'
export type { Exit } from '../../test/support/processes.js'

export const WORKERS_DIR = join(REPO_ROOT, 'bench', 'workers')

const dirs = new Set<string>()

/** Monotonic milliseconds (fractional). */
export function nowMs(): number {
  return performance.now()
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

/** A TypeScript worker under bench/workers, run with tsx. */
export function spawnWorker(name: string, file: string, args: readonly string[] = []): Proc {
  return spawnNode(name, ['--import', 'tsx', join(WORKERS_DIR, file), ...args])
}

/** Stops every tracked child and removes every tracked temp directory. */
export async function cleanupAll(): Promise<void> {
  await stopAllProcesses()
  await Promise.all([...dirs].map((dir) => removeDir(dir).catch(() => undefined)))
}

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
