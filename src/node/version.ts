/** The package's version, read once at load from package.json (the same two levels up from `src/node/` and `dist/node/`). */
import { readFileSync } from 'node:fs'

function readVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8')
  const version: unknown = (JSON.parse(text) as { version?: unknown }).version
  // A package.json without a version is a broken install, not an input to answer.
  if (typeof version !== 'string' || version.length === 0) throw new Error('package.json holds no version')
  return version
}

export const PACKAGE_VERSION: string = readVersion()
