/**
 * replication_lag / replication_lag_80pct: 3 linked `meshkv node` processes. The driver writes to
 * node 1 over HTTP at a fixed rate (open loop: 1k/s, then 80% of the maximum rate measured just
 * before on the same cluster with the same client, 64 in flight) and follows `GET /v1/watch`
 * (server-sent events) on nodes 2 and 3. Lag of a write on a node = the time its SSE event was
 * read minus the time the PUT's answer was read, both in this process on one monotonic clock. An
 * event read before the ack counts as 0 (`negative_samples` says how many). value = p50 over both
 * nodes (ms). Each run is preceded by an unmeasured warm-up at the same rate (a fresh cluster is
 * slow for its first seconds).
 *
 * Why SSE: the same measurement on node 1 itself (ack → its own SSE event) is recorded as
 * `observer_overhead`: what observing adds (the node's log follower reads the new entry back
 * from LevelDB before it writes the event). Polling instead (`GET /v1/kv/<key>` with the write's
 * causal token on each node right after the ack, `lagRun(..., 'token')`) was measured on this
 * machine at 1k/s with a self overhead of 27-148 ms p50 against 1.5-5 ms for SSE: two extra
 * requests per write load the nodes. So SSE it is.
 *
 * `replication_lag.stages` splits the 1k/s run's lag into its stages (bench/lib/stages.ts): the
 * nodes run with `MESHKV_TRACE_STAGES=1` and record when each `changes` frame is sent and received
 * and when each commit is durable; what tracing costs them is an array push per frame and commit.
 *
 * Baseline: a raw `ws` round trip between this process and an echo process
 * (bench/workers/ws-echo.ts), 100-byte-ish messages at the same 1k/s, p50 in ms; ratio =
 * baseline/value (above 1: a change becomes visible on a peer faster than one bare ws round
 * trip), null when value is 0.
 */
import WebSocket from 'ws'
import { MeshkvCluster } from '../lib/cluster.js'
import { Latencies } from '../lib/hist.js'
import type { LatencySummary } from '../lib/hist.js'
import { request, watch } from '../lib/http.js'
import { nowMs, sleep, spawnWorker, waitFor } from '../lib/procs.js'
import { entry } from '../lib/report.js'
import type { LagProbe } from '../lib/stages.js'
import { stageLine, withStages } from '../lib/stages.js'
import { TRACE_STAGES_VARIABLE } from '../../src/cli/stage-trace.js'
import { writeAtRate, writeClosedLoop } from '../lib/writer.js'
import type { BenchCase, Context } from './types.js'

async function wsRoundTrip(rate: number, seconds: number, bytes: number): Promise<LatencySummary> {
  const echo = spawnWorker('ws echo', 'ws-echo.ts')
  try {
    const line = await echo.waitLine((text) => text.startsWith('{'), 30_000, 'listening line')
    const port = (JSON.parse(line) as { port: number }).port
    const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    })
    const sentAt = new Map<number, number>()
    const latencies = new Latencies()
    socket.on('message', (data: Buffer) => {
      const at = nowMs()
      const seq = data.readUInt32BE(0)
      const sent = sentAt.get(seq)
      if (sent !== undefined) {
        latencies.recordMs(at - sent)
        sentAt.delete(seq)
      }
    })
    const count = Math.max(10, Math.round(rate * seconds))
    const payload = Buffer.alloc(Math.max(8, bytes), 0x66)
    const started = nowMs()
    let seq = 0
    while (seq < count) {
      const due = Math.min(count, Math.floor(((nowMs() - started) / 1000) * rate) + 1)
      while (seq < due) {
        const message = Buffer.from(payload)
        message.writeUInt32BE(seq, 0)
        sentAt.set(seq, nowMs())
        socket.send(message)
        seq++
      }
      await sleep(1)
    }
    await waitFor('ws echoes', 10_000, () => (sentAt.size === 0 ? true : undefined), 5)
    socket.close()
    return latencies.summary()
  } finally {
    await echo.stop()
  }
}

