/**
 * `npm run chaos -- [--duration S] [--seed N] [--sessions N]`: one process-chaos run (L2) of S
 * seconds of faults (default 60) on three real nodes, its report on stdout, exit 1 on any
 * violation (with the seed and the command that replays the same fault schedule).
 *
 * `npm run chaos -- --check HISTORY.jsonl` runs the checkers again over a saved run (its history
 * and the final states saved next to it), without starting any node.
 */
import { stopAllClusters } from '../cluster/helpers.js'
import { formatReport, recheck, replayCommands, runChaos } from './scenario.js'

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- [--duration SECONDS] [--seed N] [--sessions N]\n`)
  process.exit(2)
}

function parse(argv: readonly string[]): { durationS: number; seed: number; sessions: number } {
  const options = { durationS: 60, seed: Math.floor(Math.random() * 2 ** 32), sessions: 8 }
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index] as string
    const [name, inline] = flag.includes('=') ? flag.split('=', 2) : [flag, undefined]
    const value = inline ?? argv[++index]
    const number = Number(value)
    if (value === undefined || !Number.isSafeInteger(number) || number < 0)
      usage(`${name} takes a non-negative integer`)
    if (name === '--duration') options.durationS = number
    else if (name === '--seed') options.seed = number >>> 0
    else if (name === '--sessions') options.sessions = Math.max(1, number)
    else usage(`unknown option ${name}`)
  }
  if (options.durationS < 5) usage('--duration is at least 5 seconds')
  return options
}

const argv = process.argv.slice(2)
if (argv[0] === '--check') {
  const path = argv[1]
  if (path === undefined) usage('--check takes the path of a history file')
  const result = await recheck(path)
  console.log(
    JSON.stringify(
      { loss: result.loss, counters: result.counters, sets: result.sets, sessions: result.sessions },
      null,
      1,
    ),
  )
  for (const violation of result.violations) console.log(`VIOLATION ${violation}`)
  process.exit(result.violations.length > 0 ? 1 : 0)
}
const options = parse(argv)
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
