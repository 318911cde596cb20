/**
 * Runs abstract-level's own compliance suite (tape) against MeshLevel, each database on a node of
 * its own in a fresh LevelDB directory. Run by test/level/level.test.ts as a child process, once
 * as the node's whole key space (`node --import tsx abstract-suite.ts`, what
 * `new MeshLevel({ dir }, options)` gives) and once under a key prefix (`… abstract-suite.ts l:`).
 */
import test from 'tape'
// @ts-expect-error the suite ships no types
import suite from 'abstract-level/test/index.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MeshLevel } from '../../src/level.js'

const keyPrefix = process.argv[2]
const dirs: string[] = []
test.onFinish(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

suite({
  test,
  factory(options?: object) {
    const dir = mkdtempSync(join(tmpdir(), 'meshkv-level-'))
    dirs.push(dir)
    return new MeshLevel({ dir }, keyPrefix === undefined ? { ...options } : { ...options, keyPrefix })
  },
})
