/**
 * CPU per HTTP request: the http_put / http_get load (one `meshkv node`, 64 autocannon
 * connections, new 100-byte keys, then random reads of them) against a node and against the bare
 * fastify baseline, with the CPU each server process spent (all threads, from /proc) per answered
 * request. On a machine shared with other work the req/s of the bench swing; CPU per request
 * does much less, and its ratio is what the req/s ratio tends to when the server is the bottleneck.
 * With MESHKV_BENCH_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=DIR" the node and the baseline leave profiles.
 *
 *   node --import tsx bench/tools/profile-http.ts [seconds=4] [rounds=1]
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { MeshkvCluster } from '../lib/cluster.js'
import type { LoadResult } from '../lib/load.js'
import { runLoad } from '../lib/load.js'
import { WORKERS_DIR, cleanupAll, spawnNode } from '../lib/procs.js'

/** CPU seconds in user and system mode (all threads) a process has used (Linux /proc). */
function cpuSecondsOf(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }
}

interface Measured {
  rps: number
  cpuUs: number
  /** The part of `cpuUs` spent in the kernel (sockets, mostly). */
  systemUs: number
}

async function measure(pid: number, url: string, seconds: number): Promise<{ put: Measured; get: Measured }> {
  const common = { connections: 64, seconds, warmupSeconds: 1, valueBytes: 100 }
  const one = async (target: Parameters<typeof runLoad>[0]['targets'][0]): Promise<[LoadResult, Measured]> => {
    const before = cpuSecondsOf(pid)
    const [result] = (await runLoad({ ...common, targets: [target] })) as [LoadResult]
    const after = cpuSecondsOf(pid)
    // The warm-up's requests count too: about `seconds + 1` of load for `ok` answers in `seconds`.
    const perRequest = (s: number): number => (s * 1e6) / (result.ok * ((seconds + 1) / seconds))
    const [user, system] = [perRequest(after.user - before.user), perRequest(after.system - before.system)]
    return [result, { rps: result.rps, cpuUs: user + system, systemUs: system }]
  }
  const [putResult, put] = await one({ url, method: 'PUT', keyPrefix: 'put-' })
  const keySpace = Math.max(1, Math.floor(putResult.ok * 0.9))
  const [, get] = await one({ url, method: 'GET', keyPrefix: 'put-', keySpace })
  return { put, get }
}

async function main(): Promise<void> {
  const [seconds = 4, rounds = 1] = process.argv.slice(2).map(Number)
  for (let round = 0; round < rounds; round++) {
    const cluster = await MeshkvCluster.start({ size: 1, linked: false, label: 'profile-http' })
    let mesh
    try {
      mesh = await measure(cluster.node(1).pid, cluster.node(1).url, seconds)
    } finally {
      // A graceful stop, so that a profiled node writes its profile (close() kills).
      await cluster.node(1).stop('SIGTERM')
      await cluster.close()
    }
    const profiling = process.env['MESHKV_BENCH_NODE_OPTIONS']?.split(' ').filter(Boolean) ?? []
    const bare = spawnNode('bare fastify', ['--import', 'tsx', join(WORKERS_DIR, 'bare-fastify.ts')], profiling)
    let base
    try {
      const line = await bare.waitLine((text) => text.startsWith('{'), 30_000, 'listening line')
      base = await measure(bare.pid, `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`, seconds)
    } finally {
      await bare.stop()
    }
    for (const kind of ['put', 'get'] as const) {
      const [m, b] = [mesh[kind], base[kind]]
      console.log(
        `${kind}: meshkv ${Math.round(m.rps)} req/s ${m.cpuUs.toFixed(0)} µs/req (system ${m.systemUs.toFixed(0)}), ` +
          `bare ${Math.round(b.rps)} req/s ${b.cpuUs.toFixed(0)} µs/req (system ${b.systemUs.toFixed(0)}); ` +
          `ratio req/s ${(m.rps / b.rps).toFixed(2)}, CPU ${(b.cpuUs / m.cpuUs).toFixed(2)}`,
      )
    }
  }
}

try {
  await main()
} finally {
  await cleanupAll()
}
