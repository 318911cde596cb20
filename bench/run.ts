/**
 * The benchmark suite (issue 6): programs, not tests. `npm run bench` runs everything,
 * `npm run bench -- --quick` a shorter pass (about 2.5 minutes on 2 cores), `--smoke` tiny sizes
 * (the smoke test's), `--only a,b` a subset by entry name, `--out file` another results file.
 *
 * Every benchmark measures its baseline in the same run on the same machine and reports the ratio.
 * Prints a table and writes bench/results/latest.json: `{ _meta, <name>: { value, unit, baseline,
 * ratio, ...extras } }`. Every process and temp directory a case starts is removed after it, even
 * when it fails (lib/procs.ts tracks them).
 */
import { loadavg } from 'node:os'
import { CASES, ENTRY_NAMES } from './cases/index.js'
import { parseArgs } from './lib/options.js'
import { cleanupAll, nowMs } from './lib/procs.js'
import type { Results } from './lib/report.js'
import { formatTable, machineMeta, writeResults } from './lib/report.js'

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2))
  const unknown = (options.only ?? []).filter((name) => !ENTRY_NAMES.includes(name))
  if (unknown.length > 0)
    throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; known: ${ENTRY_NAMES.join(', ')}`)
  const selected = CASES.filter(
    (benchCase) => options.only === null || benchCase.names.some((name) => options.only?.includes(name)),
  )
  const meta = machineMeta(options.command, options.mode)
  const results: Results = {}
  const failures: Record<string, string> = {}
  const started = nowMs()
  const stopOnSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping every benchmark process\n`)
    void cleanupAll().finally(() => process.exit(130))
  }
  process.once('SIGINT', stopOnSignal)
  process.once('SIGTERM', stopOnSignal)

  for (const benchCase of selected) {
    const label = benchCase.names.join(', ')
    const caseStarted = nowMs()
    process.stderr.write(`▶ ${label}\n`)
    try {
      const produced = await benchCase.run({
        mode: options.mode,
        sizes: options.sizes,
        log: (message) => process.stderr.write(`  ${message}\n`),
        wants: (name) => options.only === null || options.only.includes(name),
      })
      for (const [name, value] of Object.entries(produced))
        if (options.only === null || options.only.includes(name)) results[name] = value
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
      process.stderr.write(`  FAILED: ${message}\n`)
      for (const name of benchCase.names) failures[name] = message.split('\n')[0] ?? message
    } finally {
      await cleanupAll()
    }
    process.stderr.write(`  (${((nowMs() - caseStarted) / 1000).toFixed(1)} s)\n`)
  }

  meta.loadAvgEnd = Math.round((loadavg()[0] ?? 0) * 100) / 100
  meta.durationS = Math.round((nowMs() - started) / 100) / 10
  if (Object.keys(failures).length > 0) meta.failures = failures
  process.stdout.write(`\n${formatTable(results, meta)}\n`)
  await writeResults(options.out, results, meta)
  process.stdout.write(`\nwritten: ${options.out} (${meta.durationS} s)\n`)
  return Object.keys(failures).length > 0 ? 1 : 0
}

let code = 1
try {
  code = await main()
} catch (error) {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
} finally {
  await cleanupAll()
}
process.exit(code)
