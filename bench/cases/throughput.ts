/**
 * replicated_throughput / replicated_throughput_http: the sustained write rate a 3-node cluster
 * absorbs. "Absorbs" = the rate at which writes are acknowledged AND all three nodes hold the same
 * changes (equal vector clocks, polled every 20 ms) within 1 s after the load stops; a final digest
 * check confirms equal states.
 *
 * Search: first unthrottled (64 in flight per node); if the cluster does not converge within 1 s,
 * again at 70% of the last acknowledged rate (open loop), and so on, up to `throughputAttempts`.
 * The reported rate is the first that passed (`absorbed: true`), or the last tried (`absorbed:
 * false`).
 *
 * - embedded: 3 processes each with one MeshNode (bench/workers/embedded-node.ts), linked over
 *   real WebSockets on loopback, each writing through `MeshNode.put` with 64 in flight.
 *   Baseline: the same 3 processes unlinked (no peers), same load.
 * - http: 3 linked `meshkv node` processes, autocannon (one separate process) with 64 connections
 *   to each node. Baseline: 3 standalone `meshkv node` processes, same load.
 */
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { VectorClock } from '../lib/cluster.js'
import { MeshkvCluster, sameVcs } from '../lib/cluster.js'
import { combine, runLoad } from '../lib/load.js'
import { freePort, nowMs, removeDir, spawnWorker, tempDir, waitFor } from '../lib/procs.js'
import { entry } from '../lib/report.js'
import { WorkerRpc } from '../lib/rpc.js'
import type { BenchCase, Context } from './types.js'

const CONVERGE_WITHIN_MS = 1000
const CONVERGE_WAIT_MS = 60_000

interface Attempt {
  target: number | null
  rate: number
  convergeMs: number
  absorbed: boolean
}

/** Runs attempts until one converges within 1 s; `load(rate per node | null)` returns the acknowledged total rate. */
async function search(
  attempts: number,
  load: (perNodeRate: number | null, attempt: number) => Promise<number>,
  vcs: () => Promise<VectorClock[]>,
  log: (message: string) => void,
  warm: () => Promise<unknown>,
): Promise<Attempt[]> {
  // A fresh cluster is slow for its first seconds (JIT): warm it, and let it converge, first.
  await warm()
  await waitFor(
    'convergence after the warm-up',
    CONVERGE_WAIT_MS,
    async () => (sameVcs(await vcs()) ? true : undefined),
    20,
  )
  const done: Attempt[] = []
  let target: number | null = null
  for (let attempt = 0; attempt < attempts; attempt++) {
    const rate = await load(target === null ? null : target / 3, attempt)
    const stoppedAt = nowMs()
    let convergeMs = Infinity
    try {
      await waitFor('convergence', CONVERGE_WAIT_MS, async () => (sameVcs(await vcs()) ? true : undefined), 20)
      convergeMs = nowMs() - stoppedAt
    } catch {
      // stays Infinity
    }
    const absorbed = convergeMs <= CONVERGE_WITHIN_MS
    done.push({ target, rate, convergeMs, absorbed })
    log(
      `attempt ${attempt + 1}: target ${target === null ? 'unthrottled' : `${Math.round(target)}/s`}, acknowledged ${Math.round(rate)}/s, converged after ${Number.isFinite(convergeMs) ? Math.round(convergeMs) : '>60000'} ms`,
    )
    if (absorbed) break
    target = rate * 0.7
  }
  return done
}

function resultOf(attempts: Attempt[], baseline: number, extras: Record<string, unknown>): ReturnType<typeof entry> {
  const passed = attempts.find((attempt) => attempt.absorbed)
  const chosen = passed ?? (attempts[attempts.length - 1] as Attempt)
  return entry(chosen.rate, 'writes/s', baseline, {
    absorbed: passed !== undefined,
    converge_ms: Number.isFinite(chosen.convergeMs) ? Math.round(chosen.convergeMs) : null,
    unthrottled_rate: Math.round(attempts[0]?.rate ?? 0),
    attempts: attempts.map((attempt) => ({
      target: attempt.target === null ? null : Math.round(attempt.target),
      rate: Math.round(attempt.rate),
      converge_ms: Number.isFinite(attempt.convergeMs) ? Math.round(attempt.convergeMs) : null,
    })),
    ...extras,
  })
}

interface Worker {
  rpc: WorkerRpc
  url: string
}

async function startWorkers(linked: boolean, root: string): Promise<Worker[]> {
  const ports = [await freePort(), await freePort(), await freePort()]
  const secret = randomBytes(16).toString('hex')
  const workers = ports.map((port, i) => {
    const peers = linked ? ports.filter((_, j) => j !== i).map((other) => `http://127.0.0.1:${other}`) : []
    const config = { dir: join(root, `node${i + 1}`), port, peers, ...(linked ? { secret } : {}) }
    const proc = spawnWorker(`embedded node ${i + 1}`, 'embedded-node.ts', [JSON.stringify(config)])
    return { rpc: new WorkerRpc(proc), url: `http://127.0.0.1:${port}` }
  })
  await Promise.all(
    workers.map((worker) => worker.rpc.proc.waitLine((line) => line.includes('"listening"'), 30_000, 'listening')),
  )
  await waitFor(
    'embedded nodes ready and linked',
    30_000,
    async () => {
      const statuses = await Promise.all(
        workers.map((worker) => worker.rpc.call<{ ready: boolean; linked: string[] }>('status')),
      )
      return statuses.every((status) => status.ready && (!linked || status.linked.length === 2)) ? true : undefined
    },
    50,
  )
  return workers
}

