/**
 * One chaos run (L2, docs/testing.md): three real `meshkv node` processes (and a fourth that joins
 * during the run) with a TCP proxy on every replication link (test/cluster/helpers.ts), the
 * seeded fault schedule of faults.ts, the client sessions of workload.ts recording a history
 * under os.tmpdir(), then the final heal, the
 * convergence clock, and the checkers of checks.ts over the history and each node's final state.
 *
 * Used by test/chaos/chaos.test.ts (a bounded run in `npm test`) and test/chaos/run.ts
 * (`npm run chaos -- --duration 600 --seed S`).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MeshClient } from '../../src/client/index.js'
import { Cluster, sleep } from '../cluster/helpers.js'
import { HistoryWriter, operations, readHistory } from '../checkers/history.js'
import type { NodeValues, ValueCheckResult } from '../checkers/values.js'
import { checkValues } from '../checkers/values.js'
import type { Fault } from './faults.js'
import { FaultRunner, describeFault, planFaults } from './faults.js'
import { CONTENDED_KEYS, COUNTERS, SETS, UNIQUE_PREFIX, Workload } from './workload.js'

export const CONVERGE_WITHIN_MS = 10_000

export interface ChaosOptions {
  seed: number
  /** How long clients run under faults. */
  durationMs: number
  sessions?: number
  /** Progress and report lines go here (default console.log). */
  log?: (line: string) => void
}

export interface ChaosReport {
  seed: number
  durationMs: number
  historyPath: string
  plan: Fault[]
  /** Operations by type and outcome. */
  ops: Record<string, Record<string, number>>
  opsTotal: number
  /** Faults applied, by kind. */
  faults: Record<string, number>
  /** From the final heal (every fault undone) to equal digests on every node (a joiner too). */
  convergedMs: number
  check: ValueCheckResult
  /** Every violation, the convergence deadline included. */
  violations: string[]
  wallMs: number
}

const CLIENT_TIMEOUT_MS = 3_000
const WAIT_MS = 1_500
const STOP_GRACE_MS = 4_000

