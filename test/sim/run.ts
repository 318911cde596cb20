/**
 * The simulator's command line (`npm run sim -- …`):
 *
 *   --seeds N         run N seeds (default 100), starting at --from (default: random)
 *   --from S          first seed of a --seeds run
 *   --seed S          run one seed (a replay) and print its summary
 *   --config JSON     overrides of the run's shape, as a shrunk failure prints them
 *                     (e.g. '{"nodes":3,"ops":12,"faults":{"crash":false}}')
 *   --shrink          shrink the first failure with fast-check (seed kept, shape made smaller)
 *   --history FILE    with --seed: write the history as JSON lines (and FILE.final.json)
 *   --verbose         print every violation, not just the first few
 *   --first           stop at the first failing seed (how fast is a bug found?)
 *
 * Prints seeds per second; each failure with its seed, what failed, and a one-line replay
 * command; exits 1 if any seed failed.
 */
import { writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import type { ConfigOverrides, SimResult, SimStats } from './simulation.js'
import { emptyStats, replayLine, simulate } from './simulation.js'
import { countFlag, parseFlags } from '../support/args.js'
import { shrinkRun } from './shrink.js'

interface Args {
  seeds: number
  from: number | null
  seed: number | null
  config: ConfigOverrides
  shrink: boolean
  history: string | null
  verbose: boolean
  first: boolean
}

const USAGE =
  'usage: npm run sim -- [--seeds N] [--from S] [--seed S] [--config JSON] [--shrink] [--history FILE] [--verbose] [--first]'

function parseArgs(argv: readonly string[]): Args {
  const flags = parseFlags(argv, {
    seeds: { type: 'string' },
    from: { type: 'string' },
    seed: { type: 'string' },
    config: { type: 'string' },
    shrink: { type: 'boolean' },
    history: { type: 'string' },
    verbose: { type: 'boolean' },
    first: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  })
  if (flags.help === true) {
    console.log(USAGE)
    process.exit(0)
  }
  return {
    seeds: countFlag('seeds', flags.seeds) ?? 100,
    from: countFlag('from', flags.from) ?? null,
    seed: countFlag('seed', flags.seed) ?? null,
    config: JSON.parse(flags.config ?? '{}') as ConfigOverrides,
    shrink: flags.shrink === true,
    history: flags.history ?? null,
    verbose: flags.verbose === true,
    first: flags.first === true,
  }
}

export function describeFailure(result: SimResult, overrides: ConfigOverrides, verbose = false): string {
  const shown = verbose ? result.violations : result.violations.slice(0, 5)
  const lines = [
    `FAIL seed ${result.seed} (${JSON.stringify(result.config)}): ${result.violations.length} violation(s)`,
    ...shown.map((violation) => `  [${violation.checker}] ${violation.message}`),
    ...(shown.length < result.violations.length
      ? [`  … and ${result.violations.length - shown.length} more (--verbose)`]
      : []),
    `  replay: ${replayLine(result.seed, overrides)}`,
  ]
  return lines.join('\n')
}

function addStats(total: SimStats, stats: SimStats): void {
  for (const key of Object.keys(total) as (keyof SimStats)[]) total[key] += stats[key]
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  if (args.seed !== null) {
    const started = performance.now()
    const result = await simulate(args.seed, args.config)
    const seconds = (performance.now() - started) / 1000
    console.log(`seed ${result.seed}: ${JSON.stringify(result.config)}`)
    console.log(`trace ${result.trace}`)
    console.log(`stats ${JSON.stringify(result.stats)} in ${seconds.toFixed(2)} s`)
    if (args.history !== null) {
      await writeFile(args.history, result.history.map((event) => JSON.stringify(event)).join('\n') + '\n')
      await writeFile(
        `${args.history}.final.json`,
        JSON.stringify({ finals: result.finals, changes: result.changes, nodeIds: result.nodeIds }, null, 1),
      )
      console.log(
        `history written to ${args.history} (${result.history.length} events), final states to ${args.history}.final.json`,
      )
    }
    if (result.violations.length === 0) {
      console.log('ok')
      return 0
    }
    console.log(describeFailure(result, args.config, args.verbose))
    if (args.shrink) await shrinkAndReport(result)
    return 1
  }

  const from = args.from ?? Math.floor(Math.random() * 2 ** 31)
  console.log(
    `simulating ${args.seeds} seeds from ${from}${Object.keys(args.config).length > 0 ? ` with ${JSON.stringify(args.config)}` : ''}`,
  )
  const started = performance.now()
  const failures: SimResult[] = []
  const total: SimStats = emptyStats()
  let lastReport = started
  for (let i = 0; i < args.seeds; i++) {
    const seed = (from + i) >>> 0
    const result = await simulate(seed, args.config)
    addStats(total, result.stats)
    if (result.violations.length > 0) {
      failures.push(result)
      console.log(describeFailure(result, args.config, args.verbose))
      if (args.first) {
        console.log(
          `first failure at seed ${i + 1} of the run, after ${((performance.now() - started) / 1000).toFixed(1)} s`,
        )
        break
      }
    }
    const now = performance.now()
    if (now - lastReport > 10_000) {
      lastReport = now
      console.log(
        `  ${i + 1} seeds, ${failures.length} failed, ${((i + 1) / ((now - started) / 1000)).toFixed(1)} seeds/s`,
      )
    }
  }
  const seconds = (performance.now() - started) / 1000
  const ran = failures.length > 0 && args.first ? (failures[0] as SimResult).seed - from + 1 : args.seeds
  console.log(
    `${ran} seeds in ${seconds.toFixed(1)} s: ${(ran / seconds).toFixed(1)} seeds/s; ${failures.length} failed`,
  )
  console.log(`totals ${JSON.stringify(total)}`)
  if (failures.length === 0) return 0
  console.log(`failed seeds: ${failures.map((result) => result.seed).join(' ')}`)
  if (args.shrink) await shrinkAndReport(failures[0] as SimResult)
  return 1
}

async function shrinkAndReport(result: SimResult): Promise<void> {
  console.log(`shrinking seed ${result.seed} …`)
  const shrunk = await shrinkRun(result.config)
  if (shrunk === null) {
    console.log('  could not reproduce the failure while shrinking')
    return
  }
  console.log(`  smallest failing shape after ${shrunk.runs} runs: ${JSON.stringify(shrunk.overrides)}`)
  for (const line of shrunk.violations.slice(0, 3)) console.log(`  ${line}`)
  console.log(`  replay: ${replayLine(result.seed, shrunk.overrides)}`)
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error)
    process.exit(2)
  },
)
