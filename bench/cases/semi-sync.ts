/**
 * semi_sync: HTTP PUT req/s with `?w=2` against `?w=1`, on the same linked 3-node cluster
 * (`meshkv node` processes), autocannon with 64 connections against node 1, run A B B A (w=1,
 * w=2, w=2, w=1) and averaged per concern. value = w=2 rate, baseline = w=1 rate, ratio =
 * value/baseline.
 */
import { MeshkvCluster } from '../lib/cluster.js'
import type { LoadResult } from '../lib/load.js'
import { runLoad } from '../lib/load.js'
import { entry } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

function mean(a: LoadResult, b: LoadResult): LoadResult {
  const avg = (x: number, y: number): number => (x + y) / 2
  return {
    ...a,
    ok: a.ok + b.ok,
    rps: avg(a.rps, b.rps),
    p50_ms: avg(a.p50_ms, b.p50_ms),
    p99_ms: avg(a.p99_ms, b.p99_ms),
    max_ms: Math.max(a.max_ms, b.max_ms),
    non2xx: a.non2xx + b.non2xx,
    seconds: a.seconds + b.seconds,
  }
}

export const semiSyncCase: BenchCase = {
  names: ['semi_sync'],
  async run({ sizes, log }: Context) {
    const cluster = await MeshkvCluster.start({ size: 3, label: 'semisync' })
    try {
      const url = cluster.node(1).url
      // A B B A, each half as long, after a warm-up: the first seconds of a fresh cluster are slower
      // (JIT), and whichever concern ran first would pay for it.
      const seconds = Math.max(0.5, sizes.semiSyncSeconds / 2)
      const common = { connections: sizes.httpConnections, seconds, valueBytes: sizes.valueBytes }
      const once = async (w: number, round: number): Promise<LoadResult> => {
        const [result] = (await runLoad({
          ...common,
          ...(round === 0 && w === 1 ? { warmupSeconds: sizes.httpWarmupSeconds * 2 } : {}),
          targets: [{ url, method: 'PUT', keyPrefix: `w${w}r${round}-`, query: `?w=${w}` }],
        })) as [LoadResult]
        await cluster.waitSameVc()
        return result
      }
      const a1 = await once(1, 0)
      const b1 = await once(2, 0)
      const b2 = await once(2, 1)
      const a2 = await once(1, 1)
      const w1 = mean(a1, a2)
      const w2 = mean(b1, b2)
      log(
        `w=1: ${Math.round(w1.rps)} req/s (p99 ${w1.p99_ms} ms); w=2: ${Math.round(w2.rps)} req/s (p99 ${w2.p99_ms} ms)`,
      )
      return {
        semi_sync: entry(w2.rps, 'req/s', w1.rps, {
          p50_ms: w2.p50_ms,
          p99_ms: w2.p99_ms,
          max_ms: w2.max_ms,
          baseline_p50_ms: w1.p50_ms,
          baseline_p99_ms: w1.p99_ms,
          non2xx: w2.non2xx,
          connections: sizes.httpConnections,
          baseline_kind: 'the same cluster and load with ?w=1',
        }),
      }
    } finally {
      await cluster.close()
    }
  },
}
