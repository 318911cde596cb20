/**
 * Level L1 (docs/testing.md): the deterministic simulator over many seeds, and its determinism.
 *
 * Each `npm test` runs `MESHKV_SIM_SEEDS` seeds (default 500) from `MESHKV_SIM_SEED` (default: a
 * fresh random start, printed). A failure names each failing seed with its replay command
 * (`npm run sim -- --seed S`) and, shrunk with fast-check, the smallest shape that still fails.
 */
import { performance } from 'node:perf_hooks'
import { describe, expect, it } from 'vitest'
import { countFromEnv } from '../helpers/replication-sim.js'
import { shrinkRun } from './shrink.js'
import type { ConfigOverrides, SimResult, SimStats } from './simulation.js'
import { emptyStats, replayLine, simulate } from './simulation.js'

const SEEDS = countFromEnv('MESHKV_SIM_SEEDS', 500)
/** Failing seeds to collect before stopping. */
const FAILURES_MAX = 3

function startSeed(): number {
  const text = process.env['MESHKV_SIM_SEED']
  if (text === undefined || text === '') return Math.floor(Math.random() * 2 ** 31)
  const seed = Number(text)
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error(`MESHKV_SIM_SEED must be a non-negative integer, not ${JSON.stringify(text)}`)
  return seed
}

function report(result: SimResult): string {
  return [
    `seed ${result.seed} ${JSON.stringify(result.config)}`,
    ...result.violations.slice(0, 4).map((violation) => `  [${violation.checker}] ${violation.message.slice(0, 1500)}`),
    `  replay: ${replayLine(result.seed)}`,
  ].join('\n')
}

