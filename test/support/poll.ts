/**
 * Waiting for code that runs outside vitest (bench/, the chaos and sim runners, the cluster
 * helpers they share). Tests proper poll with vitest's `vi.waitFor` / `expect.poll`.
 */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Polls `check` until it returns something other than undefined, and resolves with that. A
 * thrown error counts as "not yet" (it is quoted in the timeout message). Throws, naming `what`,
 * once `ms` have passed: the bound is for liveness only, never a measurement.
 */
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
