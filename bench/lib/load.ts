/** Runs the autocannon worker (bench/workers/autocannon.ts) in its own process. */
import { spawnWorker } from './procs.js'

export interface LoadTarget {
  url: string
  method: 'PUT' | 'GET'
  keyPrefix: string
  keySpace?: number
  /** Appended to each path, e.g. `?w=2`. */
  query?: string
  /** Requests per second for this target (open loop); absent: as fast as it answers. */
  rate?: number
  /** Stop after this many requests instead of after `seconds`. */
  amount?: number
  connections?: number
}

export interface LoadSpec {
  targets: LoadTarget[]
  connections: number
  seconds?: number
  warmupSeconds?: number
  valueBytes: number
}

export interface LoadResult {
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  seconds: number
  rps: number
  p50_ms: number
  p99_ms: number
  max_ms: number
  mean_ms: number
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult[]> {
  const proc = spawnWorker('autocannon', 'autocannon.ts', [JSON.stringify(spec)])
  let last = ''
  proc.onLine((line) => {
    if (line.startsWith('[')) last = line
  })
  const exit = await proc.exited
  if (exit.code !== 0 || last === '')
    throw new Error(`the load generator failed (${exit.signal ?? exit.code}): ${proc.stderr.slice(-2000)}`)
  const results = JSON.parse(last) as LoadResult[]
  for (const result of results) {
    if (result.ok === 0)
      throw new Error(`the load generator got no 2xx answer (non2xx ${result.non2xx}, errors ${result.errors})`)
  }
  return results
}

/** Sum of rates and the worst latencies over several targets. */
export function combine(results: LoadResult[]): {
  rps: number
  ok: number
  p50_ms: number
  p99_ms: number
  max_ms: number
  non2xx: number
  errors: number
} {
  return {
    rps: results.reduce((sum, r) => sum + r.rps, 0),
    ok: results.reduce((sum, r) => sum + r.ok, 0),
    p50_ms: Math.max(...results.map((r) => r.p50_ms)),
    p99_ms: Math.max(...results.map((r) => r.p99_ms)),
    max_ms: Math.max(...results.map((r) => r.max_ms)),
    non2xx: results.reduce((sum, r) => sum + r.non2xx, 0),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
  }
}