async function closeWorkers(workers: Worker[]): Promise<void> {
  await Promise.all(
    workers.map(async (worker) => {
      await worker.rpc.call('close').catch(() => undefined)
      await worker.rpc.proc.stop('SIGTERM', 5000)
    }),
  )
}

async function embeddedLoad(
  workers: Worker[],
  sizes: Context['sizes'],
  perNodeRate: number | null,
  prefix: string,
  seconds = sizes.throughputSeconds,
): Promise<number> {
  const replies = await Promise.all(
    workers.map((worker, i) =>
      worker.rpc.call<{ acked: number; errors: number; seconds: number; firstError?: string }>('load', {
        seconds,
        rate: perNodeRate,
        inflight: sizes.inflight,
        prefix: `${prefix}n${i + 1}-`,
        valueBytes: sizes.valueBytes,
      }),
    ),
  )
  const failed = replies.find((reply) => reply.errors > 0)
  if (failed !== undefined && replies.every((reply) => reply.acked === 0))
    throw new Error(`every write failed: ${failed.firstError}`)
  return replies.reduce((sum, reply) => sum + reply.acked, 0) / Math.max(...replies.map((reply) => reply.seconds))
}

async function embeddedThroughput(context: Context): Promise<ReturnType<typeof entry>> {
  const { sizes, log } = context
  const root = await tempDir('throughput')
  try {
    const standalone = await startWorkers(false, join(root, 'standalone'))
    let baseline: number
    try {
      await embeddedLoad(standalone, sizes, null, 'warm-', sizes.throughputWarmupSeconds)
      baseline = await embeddedLoad(standalone, sizes, null, 'base-')
    } finally {
      await closeWorkers(standalone)
    }
    log(`embedded, 3 unlinked nodes: ${Math.round(baseline)} writes/s`)
    const workers = await startWorkers(true, join(root, 'linked'))
    try {
      const attempts = await search(
        sizes.throughputAttempts,
        (rate, attempt) => embeddedLoad(workers, sizes, rate, `a${attempt}-`),
        () => Promise.all(workers.map(async (worker) => (await worker.rpc.call<{ vc: VectorClock }>('vc')).vc)),
        log,
        () => embeddedLoad(workers, sizes, null, 'warm-', sizes.throughputWarmupSeconds),
      )
      const digests = await Promise.all(
        workers.map((worker) => worker.rpc.call<{ digest: string; keys: number }>('digest')),
      )
      const equal = digests.every((digest) => digest.digest === digests[0]?.digest)
      return resultOf(attempts, baseline, {
        digests_equal: equal,
        keys: digests[0]?.keys,
        inflight_per_node: sizes.inflight,
        seconds: sizes.throughputSeconds,
        baseline_kind: 'the same 3 embedded-node processes unlinked (no replication), same load',
      })
    } finally {
      await closeWorkers(workers)
    }
  } finally {
    await removeDir(root)
  }
}

async function httpLoad(
  cluster: MeshkvCluster,
  sizes: Context['sizes'],
  perNodeRate: number | null,
  prefix: string,
  seconds = sizes.throughputSeconds,
): Promise<number> {
  const results = await runLoad({
    connections: sizes.httpConnections,
    seconds,
    valueBytes: sizes.valueBytes,
    targets: cluster.nodes.map((node) => ({
      url: node.url,
      method: 'PUT' as const,
      keyPrefix: `${prefix}n${node.n}-`,
      ...(perNodeRate === null ? {} : { rate: perNodeRate }),
    })),
  })
  return combine(results).rps
}

async function httpThroughput(context: Context): Promise<ReturnType<typeof entry>> {
  const { sizes, log } = context
  const standalone = await MeshkvCluster.start({ size: 3, linked: false, label: 'tput-base' })
  let baseline: number
  try {
    await httpLoad(standalone, sizes, null, 'warm-', sizes.throughputWarmupSeconds)
    baseline = await httpLoad(standalone, sizes, null, 'base-')
  } finally {
    await standalone.close()
  }
  log(`http, 3 standalone nodes: ${Math.round(baseline)} writes/s`)
  const cluster = await MeshkvCluster.start({ size: 3, label: 'tput-http' })
  try {
    const attempts = await search(
      sizes.throughputAttempts,
      (rate, attempt) => httpLoad(cluster, sizes, rate, `a${attempt}-`),
      () => cluster.vcs(),
      log,
      () => httpLoad(cluster, sizes, null, 'warm-', sizes.throughputWarmupSeconds),
    )
    let equal = true
    let keys: number | undefined
    try {
      keys = (await cluster.checkDigests()).keys
    } catch {
      equal = false
    }
    return resultOf(attempts, baseline, {
      digests_equal: equal,
      keys,
      connections_per_node: sizes.httpConnections,
      seconds: sizes.throughputSeconds,
      baseline_kind: 'the same load on 3 standalone meshkv node processes (no replication)',
    })
  } finally {
    await cluster.close()
  }
}

export const throughputCase: BenchCase = {
  names: ['replicated_throughput', 'replicated_throughput_http'],
  async run(context: Context) {
    const results: Record<string, ReturnType<typeof entry>> = {}
    if (context.wants('replicated_throughput')) results['replicated_throughput'] = await embeddedThroughput(context)
    if (context.wants('replicated_throughput_http'))
      results['replicated_throughput_http'] = await httpThroughput(context)
    return results
  },
}
