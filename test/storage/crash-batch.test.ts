/**
 * L3 crash atomicity of batches (docs/testing.md): a real child process
 * (test/fixtures/crash-batch-writer.ts) writes multi-key batches with `node.batch` and fsync on,
 * each with a unique marker, some of them deleting every key of an earlier batch; the parent kills
 * it with SIGKILL at a random moment, reopens the directory and checks that no batch is
 * half-visible: each batch's keys are all present or all absent, an acknowledged batch is all
 * present (unless a later batch deleted it, and then that batch's puts are all present too), and
 * a batch that deletes another is applied whole or not at all — its puts and its deletes together.
 *
 * 20 loops on one directory, every batch of every earlier loop checked again after each kill. The
 * kill moments come from one seeded PRNG: the seed is printed, and `MESHKV_CRASH_SEED=<seed>`
 * replays it (`MESHKV_CRASH_LOOPS` changes the number of loops).
 */
import { describe, expect, it } from 'vitest'
import { MeshNode } from '../../src/node/index.js'
import { decodeValue } from '../../src/node/index.js'
import { prng, sleep, tempDir } from '../helpers/async.js'
import { ChildLines, spawnFixture } from '../helpers/child.js'
import { crashRun } from '../helpers/crash.js'
import { batchKeys } from '../helpers/crash-batch.js'

const { seed: SEED, loops: LOOPS, replay: REPLAY } = crashRun('test/storage/crash-batch.test.ts', 20)
/** The longest wait after the first acknowledged batch before the kill. */
const KILL_AFTER_MS_MAX = 300
const START_TIMEOUT_MS = 20_000

interface Batch {
  marker: string
  keys: number
  /** The batch whose keys this one deletes. */
  deletes?: string
  acknowledged: boolean
}

/** Every batch any writer announced, across loops. */
type Batches = Map<string, Batch>

function learn(batches: Batches, lines: readonly string[]): { announced: number; acknowledged: number } {
  let announced = 0
  let acknowledged = 0
  for (const line of lines) {
    const [verb, marker = '', keys = '', deletes] = line.split(' ')
    if (verb === 'open') continue
    if (verb === 'batching') {
      batches.set(marker, {
        marker,
        keys: Number(keys),
        ...(deletes === undefined ? {} : { deletes }),
        acknowledged: false,
      })
      announced++
    } else if (verb === 'batch') {
      const batch = batches.get(marker)
      if (batch === undefined) throw new Error(`the writer acknowledged ${marker} before announcing it`)
      batch.acknowledged = true
      acknowledged++
    } else {
      throw new Error(`the writer printed an unknown line: ${JSON.stringify(line)}`)
    }
  }
  return { announced, acknowledged }
}

/** Reopens the directory and checks every batch ever announced; returns the violations. */
async function check(dir: string, batches: Batches): Promise<string[]> {
  const present = new Map<string, { marker: string; j: number }>()
  const node = await MeshNode.open({ dir })
  try {
    for await (const entry of node.entries())
      present.set(entry.key, decodeValue(entry) as { marker: string; j: number })
  } finally {
    await node.close()
  }
  const violations: string[] = []
  const visible = (batch: Batch): number =>
    batchKeys(batch.marker, batch.keys).filter((key, j) => {
      const value = present.get(key)
      if (value !== undefined && (value.marker !== batch.marker || value.j !== j))
        violations.push(`${key} holds ${JSON.stringify(value).slice(0, 80)}`)
      return value !== undefined
    }).length
  const deletedBy = new Map<string, Batch>()
  for (const batch of batches.values()) if (batch.deletes !== undefined) deletedBy.set(batch.deletes, batch)
  for (const batch of batches.values()) {
    const seen = visible(batch)
    if (seen !== 0 && seen !== batch.keys)
      violations.push(`batch ${batch.marker} is half-visible: ${seen} of its ${batch.keys} keys`)
    const deleter = deletedBy.get(batch.marker)
    if (deleter !== undefined) {
      // Its deleter is applied exactly when the deleter's own puts are visible (nothing deletes a deleter).
      const deleterApplied = visible(deleter) === deleter.keys
      if (deleterApplied && seen !== 0)
        violations.push(
          `batch ${deleter.marker} is visible but ${seen} keys of ${batch.marker}, which it deleted, are still there`,
        )
      if (!deleterApplied && seen !== batch.keys)
        violations.push(
          `batch ${deleter.marker} is absent but ${batch.marker} (acknowledged) lost ${batch.keys - seen} keys`,
        )
    } else if (batch.acknowledged && seen !== batch.keys) {
      violations.push(`acknowledged batch ${batch.marker} shows ${seen} of ${batch.keys} keys`)
    }
  }
  const known = new Set<string>()
  for (const batch of batches.values()) for (const key of batchKeys(batch.marker, batch.keys)) known.add(key)
  for (const key of present.keys())
    if (!known.has(key)) violations.push(`${key} belongs to no batch the writer announced`)
  return violations
}

describe('crash atomicity (L3): SIGKILL a process writing multi-key batches, reopen, check', () => {
  it(`never shows a batch half-applied over ${LOOPS} kill -9 loops with fsync on`, async () => {
    console.log(`crash-batch test seed ${SEED} (replay: ${REPLAY})`)
    const random = prng(SEED)
    const shared = await tempDir('crash-batch')
    const batches: Batches = new Map()
    let announced = 0
    let acknowledged = 0
    try {
      for (let run = 0; run < LOOPS; run++) {
        const child = new ChildLines(
          spawnFixture('crash-batch-writer.ts', [shared.dir, String(run), String(Math.floor(random() * 2 ** 32))]),
        )
        try {
          await child.waitFor((line) => line.startsWith('batch '), START_TIMEOUT_MS, 'a first acknowledged batch')
          await sleep(Math.floor(random() * KILL_AFTER_MS_MAX))
        } finally {
          child.child.kill('SIGKILL')
        }
        const { signal } = await child.ended
        expect(signal, `the writer died on its own; stderr:\n${child.stderr}`).toBe('SIGKILL')
        const learned = learn(batches, child.lines)
        announced += learned.announced
        acknowledged += learned.acknowledged
        const violations = await check(shared.dir, batches)
        expect(violations, `crash loop ${run} with seed ${SEED} (replay: ${REPLAY})`).toEqual([])
      }
    } finally {
      await shared.remove()
    }
    const deleting = [...batches.values()].filter((batch) => batch.deletes !== undefined).length
    console.log(
      `MEASURED crash-batch seed ${SEED}: ${LOOPS} kill -9 loops, ${announced} batches issued (${deleting} also deleting an earlier batch), ${acknowledged} acknowledged, ${announced - acknowledged} in flight at a kill; every batch all-or-nothing after every restart`,
    )
    expect(acknowledged).toBeGreaterThan(0)
    expect(announced).toBeGreaterThan(acknowledged)
    expect(deleting).toBeGreaterThan(0)
  }, 120_000)
})
