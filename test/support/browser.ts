/**
 * Headless Chromium for the browser tests (Debian's `chromium`, driven by playwright-core; CI
 * installs it in .ci/run). `useBrowser()` in a test file gives the launcher: the first test that
 * needs a browser starts it, so a missing Chromium fails each browser test by name (a failing
 * beforeAll would report them as skipped), never skips one; the file's afterAll closes it.
 */
import { existsSync } from 'node:fs'
import { afterAll } from 'vitest'
import { chromium, type Browser } from 'playwright-core'

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(
  (path): path is string => path !== undefined && path !== '',
)

async function launch(): Promise<Browser> {
  const executablePath = CANDIDATES.find((path) => existsSync(path))
  if (executablePath === undefined)
    throw new Error(
      `no Chromium at ${CANDIDATES.join(', ')}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`,
    )
  return chromium.launch({ executablePath, args: ['--no-sandbox'] })
}

/** The file's browser, launched on first call; closed after the file's tests. */
export function useBrowser(): () => Promise<Browser> {
  let launching: Promise<Browser> | undefined
  afterAll(async () => {
    const browser = await launching?.catch(() => undefined)
    await browser?.close()
  })
  return () => (launching ??= launch())
}