export function replayCommands(seed: number, durationMs: number): string {
  return `npm run chaos -- --duration ${Math.round(durationMs / 1000)} --seed ${seed}   (or: MESHKV_CHAOS_SEED=${seed} npx vitest run test/chaos)`
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? ((line: string) => console.log(line))
  const started = Date.now()
  const { seed, durationMs } = options
  const historyPath = join(tmpdir(), `meshkv-chaos-${seed}-${started}.jsonl`)
  const plan = planFaults(seed, durationMs)
  log(
    `chaos: seed ${seed}, ${Math.round(durationMs / 1000)} s of faults, ${plan.length} faults planned; history: ${historyPath}`,
  )
  log(`chaos: replay with ${replayCommands(seed, durationMs)}`)
  for (const fault of plan) log(`  plan ${describeFault(fault)}`)

  const history = new HistoryWriter(historyPath)
  const cluster = await Cluster.start({ size: 3, peerTimeoutMs: 2_000 })
  try {
    await cluster.waitLinked()
    const workload = new Workload({
      urls: cluster.urls(),
      seed,
      sessions: options.sessions ?? 8,
      history,
      clientTimeoutMs: CLIENT_TIMEOUT_MS,
      waitMs: WAIT_MS,
    })
    workload.start()
    const runner = new FaultRunner(cluster, history, plan, (on) => workload.atLeastTwo(on))
    for (let elapsed = 0; elapsed < durationMs;) {
      const step = Math.min(15_000, durationMs - elapsed)
      await sleep(step)
      elapsed += step
      const done = history.events.filter(
        (event) => event.kind === 'ok' || event.kind === 'fail' || event.kind === 'unknown',
      ).length
      log(
        `chaos: ${Math.round(elapsed / 1000)} s, ${done} operations completed, faults so far ${JSON.stringify(runner.applied)}`,
      )
    }

    // Quiesce the clients (faults still in place), then heal everything and time convergence.
    await workload.stop(STOP_GRACE_MS)
    history.fault(
      'heal',
      cluster.nodes.map((node) => node.n),
      'final heal',
    )
    const healedAt = Date.now()
    await runner.finish()
    cluster.heal()
    // A forgotten member and a clone are gone for good; every other node is checked, a node that
    // joined during the run (a big-key join) with the others.
    const members = cluster.nodes.filter((node) => !runner.retired.has(node.n))
    for (const node of members) if (node.running) node.continue()
    for (const node of members) if (!node.running) await cluster.restart(node.n)
    const healMs = Date.now() - healedAt
    const all = members.map((node) => node.n)
    const { digest } = await cluster.waitConverged(all, 60_000)
    const convergedMs = Date.now() - healedAt
    history.fault('converged', all, `${convergedMs} ms`)
    log(
      `chaos: final heal done in ${healMs} ms (restarts included); digests equal on all ${all.length} nodes ${convergedMs} ms after the final heal (${digest.keys} keys)`,
    )

    const finals = await Promise.all(members.map((node) => readFinal(node.n, node.url)))
    await history.close()
    await writeFile(finalPathOf(historyPath), JSON.stringify(finals.map(finalToJson)))
    const ops = operations(history.events)
    const check = checkValues({ history: history.events, finals, uniquePrefix: UNIQUE_PREFIX })
    const violations = check.violations.map(describeViolation)
    if (convergedMs > CONVERGE_WITHIN_MS)
      violations.push(
        describeViolation({
          checker: 'liveness',
          message: `digests became equal ${convergedMs} ms after the final heal, over the ${CONVERGE_WITHIN_MS} ms allowed`,
        }),
      )
    const byType: Record<string, Record<string, number>> = {}
    for (const record of ops) {
      const counts = (byType[record.invoke.op.type] ??= {})
      const status = record.completion.code === 'OPEN' ? 'open' : record.completion.kind
      counts[status] = (counts[status] ?? 0) + 1
    }
    return {
      seed,
      durationMs,
      historyPath,
      plan,
      ops: byType,
      opsTotal: ops.length,
      faults: { ...runner.applied },
      convergedMs,
      check,
      violations,
      wallMs: Date.now() - started,
    }
  } catch (error) {
    // A run that could not finish (no convergence within a minute, a node that would not restart)
    // says which seed and history it was, and how to replay it.
    throw new Error(
      `chaos seed ${seed} failed: ${error instanceof Error ? error.message : String(error)}\nhistory: ${historyPath}\nreplay: ${replayCommands(seed, durationMs)}`,
      { cause: error },
    )
  } finally {
    await history.close()
    await cluster.close()
  }
}

/** Where the nodes' final states are saved next to a history, for `npm run chaos -- --check`. */
export function finalPathOf(historyPath: string): string {
  return historyPath.replace(/\.jsonl$/u, '') + '.final.json'
}

type NodeValuesJson = Omit<NodeValues, 'uniques' | 'contended' | 'counters' | 'sets'> & {
  uniques: Record<string, string>
  contended: Record<string, string[]>
  counters: Record<string, number>
  sets: Record<string, string[]>
}

function finalToJson(final: NodeValues): NodeValuesJson {
  return {
    ...final,
    uniques: Object.fromEntries(final.uniques),
    contended: Object.fromEntries(final.contended),
    counters: Object.fromEntries(final.counters),
    sets: Object.fromEntries([...final.sets].map(([name, members]) => [name, [...members].sort()])),
  }
}

function finalFromJson(json: NodeValuesJson): NodeValues {
  return {
    ...json,
    uniques: new Map(Object.entries(json.uniques)),
    contended: new Map(Object.entries(json.contended)),
    counters: new Map(Object.entries(json.counters)),
    sets: new Map(Object.entries(json.sets).map(([name, members]) => [name, new Set(members)])),
  }
}