interface LagRun {
  /** Node 1's own SSE stream: the observation overhead (the writer's node commits before it answers). */
  self: LatencySummary
  all: LatencySummary
  perNode: LatencySummary[]
  negative: number
  missing: number
  rate: number
  target: number
  errors: number
}

export type LagMethod = 'sse' | 'token'

/**
 * One fixed-rate run. `sse`: events of `GET /v1/watch` on each observer. `token`: right after each
 * ack, `GET /v1/kv/<key>` with the write's `X-Causal-Token` on each observer (the node answers
 * once it has applied the write: a long poll). Observers are nodes 2 and 3, and node 1 itself,
 * whose figures (`self`) are what the observation alone adds.
 */
export async function lagRun(
  cluster: MeshkvCluster,
  prefix: string,
  rate: number,
  seconds: number,
  valueBytes: number,
  method: LagMethod = 'sse',
  probe?: LagProbe,
): Promise<LagRun> {
  const observers = [cluster.node(2), cluster.node(3), cluster.node(1)]
  const perNode = observers.map(() => new Latencies())
  const all = new Latencies()
  const acks = new Map<string, number>()
  /** Events read before their ack: key → times, per observer. */
  const early = observers.map(() => new Map<string, number>())
  const seen = observers.map(() => new Set<string>())
  const reads: Promise<void>[] = []
  let readErrors = 0
  const record = (index: number, ms: number): void => {
    perNode[index]?.recordMs(ms)
    if (index < 2) all.recordMs(ms)
  }
  const streams =
    method !== 'sse'
      ? []
      : await Promise.all(
          observers.map((node, index) =>
            watch(node.url, prefix, (data, atMs) => {
              const key = data['key']
              if (typeof key !== 'string' || seen[index]?.has(key)) return
              seen[index]?.add(key)
              probe?.onSeen(index, key, atMs)
              const ackedAt = acks.get(key)
              if (ackedAt === undefined) early[index]?.set(key, atMs)
              else record(index, atMs - ackedAt)
            }),
          ),
        )
  const onAck = (key: string, atMs: number, token: string | undefined, etag: string | undefined): void => {
    probe?.onAck(key, atMs, etag)
    if (method === 'token') {
      observers.forEach((node, index) => {
        reads.push(
          request(`${node.url}/v1/kv/${encodeURIComponent(key)}?timeout_ms=30000`, {
            headers: token === undefined ? {} : { 'x-causal-token': token },
          }).then(
            (answer) => {
              if (answer.status !== 200) {
                readErrors++
                return
              }
              seen[index]?.add(key)
              record(index, nowMs() - atMs)
            },
            () => {
              readErrors++
            },
          ),
        )
      })
      return
    }
    acks.set(key, atMs)
    early.forEach((map, index) => {
      const at = map.get(key)
      if (at === undefined) return
      map.delete(key)
      record(index, at - atMs)
    })
  }
  try {
    const count = Math.max(10, Math.round(rate * seconds))
    const result = await writeAtRate(cluster.node(1).url, { prefix, rate, count, valueBytes, onAck })
    await Promise.all(reads)
    await waitFor(
      'every write visible on nodes 2 and 3',
      30_000,
      () => (seen.every((set) => set.size >= result.acked) ? true : undefined),
      10,
    ).catch(() => undefined)
    const missing = seen.slice(0, 2).reduce((sum, set) => sum + Math.max(0, result.acked - set.size), 0)
    return {
      self: (perNode[2] as Latencies).summary(),
      all: all.summary(),
      perNode: perNode.map((h) => h.summary()),
      negative: all.negative,
      missing,
      rate: result.rate,
      target: rate,
      errors: result.errors + readErrors,
    }
  } finally {
    for (const stream of streams) stream.close()
  }
}

