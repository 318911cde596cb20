/**
 * `npm run chaos -- [--duration S] [--seed N] [--sessions N]`: one process-chaos run (L2) of S
 * seconds of faults (default 60) on three real nodes, its report on stdout, exit 1 on any
 * violation (with the seed and the command that replays the same fault schedule).
 *
 * `npm run chaos -- --check HISTORY.jsonl` runs the checkers again over a saved run (its history
 * and the final states saved next to it), without starting any node.
 */
import { stopAllClusters } from '../cluster/helpers.js'
import { countFlag, parseFlags } from '../support/args.js'
import { describeViolation, formatReport, recheck, replayCommands, runChaos } from './scenario.js'

const USAGE = 'usage: npm run chaos -- [--duration SECONDS] [--seed N] [--sessions N] | --check HISTORY.jsonl'

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\n${USAGE}\n`)
  process.exit(2)
}

interface Args {
  durationS: number
  seed: number
  sessions: number
  check: string | undefined
}

function parse(argv: readonly string[]): Args {
  try {
    const flags = parseFlags(argv, {
      duration: { type: 'string' },
      seed: { type: 'string' },
      sessions: { type: 'string' },
      check: { type: 'string' },
    })
    const args = {
      durationS: countFlag('duration', flags.duration) ?? 60,
      seed: (countFlag('seed', flags.seed) ?? Math.floor(Math.random() * 2 ** 32)) >>> 0,
      sessions: Math.max(1, countFlag('sessions', flags.sessions) ?? 8),
      check: flags.check,
    }
    if (args.durationS < 5) throw new Error('--duration is at least 5 seconds')
    return args
  } catch (error) {
    return usage(error instanceof Error ? error.message : String(error))
  }
}

const options = parse(process.argv.slice(2))
if (options.check !== undefined) {
  const result = await recheck(options.check)
  console.log(
    JSON.stringify(
      { loss: result.loss, counters: result.counters, sets: result.sets, sessions: result.sessions },
      null,
      1,
    ),
  )
  for (const violation of result.violations) console.log(`VIOLATION ${describeViolation(violation)}`)
  process.exit(result.violations.length > 0 ? 1 : 0)
}
let exitCode = 0
try {
  const report = await runChaos({
    seed: options.seed,
    durationMs: options.durationS * 1000,
    sessions: options.sessions,
  })
  for (const line of formatReport(report)) console.log(line)
  if (report.violations.length > 0) exitCode = 1
  else console.log(`chaos seed ${options.seed}: no violations`)
} catch (error) {
  console.error(
    `chaos seed ${options.seed} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  )
  console.error(`replay: ${replayCommands(options.seed, options.durationS * 1000)}`)
  exitCode = 1
} finally {
  await stopAllClusters()
}
process.exit(exitCode)
