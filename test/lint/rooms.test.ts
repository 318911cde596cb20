/**
 * The rooms of docs/architecture.md are enforced by eslint.config.js (no-restricted-imports per
 * folder, no-restricted-globals for Date). These tests lint small pieces of code as if they lived
 * in a room, so a config change that opens a door shows up here.
 */
import { fileURLToPath } from 'node:url'
import { ESLint } from 'eslint'
import { beforeAll, describe, expect, it } from 'vitest'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
let eslint: ESLint

beforeAll(() => {
  eslint = new ESLint({ cwd: repoRoot })
})

/** The rule ids reported for `code` linted as `filePath`; fatal parse errors fail the test. */
async function ruleIds(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath })
  if (result === undefined) throw new Error(`no lint result for ${filePath}`)
  const fatal = result.messages.filter((message) => message.fatal === true)
  expect(fatal, `${filePath} did not parse`).toEqual([])
  return result.messages.map((message) => message.ruleId ?? '(none)')
}

const importOf = (specifier: string): string => `import '${specifier}'\n`

describe('outward imports are reported', () => {
  const outward: [file: string, specifier: string][] = [
    ['src/crdt/x.ts', '../storage/index.js'],
    ['src/crdt/x.ts', '../codec/index.js'],
    ['src/crdt/x.ts', '../replication/index.js'],
    ['src/crdt/x.ts', 'node:fs'],
    ['src/clock/x.ts', '../crdt/index.js'],
    ['src/clock/x.ts', 'ws'],
    ['src/codec/x.ts', '../storage/index.js'],
    ['src/storage/x.ts', '../replication/index.js'],
    ['src/replication/x.ts', 'ws'],
    ['src/replication/x.ts', 'level'],
    ['src/replication/x.ts', 'node:timers'],
    ['src/replication/x.ts', '../transport/index.js'],
    ['src/transport/x.ts', '../crdt/index.js'],
    ['src/http/x.ts', '../storage/store.js'],
    ['src/http/x.ts', '../replication/index.js'],
    ['src/http/x.ts', 'ws'],
    ['src/client/x.ts', '../node.js'],
    ['src/client/x.ts', '../storage/index.js'],
    ['src/cli/kvctl.ts', '../node.js'],
    ['src/errors.ts', './clock/index.js'],
    ['src/node/x.ts', '../http/app.js'],
    ['src/node/x.ts', '../cli/meshkv.js'],
    ['src/node/x.ts', '../level.js'],
    ['src/client/x.ts', '../node/index.js'],
    ['src/replication/membership.ts', '../node/index.js'],
  ]
  it.each(outward)('%s importing %s', async (file, specifier) => {
    expect(await ruleIds(importOf(specifier), file)).toContain('no-restricted-imports')
  })
})

describe('inward imports are allowed', () => {
  const inward: [file: string, specifier: string][] = [
    ['src/crdt/x.ts', '../clock/index.js'],
    ['src/crdt/x.ts', '../errors.js'],
    ['src/crdt/x.ts', 'yjs'],
    ['src/codec/x.ts', '../crdt/index.js'],
    ['src/storage/x.ts', '../codec/index.js'],
    ['src/replication/x.ts', '../storage/index.js'],
    ['src/transport/x.ts', 'ws'],
    ['src/client/x.ts', '../clock/index.js'],
    ['src/node/mesh-node.ts', '../replication/index.js'],
    ['src/node/cluster.ts', '../replication/membership.js'],
    ['src/cli/meshkv.ts', '../node/index.js'],
    ['src/http/kv.ts', '../node/index.js'],
  ]
  it.each(inward)('%s importing %s', async (file, specifier) => {
    expect(await ruleIds(importOf(specifier), file)).not.toContain('no-restricted-imports')
  })
})

describe('time is an input in the pure rooms', () => {
  it('reports Date.now() in src/crdt, src/clock and src/replication', async () => {
    for (const file of ['src/crdt/x.ts', 'src/clock/x.ts', 'src/replication/x.ts']) {
      expect(await ruleIds('export const now = Date.now()\n', file), file).toContain('no-restricted-globals')
    }
  })

  it('allows Date at the edges that own time', async () => {
    for (const file of ['src/node/mesh-node.ts', 'src/http/x.ts', 'test/x.test.ts']) {
      expect(await ruleIds('export const now = Date.now()\n', file), file).not.toContain('no-restricted-globals')
    }
  })
})
