/**
 * The HTTP load generator, in its own process (never the node's): autocannon against one or more
 * targets at once. argv[2] is a JSON LoadSpec; the last stdout line is a JSON LoadResult[] (one
 * per target, in order).
 *
 * PUT requests each write a new key (`<keyPrefix><n>`); GET requests read a random key of
 * `<keyPrefix>0 .. <keyPrefix><keySpace-1>`.
 */
import autocannon from 'autocannon'
import type { LoadResult, LoadSpec, LoadTarget } from '../lib/load.js'

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
const value = Buffer.alloc(spec.valueBytes, 0x61)

function options(target: LoadTarget, seconds: number | undefined, prefix: string): autocannon.Options {
  let next = 0
  const keySpace = target.keySpace ?? 1
  const query = target.query ?? ''
  const base = new URL(target.url)
  const request: autocannon.Request = {
    method: target.method,
    ...(target.method === 'PUT' ? { body: value, headers: { 'content-type': 'application/octet-stream' } } : {}),
    setupRequest: (req) => {
      const n = target.method === 'PUT' ? next++ : Math.floor(Math.random() * keySpace)
      return { ...req, path: `${base.pathname.replace(/\/$/, '')}/v1/kv/${prefix}${n}${query}` }
    },
  }
  return {
    url: base.origin,
    connections: target.connections ?? spec.connections,
    ...(seconds === undefined ? {} : { duration: seconds }),
    ...(target.amount === undefined ? {} : { amount: target.amount }),
    ...(target.rate === undefined ? {} : { overallRate: Math.max(1, Math.round(target.rate)) }),
    timeout: 30,
    requests: [request],
  }
}

async function run(target: LoadTarget, seconds: number | undefined, prefix: string): Promise<LoadResult> {
  const result = await autocannon(options(target, seconds, prefix))
  const ok = result['2xx']
  return {
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds: result.duration,
    rps: ok / result.duration,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    max_ms: result.latency.max,
    mean_ms: result.latency.mean,
  }
}

if (spec.warmupSeconds !== undefined && spec.warmupSeconds > 0) {
  await Promise.all(
    spec.targets.map((target) =>
      run(
        { ...target, amount: undefined },
        spec.warmupSeconds,
        target.method === 'PUT' ? `warm-${target.keyPrefix}` : target.keyPrefix,
      ),
    ),
  )
}
const results = await Promise.all(
  spec.targets.map((target) => run(target, target.amount === undefined ? spec.seconds : undefined, target.keyPrefix)),
)
process.stdout.write(`${JSON.stringify(results)}\n`)
