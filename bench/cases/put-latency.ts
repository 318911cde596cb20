/**
 * put_latency (issue 13, part 7): what one write costs alone. One standalone `meshkv node`
 * process (log level warn), one request in flight from this driver: an HTTP PUT of a fresh key
 * (w=1; the node fsyncs its own writes before it answers), then a GET of a key written before, then
 * a raw durable LevelDB batch of 3 puts (`{ sync: true }`, classic-level in this process on its own
 * directory: what the write's log entry, dot index entry and state would cost the disk at least),
 * and again: interleaved one by one, so load from elsewhere on the machine falls on all three
 * alike. A fifth as many rounds first go unmeasured (JIT, LevelDB's first files).
 *
 * value = PUT p50 (ms). The target: PUT p50 ≤ GET p50 + batch p50 + 0.2 ms, which is the
 * baseline here; ratio = baseline/value (1 or more: the target is met), `target_met` says it too.
 */
import { Level } from 'level'
import { MeshkvCluster } from '../lib/cluster.js'
import { Latencies } from '../lib/hist.js'
import { put, request } from '../lib/http.js'
import { keyOf } from '../lib/populate.js'
import { nowMs, removeDir, tempDir } from '../lib/procs.js'
import { entry, round } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

/** What the target allows beyond a GET and a durable batch, in ms (issue 13). */
const TARGET_SLACK_MS = 0.2

async function timedInto(histogram: Latencies | null, op: () => Promise<unknown>): Promise<void> {
  const started = nowMs()
  await op()
  histogram?.recordMs(nowMs() - started)
}

export const putLatencyCase: BenchCase = {
  names: ['put_latency'],
  async run({ sizes, log }: Context) {
    const cluster = await MeshkvCluster.start({ size: 1, linked: false, label: 'latency' })
    const dir = await tempDir('latency-raw')
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    try {
      await db.open()
      const url = cluster.node(1).url
      const value = Buffer.alloc(sizes.valueBytes, 0x6c)
      const [puts, gets, batches] = [new Latencies(), new Latencies(), new Latencies()]
      const warmup = Math.ceil(sizes.latencyOps / 5)
      let written = 0
      for (let i = 0; i < warmup + sizes.latencyOps; i++) {
        const measured = i >= warmup
        await timedInto(measured ? puts : null, () => put(url, keyOf('lat-', written++), value))
        const key = keyOf('lat-', Math.floor(Math.random() * written))
        await timedInto(measured ? gets : null, async () => {
          const answer = await request(`${url}/v1/kv/${encodeURIComponent(key)}`)
          if (answer.status !== 200) throw new Error(`GET ${key} answered ${answer.status}`)
        })
        const ops = ['log', 'dot', 'state'].map((part) => ({ type: 'put' as const, key: keyOf(part, i), value }))
        await timedInto(measured ? batches : null, () => db.batch(ops, { sync: true }))
      }
      const [put1, get1, batch1] = [puts.summary(), gets.summary(), batches.summary()]
      const target = get1.p50_ms + batch1.p50_ms + TARGET_SLACK_MS
      log(
        `PUT p50 ${put1.p50_ms} ms (p99 ${put1.p99_ms}), GET p50 ${get1.p50_ms} ms, durable 3-put batch p50 ${batch1.p50_ms} ms: target ${round(target, 3)} ms`,
      )
      return {
        put_latency: entry(
          put1.p50_ms,
          'ms',
          target,
          {
            p50_ms: put1.p50_ms,
            p99_ms: put1.p99_ms,
            max_ms: put1.max_ms,
            mean_ms: put1.mean_ms,
            get_p50_ms: get1.p50_ms,
            get_p99_ms: get1.p99_ms,
            batch_p50_ms: batch1.p50_ms,
            batch_p99_ms: batch1.p99_ms,
            target_ms: round(target, 3),
            target_met: put1.p50_ms <= target,
            ops: sizes.latencyOps,
            value_bytes: sizes.valueBytes,
            baseline_kind: `target = GET p50 + durable 3-put LevelDB batch p50 + ${TARGET_SLACK_MS} ms, one request in flight; ratio = baseline/value`,
          },
          put1.p50_ms > 0 ? target / put1.p50_ms : null,
        ),
      }
    } finally {
      await db.close().catch(() => undefined)
      await removeDir(dir)
      await cluster.close()
    }
  },
}
