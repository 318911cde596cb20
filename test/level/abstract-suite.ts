/**
 * Runs abstract-level's own compliance suite (tape) against MeshLevel, each database on a node of
 * its own in a fresh LevelDB directory. Run by test/level/level.test.ts as a child process.
 */
import test from 'tape'
// @ts-expect-error the suite ships no types
import suite from 'abstract-level/test/index.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MeshLevel } from '../../src/level.js'

const dirs: string[] = []
test.onFinish(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

suite({
  test,
  factory(options?: object) {
    const dir = mkdtempSync(join(tmpdir(), 'meshkv-level-'))
    dirs.push(dir)
    return new MeshLevel({ dir }, { ...options, keyPrefix: 'l:' })
  },
})
