/**
 * http_put / http_get: one standalone `meshkv node` process (log level warn, so no per-request
 * log lines), loaded by autocannon in a separate process with 64 connections; the baseline is a
 * bare fastify server with an in-memory Map (bench/workers/bare-fastify.ts, its own process),
 * loaded the same way. PUTs write a new 100-byte key each; GETs read random keys the PUT run wrote.
 */
import { MeshkvCluster } from '../lib/cluster.js'
import type { LoadResult } from '../lib/load.js'
import { runLoad } from '../lib/load.js'
import { spawnWorker } from '../lib/procs.js'
import { entry } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

interface PutGet {
  put: LoadResult
  get: LoadResult
}

async function putThenGet(url: string, context: Context): Promise<PutGet> {
  const { sizes } = context
  const common = {
    connections: sizes.httpConnections,
    seconds: sizes.httpSeconds,
    warmupSeconds: sizes.httpWarmupSeconds,
    valueBytes: sizes.valueBytes,
  }
  const [put] = (await runLoad({ ...common, targets: [{ url, method: 'PUT', keyPrefix: 'put-' }] })) as [LoadResult]
  const keySpace = Math.max(1, Math.floor(put.ok * 0.9))
  const [get] = (await runLoad({ ...common, targets: [{ url, method: 'GET', keyPrefix: 'put-', keySpace }] })) as [
    LoadResult,
  ]
  return { put, get }
}

export const httpCase: BenchCase = {
  names: ['http_put', 'http_get'],
  async run(context: Context) {
    const { log, sizes } = context
    const cluster = await MeshkvCluster.start({ size: 1, linked: false, label: 'http' })
    let mesh: PutGet
    try {
      mesh = await putThenGet(cluster.node(1).url, context)
    } finally {
      await cluster.close()
    }
    log(
      `meshkv: PUT ${Math.round(mesh.put.rps)} req/s (p99 ${mesh.put.p99_ms} ms), GET ${Math.round(mesh.get.rps)} req/s`,
    )

    const bare = spawnWorker('bare fastify', 'bare-fastify.ts')
    let base: PutGet
    try {
      const line = await bare.waitLine((text) => text.startsWith('{'), 30_000, 'listening line')
      const port = (JSON.parse(line) as { port: number }).port
      base = await putThenGet(`http://127.0.0.1:${port}`, context)
    } finally {
      await bare.stop()
    }
    log(`bare fastify: PUT ${Math.round(base.put.rps)} req/s, GET ${Math.round(base.get.rps)} req/s`)
    const extras = (mine: LoadResult, theirs: LoadResult): Record<string, unknown> => ({
      p50_ms: mine.p50_ms,
      p99_ms: mine.p99_ms,
      max_ms: mine.max_ms,
      baseline_p50_ms: theirs.p50_ms,
      baseline_p99_ms: theirs.p99_ms,
      non2xx: mine.non2xx,
      errors: mine.errors,
      connections: sizes.httpConnections,
      seconds: sizes.httpSeconds,
      baseline_kind: 'bare fastify + in-memory Map, separate process, same autocannon load',
      log_level: 'warn',
    })
    return {
      http_put: entry(mesh.put.rps, 'req/s', base.put.rps, extras(mesh.put, base.put)),
      http_get: entry(mesh.get.rps, 'req/s', base.get.rps, extras(mesh.get, base.get)),
    }
  },
}