/** Runs the checkers again over a saved history and its final states (no cluster needed). */
export async function recheck(historyPath: string): Promise<ValueCheckResult> {
  const history = await readHistory(historyPath)
  const finals = (JSON.parse(await readFile(finalPathOf(historyPath), 'utf8')) as NodeValuesJson[]).map(finalFromJson)
  return checkValues({ history, finals, uniquePrefix: UNIQUE_PREFIX })
}

/** One line per violation: which checker found it, and what it found. */
export function describeViolation(violation: { checker: string; message: string }): string {
  return `[${violation.checker}] ${violation.message}`
}

/** Everything the checkers need from one node, read through a client pinned to it (its clock from the digest). */
async function readFinal(n: number, url: string): Promise<NodeValues> {
  const client = new MeshClient({ nodes: [url], timeoutMs: 15_000 })
  const decoder = new TextDecoder()
  const uniques = new Map<string, string>()
  for await (const item of client.scan({ prefix: UNIQUE_PREFIX })) uniques.set(item.key, decoder.decode(item.value))
  const contended = new Map<string, string[]>()
  for (const key of CONTENDED_KEYS) {
    const entry = await client.get(key, { siblings: true })
    contended.set(
      key,
      (entry?.siblings ?? [])
        .filter((sibling) => sibling.value !== null)
        .map((sibling) => decoder.decode(sibling.value as Uint8Array)),
    )
  }
  const counters = new Map<string, number>()
  for (const name of COUNTERS) counters.set(name, await client.counter(name))
  const sets = new Map<string, Set<string>>()
  for (const name of SETS) sets.set(name, new Set(await client.smembers(name)))
  const { digest, vc } = await client.digest()
  return { n, url, digest, uniques, contended, counters, sets, vc }
}

/** The report as the lines a person reads (MEASURED figures first). */
export function formatReport(report: ChaosReport): string[] {
  const { check } = report
  const lines = [
    `MEASURED chaos seed ${report.seed}: ${report.opsTotal} operations in ${Math.round(report.durationMs / 1000)} s of faults (${Math.round(report.wallMs / 1000)} s wall): ${JSON.stringify(report.ops)}`,
    `MEASURED faults applied: ${JSON.stringify(report.faults)} (${report.plan.length} planned)`,
    `MEASURED convergence: all digests equal ${report.convergedMs} ms after the final heal (limit ${CONVERGE_WITHIN_MS} ms)`,
    `MEASURED acknowledged puts lost, by write concern: ${Object.entries(check.loss)
      .map(
        ([w, count]) =>
          `w=${w}: ${count.lost} of ${count.acknowledged}${w === '1' ? ` (+${count.excused} excused: its node killed after the write)` : ''}`,
      )
      .join('; ')}`,
    `MEASURED counters (acknowledged .. acknowledged+unknown → final per node): ${check.counters.map((counter) => `${counter.name} ${counter.acknowledged}..${counter.acknowledged + counter.unknown} → ${counter.final.join('/')}`).join('; ')}`,
    `MEASURED sets: ${check.sets.map((set) => `${set.name}: ${set.acknowledgedAdds} acknowledged adds, ${set.removedByLaterRemove} removed by a later remove, ${set.finalMembers} members`).join('; ')}`,
    `MEASURED final clocks: ${check.clocks.compared} compared; acknowledged writes checked in them: ${check.clocks.writesChecked} (${check.clocks.writesAfterCrash} passed over: a kill followed them)`,
    `MEASURED session reads with a token: ${check.sessions.readsWithToken}, checked against an own earlier write: ${check.sessions.readsChecked}, missing it: ${check.sessions.violations}; failed writes checked absent: ${check.failedWritesChecked}`,
    `history: ${report.historyPath} (final states: ${finalPathOf(report.historyPath)}; recheck with npm run chaos -- --check ${report.historyPath})`,
  ]
  if (report.violations.length > 0) {
    lines.push(`VIOLATIONS (${report.violations.length}):`, ...report.violations.map((violation) => `  ${violation}`))
    lines.push(`replay: ${replayCommands(report.seed, report.durationMs)}`)
  }
  return lines
}
