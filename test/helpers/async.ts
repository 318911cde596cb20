/**
 * Small async tools for storage and node tests: the MeshError code a promise rejects with, an
 * iterator step with a deadline (so a missing event fails fast instead of hanging the suite), a
 * seeded PRNG, UTF-8 byte order, and temporary directories.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MeshError } from '../../src/errors.js'
import type { ErrorCode } from '../../src/errors.js'

/** What `work` rejects (or throws) with; fails when it succeeds. */
export async function rejectionOf(work: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof work === 'function' ? work() : work)
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection, but the operation succeeded')
}

/** The code of the MeshError `work` rejects with; any other outcome fails, saying what happened. */
export async function meshCodeOf(work: Promise<unknown> | (() => unknown)): Promise<ErrorCode> {
  const error = await rejectionOf(work)
  if (!(error instanceof MeshError)) throw new Error(`expected a MeshError, got ${String(error)}`, { cause: error })
  return error.code
}

/** The next step of an async iterator, or a failure after `ms` milliseconds. */
export async function nextWithin<T>(
  iterator: AsyncIterator<T>,
  ms = 2_000,
  what = 'the next item',
): Promise<IteratorResult<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not arrive within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([iterator.next(), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** `count` values from an iterator, each within `ms`. */
export async function takeWithin<T>(iterator: AsyncIterator<T>, count: number, ms = 2_000): Promise<T[]> {
  const out: T[] = []
  while (out.length < count) {
    const step = await nextWithin(iterator, ms, `item ${out.length + 1} of ${count}`)
    if (step.done === true) throw new Error(`the iterator ended after ${out.length} of ${count} items`)
    out.push(step.value)
  }
  return out
}

/** Resolves after the current macrotask queue has run (lets group commits flush). */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

export { sleep } from '../support/poll.js'

/** mulberry32: a small seeded PRNG giving floats in [0, 1). */
export function prng(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Orders strings as LevelDB does: by the bytes of their UTF-8 encoding. */
export function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/** A fresh directory under the OS temp dir, and its removal. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `meshkv-${prefix}-`))
  return { dir, remove: () => rm(dir, { recursive: true, force: true, maxRetries: 3 }) }
}
