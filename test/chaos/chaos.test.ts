/**
 * Process chaos (L2, docs/testing.md) in `npm test`: a bounded seeded run (60 s of faults by default,
 * about 65-80 s in all) of scenario.ts — three real nodes, kill -9 and restarts, SIGSTOP/SIGCONT,
 * a node restarted from an older copy of its directory, a fourth node joining while a key grows
 * past 4 MiB, a second process run on a copy of a node's directory beside it, a member forgotten
 * while it takes writes, link partitions through the proxies (bridges too), eight client sessions — then every checker.
 * `MESHKV_CHAOS_SEED` replays a seed's fault schedule and client plans, `MESHKV_CHAOS_DURATION_S`
 * changes the length; `npm run chaos -- --duration 600` is the long run.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { buildIfStale, stopAllClusters } from '../cluster/helpers.js'
import { formatReport, replayCommands, runChaos } from './scenario.js'

const SEED =
  process.env['MESHKV_CHAOS_SEED'] === undefined
    ? Math.floor(Math.random() * 2 ** 32)
    : Number(process.env['MESHKV_CHAOS_SEED']) >>> 0
const DURATION_MS = Number(process.env['MESHKV_CHAOS_DURATION_S'] ?? 60) * 1000

afterAll(async () => {
  await stopAllClusters()
})

describe('process chaos (L2)', () => {
  it(
    `three real nodes under kill -9, SIGSTOP, a restore from an older copy, a join under a big key, a clone, a live forget and partitions: converge within 10 s of the final heal, lose no acknowledged write (seed ${SEED})`,
    async () => {
      buildIfStale()
      const report = await runChaos({ seed: SEED, durationMs: DURATION_MS })
      for (const line of formatReport(report)) console.log(line)
      // The run did something: operations of every kind completed, and faults of both tracks ran.
      expect(report.opsTotal).toBeGreaterThan(500)
      expect(report.faults['kill'] ?? 0).toBeGreaterThan(0)
      // Every restore, big-key join, clone and live forget planned ran; a run of a minute or more
      // plans one of each.
      for (const kind of ['restore', 'bigKey-join', 'clone', 'forget-live']) {
        const planned = report.plan.filter((fault) => fault.kind === kind).length
        expect(report.faults[kind] ?? 0, kind).toBe(planned)
        if (DURATION_MS >= 60_000) expect(planned, kind).toBeGreaterThan(0)
      }
      expect(Object.keys(report.faults).length).toBeGreaterThan(2)
      expect(report.check.loss['all']?.acknowledged ?? 0).toBeGreaterThan(0)
      expect(report.check.sessions.readsChecked).toBeGreaterThan(0)
      expect(
        report.violations,
        `chaos seed ${SEED} found violations; replay: ${replayCommands(SEED, DURATION_MS)}\nhistory: ${report.historyPath}`,
      ).toEqual([])
    },
    DURATION_MS + 90_000,
  )
})
