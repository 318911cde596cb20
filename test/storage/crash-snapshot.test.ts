/**
 * L3 crash safety of a snapshot taken straight into place (storage/snapshot-intake.ts): a real
 * child process (test/fixtures/snapshot-taker.ts) opens a brand-new store over LevelDB and takes
 * a donor's snapshot into it chunk by chunk; the parent kills it with SIGKILL after a random
 * chunk, reopens the directory in this process and checks that the node is either the whole
 * snapshot (its clock and every state: the digest) or brand new again (no clock, no state, no
 * tombstone index entry, nothing staged, no marker), never a part of it, and that a brand-new one
 * takes the next snapshot straight into place again.
 *
 * Each loop on a fresh directory. The kill moments come from one seeded PRNG: the seed is printed,
 * and `MESHKV_CRASH_SEED=<seed>` replays it (`MESHKV_CRASH_LOOPS` changes the number of loops).
 */
import { describe, expect, it } from 'vitest'
import type { VectorClock } from '../../src/clock/index.js'
import { LevelBackend, Store, digestOf } from '../../src/storage/index.js'
import { prng, sleep, tempDir } from '../helpers/async.js'
import { ChildLines, spawnFixture } from '../helpers/child.js'
import { crashRun } from '../helpers/crash.js'

const { seed: SEED, loops: LOOPS, replay: REPLAY } = crashRun('test/storage/crash-snapshot.test.ts', 10)
const KEYS = 3000
const CHUNK_STATES = 100
/** Chunks the donor's states make: about KEYS / CHUNK_STATES, plus counters and the set. */
const CHUNKS_ABOUT = Math.ceil(KEYS / CHUNK_STATES)
const START_TIMEOUT_MS = 30_000

const options = { now: () => Date.now(), randomBytes: () => new Uint8Array(8).fill(9) }

/** Entries in a sublevel of the closed store at `dir`, and whether a snapshot marker is left. */
async function leftovers(dir: string): Promise<{ stage: number; tombs: number; marker: boolean }> {
  const backend = new LevelBackend(dir)
  await backend.open()
  try {
    const count = async (sub: 'stage' | 'tombs'): Promise<number> => {
      let entries = 0
      for await (const _ of backend.iterate(sub, {})) entries++
      return entries
    }
    return {
      stage: await count('stage'),
      tombs: await count('tombs'),
      marker: (await backend.get('meta', 'snapshot')) !== undefined,
    }
  } finally {
    await backend.close()
  }
}

/** Reopens `dir` and says what it holds: the whole snapshot, nothing, or a violation. */
async function check(dir: string, donor: { digest: string; keys: number; vc: VectorClock }): Promise<'whole' | 'none'> {
  const store = await Store.open({ backend: new LevelBackend(dir), ...options })
  let outcome: 'whole' | 'none'
  try {
    const digest = await digestOf(store)
    if (Object.keys(store.vc).length === 0) {
      expect(digest.keys, 'a node with no clock holds states').toBe(0)
      expect(await store.tombstoneCount(), 'a node with no clock holds tombstone index entries').toBe(0)
      outcome = 'none'
      // Brand new again: the next snapshot goes straight into place.
      const next = await store.receiveSnapshot(donor.vc)
      expect(next.into).toBe('place')
      await next.abandon()
    } else {
      expect(store.vc).toEqual(donor.vc)
      expect(digest.digest, 'a node with the snapshot’s clock holds other states').toBe(donor.digest)
      expect(digest.keys).toBe(donor.keys)
      outcome = 'whole'
    }
  } finally {
    await store.close()
  }
  const left = await leftovers(dir)
  expect({ stage: left.stage, marker: left.marker }).toEqual({ stage: 0, marker: false })
  if (outcome === 'none') expect(left.tombs).toBe(0)
  return outcome
}

describe('crash safety (L3): SIGKILL a brand-new node taking a snapshot into place, reopen, check', () => {
  it(`leaves the whole snapshot or none of it over ${LOOPS} kill -9 loops`, async () => {
    console.log(`crash-snapshot test seed ${SEED} (replay: ${REPLAY})`)
    const random = prng(SEED)
    const outcomes = { whole: 0, none: 0, midway: 0 }
    for (let run = 0; run < LOOPS; run++) {
      const { dir, remove } = await tempDir('crash-snapshot')
      try {
        const child = new ChildLines(
          spawnFixture('snapshot-taker.ts', [dir, String(KEYS), String(CHUNK_STATES), String(run)]),
        )
        // Mostly after a chunk in the middle; sometimes right as it begins, or after the end.
        const after = Math.floor(random() * (CHUNKS_ABOUT + 4)) - 2
        const awaited = after < 0 ? 'intake' : after >= CHUNKS_ABOUT ? 'finished' : `chunk ${after}`
        let donorLine: string
        try {
          donorLine = await child.waitFor((line) => line.startsWith('donor '), START_TIMEOUT_MS, 'the donor')
          await child.waitFor((line) => line.startsWith(awaited), START_TIMEOUT_MS, awaited)
          await sleep(Math.floor(random() * 3))
        } finally {
          child.child.kill('SIGKILL')
        }
        const { signal } = await child.ended
        expect(signal, `the child died on its own; stderr:\n${child.stderr}`).toBe('SIGKILL')
        const [, digest = '', keys = '0', vcText = '{}'] = donorLine.split(' ')
        const donor = { digest, keys: Number(keys), vc: JSON.parse(vcText) as VectorClock }
        expect(child.lines).toContain('intake place')
        const outcome = await check(dir, donor)
        const finished = child.lines.includes('finished')
        if (finished) expect(outcome, `loop ${run}: finished, then lost (replay: ${REPLAY})`).toBe('whole')
        outcomes[outcome]++
        if (!finished && child.lines.some((line) => line.startsWith('chunk '))) outcomes.midway++
      } finally {
        await remove()
      }
    }
    console.log(`crash-snapshot outcomes: ${JSON.stringify(outcomes)}`)
    // A test whose kills never land midway proves nothing.
    if (LOOPS >= 5) expect(outcomes.midway, `no kill landed in the middle (replay: ${REPLAY})`).toBeGreaterThan(0)
  }, 300_000)
})