function lagEntry(run: LagRun, baseline: LatencySummary, extras: Record<string, unknown>): ReturnType<typeof entry> {
  return entry(
    run.all.p50_ms,
    'ms',
    baseline.p50_ms,
    {
      p50_ms: run.all.p50_ms,
      p99_ms: run.all.p99_ms,
      max_ms: run.all.max_ms,
      mean_ms: run.all.mean_ms,
      samples: run.all.count,
      target_rate_per_s: Math.round(run.target),
      achieved_rate_per_s: Math.round(run.rate),
      per_node: { node2: run.perNode[0], node3: run.perNode[1] },
      observer_overhead: {
        ...run.self,
        what: 'the same measurement on node 1 itself (ack to its own SSE event): what the SSE observation adds',
      },
      negative_samples: run.negative,
      missing: run.missing,
      write_errors: run.errors,
      method: 'SSE /v1/watch on nodes 2 and 3; lag = event read − PUT answer read (same process clock)',
      baseline_kind: 'raw ws round trip between two processes at the same rate, p50; ratio = baseline/value',
      baseline_p99_ms: baseline.p99_ms,
      ...extras,
    },
    run.all.p50_ms > 0 ? baseline.p50_ms / run.all.p50_ms : null,
  )
}

export const lagCase: BenchCase = {
  names: ['replication_lag', 'replication_lag_80pct'],
  async run({ sizes, log }: Context) {
    const baseline = await wsRoundTrip(sizes.lagRate, sizes.lagSeconds, sizes.valueBytes + 40)
    log(`ws round trip: p50 ${baseline.p50_ms} ms, p99 ${baseline.p99_ms} ms`)
    const cluster = await MeshkvCluster.start({ size: 3, label: 'lag', env: { [TRACE_STAGES_VARIABLE]: '1' } })
    try {
      // A fresh cluster is slow for its first seconds (JIT): warm it at the same rate first.
      await lagRun(cluster, 'lagwarm-', sizes.lagRate, sizes.lagWarmupSeconds, sizes.valueBytes)
      await cluster.waitSameVc()
      const { result: fixed, stages } = await withStages(cluster.nodes, (stageProbe) =>
        lagRun(cluster, 'lag1k-', sizes.lagRate, sizes.lagSeconds, sizes.valueBytes, 'sse', stageProbe),
      )
      log(
        `${sizes.lagRate}/s: p50 ${fixed.all.p50_ms} ms, p99 ${fixed.all.p99_ms} ms, max ${fixed.all.max_ms} ms (${fixed.missing} missing)`,
      )
      log(`stages p50 ms: ${stageLine(stages)}`)
      await cluster.waitSameVc()
      const probe = await writeClosedLoop(cluster.node(1).url, {
        prefix: 'lagmax-',
        inflight: sizes.inflight,
        seconds: sizes.lagProbeSeconds,
        valueBytes: sizes.valueBytes,
      })
      log(
        `maximum rate (HTTP PUT to node 1, ${sizes.inflight} in flight from this process): ${Math.round(probe.rate)}/s`,
      )
      await cluster.waitSameVc()
      await sleep(500)
      const heavy = await lagRun(cluster, 'lag80-', probe.rate * 0.8, sizes.lagSeconds, sizes.valueBytes)
      log(
        `${Math.round(probe.rate * 0.8)}/s: p50 ${heavy.all.p50_ms} ms, p99 ${heavy.all.p99_ms} ms, max ${heavy.all.max_ms} ms (${heavy.missing} missing)`,
      )
      return {
        replication_lag: lagEntry(fixed, baseline, { stages }),
        replication_lag_80pct: lagEntry(heavy, baseline, {
          max_rate_per_s: Math.round(probe.rate),
          max_rate_method: `HTTP PUT to node 1 with ${sizes.inflight} in flight from the driver, ${sizes.lagProbeSeconds} s`,
        }),
      }
    } finally {
      await cluster.close()
    }
  },
}
