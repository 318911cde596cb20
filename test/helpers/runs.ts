/**
 * How many runs each property gets: 1,000 by default (docs/testing.md, level L0), or `MESHKV_RUNS`.
 * fast-check prints the seed, the path and the shrunk counterexample of a failure; replay with
 * `fc.assert(property, { seed, path })`.
 */
import { MeshError } from '../../src/errors.js'
import type { ErrorCode } from '../../src/errors.js'

function runsFromEnv(): number {
  const text = process.env['MESHKV_RUNS']
  if (text === undefined || text === '') return 1000
  const runs = Number(text)
  if (!Number.isSafeInteger(runs) || runs < 1)
    throw new Error(`MESHKV_RUNS must be a positive integer, not ${JSON.stringify(text)}`)
  return runs
}

export const RUNS = runsFromEnv()

/** Options for `fc.assert`: the configured number of runs. */
export const PROPERTY = { numRuns: RUNS } as const

/** The error `run` throws, or undefined when it returns. */
export function thrown(run: () => unknown): unknown {
  try {
    run()
  } catch (error) {
    return error
  }
  return undefined
}

/** The code of the MeshError `run` throws; any other outcome fails with a message saying what happened. */
export function meshErrorCode(run: () => unknown): ErrorCode {
  const error = thrown(run)
  if (error === undefined) throw new Error('expected a MeshError, but nothing was thrown')
  if (!(error instanceof MeshError)) throw new Error(`expected a MeshError, got ${String(error)}`, { cause: error })
  return error.code
}

/**
 * Runs `body` without capturing stack traces. Properties that refuse thousands of inputs per case
 * (every prefix of an encoding) spend most of their time capturing the stacks of the errors they
 * expect; codes and messages are unchanged, and a failure still names its counterexample.
 */
export function withoutStacks<T>(body: () => T): T {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return body()
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** Fails unless every input makes `run` throw a MeshError with `code` (cheap enough for hot loops). */
export function expectEachRefused<T>(inputs: Iterable<T>, run: (input: T) => unknown, code: ErrorCode): void {
  withoutStacks(() => {
    for (const input of inputs) {
      const actual = meshErrorCode(() => run(input))
      if (actual !== code) throw new Error(`${JSON.stringify(input)} gave ${actual}, not ${code}`)
    }
  })
}