describe('simulation (L1): the real store and replicator under seeded faults', () => {
  it(`${SEEDS} seeds: convergence, no lost acknowledged write, counters, sets, sessions`, async () => {
    const from = startSeed()
    const started = performance.now()
    const failures: SimResult[] = []
    const totals: SimStats = emptyStats()
    let ran = 0
    for (let i = 0; i < SEEDS && failures.length < FAILURES_MAX; i++) {
      const result = await simulate((from + i) >>> 0)
      ran++
      for (const key of Object.keys(totals) as (keyof SimStats)[]) totals[key] += result.stats[key]
      if (result.violations.length > 0) failures.push(result)
    }
    const seconds = (performance.now() - started) / 1000
    console.log(
      `simulation: ${ran} seeds from ${from} in ${seconds.toFixed(1)} s (${(ran / seconds).toFixed(1)} seeds/s), ${failures.length} failed; ${JSON.stringify(totals)}`,
    )
    if (failures.length > 0) {
      const first = failures[0] as SimResult
      const shrunk = await shrinkRun(first.config, 60_000)
      const smallest =
        shrunk === null
          ? ''
          : `\nshrunk (seed ${first.seed}, ${shrunk.runs} runs): ${JSON.stringify(shrunk.overrides)}\n  ${shrunk.violations[0]?.slice(0, 1500) ?? ''}\n  replay: ${replayLine(first.seed, shrunk.overrides)}`
      throw new Error(
        `the simulation failed for ${failures.length} seed(s) (run from ${from}; rerun the batch with MESHKV_SIM_SEED=${from}):\n${failures.map(report).join('\n')}${smallest}`,
      )
    }
    // Over a full run the faults did happen: a simulator whose faults never fire proves nothing.
    if (ran >= 200) {
      expect(totals.crashes, 'crashes').toBeGreaterThan(0)
      expect(totals.lossyCrashes, 'power losses on nodes that do not fsync').toBeGreaterThan(0)
      expect(totals.partitions, 'partitions').toBeGreaterThan(0)
      expect(totals.drops, 'dropped frames (broken links)').toBeGreaterThan(0)
      expect(totals.refusedSkew, 'changes refused for clock skew').toBeGreaterThan(0)
      expect(totals.duplicates, 'duplicates').toBeGreaterThan(0)
      expect(totals.unknown, 'writes of unknown outcome').toBeGreaterThan(0)
      expect(totals.duplicateLinks, 'links refused or replaced as duplicates').toBeGreaterThan(0)
      expect(totals.joins, 'brand-new nodes that joined mid-run').toBeGreaterThan(0)
      expect(totals.forgets, 'members down for good and forgotten').toBeGreaterThan(0)
      expect(totals.writesRefusedForgotten, 'writes a live, forgotten member refused').toBeGreaterThan(0)
      expect(totals.bigPuts, 'big puts around a join (nemesis-bigkey.ts)').toBeGreaterThan(0)
      expect(totals.bigPutsRefused, 'big puts refused past the key limit').toBeGreaterThan(0)
      expect(totals.bigStatesSnapshotted, 'states larger than a frame sent in a snapshot').toBeGreaterThan(0)
      expect(totals.snapshotsIntoPlace, 'snapshots a brand-new node took straight into place').toBeGreaterThan(0)
      expect(totals.snapshotsStaged, 'snapshots a node holding data staged and joined').toBeGreaterThan(0)
      expect(totals.rolledBack, 'nodes started again on an older copy of their disk').toBeGreaterThan(0)
      expect(totals.recoveries, 'restored nodes that got their own changes back').toBeGreaterThan(0)
      expect(totals.clones, 'second processes of one node id').toBeGreaterThan(0)
      expect(totals.writesRefusedGuard, 'writes the seq guard refused').toBeGreaterThan(0)
    }
  }, 900_000)

  // Seeds that once failed on the simulator's join and forget, each pinned to the cause it found:
  // 1166520169, 1166519579, 1365775167: the survivors each buffered changes of the retired node
  //   past a gap no node could ever fill, and the forget waited for empty buffers for ever
  //   (since protocol 2 asks for snapshots, 1365775167 draws another run, which joins but does
  //   not forget: it stays pinned as a join seed, and the other two still forget);
  // 1166519372: the forgetter went down before its forget was written, and the run took the
  //   member as forgotten anyway;
  // 1871278830: the clocks agreed while admissions of the joiner were still being written, the
  //   settling did not see them land, and the run ended before the joiner's next tick made it ready.
  // 7087 (forgetLive): with the forget cut from the forgetter's own view and every change of a
  //   forgotten member past it refused (the rule before issue 12), survivors that held more of
  //   the live member's changes stalled replication for ever;
  // 86009636 (forgetLive): the live forget's write was lost with its forgetter, the retired member
  //   was still up, and the run asked it to forget itself.
  // 91000881 (join + forgetLive): the joiner took a snapshot from the live member after the forget
  //   (its change past the cut, with no log entry on the joiner), and its sessions to the survivors
  //   never restarted, since their clocks no longer moved: they never got it, and the joiner's
  //   clock stayed ahead for good. Since then a node that joins a snapshot restarts its own cursors
  //   too (`PeerSession.rescan`). It failed before the seq guard; with it the timing differs and the
  //   run passes without the fix as well, so it stays pinned as a join + live-forget run.
  // 91000326 (join + forgetLive): the member to forget went down for good before any node had
  //   written it into a member set (admissions wait for the seq guard), so no node could forget it
  //   (UNKNOWN_MEMBER) and the run waited for a forget for ever; such a member now needs none.
  // Since protocol 7 gathers acks (replication/acks.ts), the timing of 1166519579 draws a run that
  // neither forgets nor joins (its forget is not reached): it stays pinned as a plain run, checked
  // for violations only; 1166520169 still forgets after the same cause.
  // 1315251282 (join + forget, CI): the run counted as quiet while a dropped frame had left a link
  //   half-open and one end had not noticed yet; that node still listed the peer as linked, with
  //   an ack from before the forget, so the forgotten member seemed to hold its garbage collection
  //   back. The run is quiet only once every break is noticed (quiescence.ts).
  // With the operator faults (restore, clone) on, 86009636 draws a run whose live forget finds too
  // few live members and forgets nothing, and 91000326 one whose member is known and forgotten: they
  // run without them, as they were pinned (91000881 too, to stay the run it was).
  it.each([
    { seed: 1166520169, forgets: true },
    { seed: 1166519579, forgets: null },
    { seed: 1365775167, forgets: false },
    { seed: 1166519372, forgets: true },
    { seed: 1871278830, forgets: false },
    { seed: 7087, forgets: true },
    { seed: 1315251282, forgets: true },
    { seed: 86009636, forgets: true, config: { faults: { restore: false, clone: false } } },
    { seed: 91000881, forgets: true, config: { faults: { restore: false, clone: false } } },
    { seed: 91000326, forgets: false, config: { faults: { restore: false, clone: false } } },
  ] as { seed: number; forgets: boolean | null; config?: ConfigOverrides }[])(
    'seed $seed passes',
    async ({ seed, forgets, config }) => {
      const result = await simulate(seed, config)
      expect(result.violations.map((violation) => `[${violation.checker}] ${violation.message.slice(0, 300)}`)).toEqual(
        [],
      )
      if (forgets === true) expect(result.stats.forgets).toBeGreaterThan(0)
      else if (forgets === false) expect(result.stats.joins).toBeGreaterThan(0)
    },
    60_000,
  )

  it('the same seed gives the same trace (sha256 of every event, delivery and history entry)', async () => {
    const seed = startSeed()
    const first = await simulate(seed)
    const second = await simulate(seed)
    expect(second.trace, `seed ${seed}: replay with ${replayLine(seed)}`).toBe(first.trace)
    expect(second.history).toEqual(first.history)
    expect(second.stats).toEqual(first.stats)
    expect(first.stats.deliveries).toBeGreaterThan(0)
    const other = await simulate((seed + 1) >>> 0)
    expect(other.trace).not.toBe(first.trace)
  }, 120_000)
})
