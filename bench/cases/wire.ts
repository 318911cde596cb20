/**
 * wire_bytes: bytes the peer links carry per replicated change. Three linked `meshkv node`
 * processes dial each other through counting TCP proxies (lib/proxy.ts; WebSocket framing
 * counted, TCP/IP headers not). First every node writes one key, as every node of a multi-master
 * cluster does: each change then carries the other two nodes' ids in its `deps` (22 bytes), as
 * it would in use; without this, whether they did depended on which node wrote the member
 * admissions at start (155 against 173 bytes per change, run to run). The driver writes N changes (11-byte keys, 100-byte values) to
 * node 1 at 1k/s, waits until all three hold them and for acks to settle (1.5 s: acks go out
 * on the once-a-second tick; `--smoke` waits less), and divides the bytes of every link, both directions (changes,
 * acks and syncs), by the deliveries (N × 2 receiving nodes). The idle traffic of the links
 * (pings), measured just before for as long, is subtracted (`idle_bytes_per_s`).
 *
 * value = bytes per delivered change; baseline = payload bytes (key + value); ratio =
 * value/baseline; `overhead_bytes` = value − baseline. `bulk_bytes_per_change` repeats the
 * measurement with 64 writes in flight (larger frames).
 */
import { MeshkvCluster } from '../lib/cluster.js'
import { put } from '../lib/http.js'
import { keyOf } from '../lib/populate.js'
import { nowMs, sleep } from '../lib/procs.js'
import { entry, round } from '../lib/report.js'
import { writeAtRate } from '../lib/writer.js'
import type { BenchCase, Context } from './types.js'

function totalBytes(cluster: MeshkvCluster): number {
  return cluster.proxies.reduce((sum, proxy) => sum + proxy.total, 0)
}

/** Bytes so far on each link `a-b` (both proxies of the pair, both directions). */
function linkBytes(cluster: MeshkvCluster): Map<string, number> {
  const links = new Map<string, number>()
  for (const [pair, proxy] of cluster.pairProxies) {
    const [a, b] = pair.split('>').map(Number) as [number, number]
    const name = `${Math.min(a, b)}-${Math.max(a, b)}`
    links.set(name, (links.get(name) ?? 0) + proxy.total)
  }
  return links
}

async function measure(
  cluster: MeshkvCluster,
  prefix: string,
  count: number,
  rate: number,
  valueBytes: number,
  idlePerMs: number,
  settleMs: number,
): Promise<{ perChange: number; raw: number; ms: number; links: Record<string, number> }> {
  const before = totalBytes(cluster)
  const linksBefore = linkBytes(cluster)
  const started = nowMs()
  const written = await writeAtRate(cluster.node(1).url, { prefix, rate, count, valueBytes, maxOutstanding: 64 })
  if (written.acked !== count)
    throw new Error(`only ${written.acked} of ${count} writes acknowledged: ${written.firstError}`)
  await cluster.waitSameVc()
  await sleep(settleMs)
  const ms = nowMs() - started
  const raw = totalBytes(cluster) - before
  const deliveries = count * (cluster.nodes.length - 1)
  const links: Record<string, number> = {}
  for (const [name, bytes] of linkBytes(cluster)) links[name] = round((bytes - (linksBefore.get(name) ?? 0)) / count, 1)
  return { perChange: (raw - idlePerMs * ms) / deliveries, raw: raw / deliveries, ms, links }
}

export const wireCase: BenchCase = {
  names: ['wire_bytes'],
  async run({ sizes, log }: Context) {
    const cluster = await MeshkvCluster.start({ size: 3, proxies: true, label: 'wire' })
    try {
      for (const node of cluster.nodes) await put(node.url, `wire-writer-${node.n}`, new Uint8Array(1))
      await cluster.waitSameVc()
      await sleep(sizes.wireSettleMs)
      const idleStart = totalBytes(cluster)
      const idleStarted = nowMs()
      await sleep(Math.min(3000, Math.max(sizes.wireSettleMs, (sizes.wireChanges / sizes.wireRate) * 1000)))
      const idlePerMs = (totalBytes(cluster) - idleStart) / (nowMs() - idleStarted)
      const payload = Buffer.byteLength(keyOf('w1-', 0)) + sizes.valueBytes
      const steady = await measure(
        cluster,
        'w1-',
        sizes.wireChanges,
        sizes.wireRate,
        sizes.valueBytes,
        idlePerMs,
        sizes.wireSettleMs,
      )
      log(`${sizes.wireRate}/s: ${steady.perChange.toFixed(1)} bytes per delivered change (payload ${payload})`)
      const bulk = await measure(
        cluster,
        'w2-',
        sizes.wireChanges,
        1_000_000,
        sizes.valueBytes,
        idlePerMs,
        sizes.wireSettleMs,
      )
      log(`as fast as acknowledged (64 in flight): ${bulk.perChange.toFixed(1)} bytes per delivered change`)
      return {
        wire_bytes: entry(steady.perChange, 'bytes/change', payload, {
          overhead_bytes: round(steady.perChange - payload, 1),
          payload_bytes: payload,
          changes: sizes.wireChanges,
          rate_per_s: sizes.wireRate,
          raw_bytes_per_change: round(steady.raw, 1),
          idle_bytes_per_s: Math.round(idlePerMs * 1000),
          bulk_bytes_per_change: round(bulk.perChange, 1),
          link_bytes_per_change: steady.links,
          counted:
            'every peer link through a counting TCP proxy, both directions (changes, acks, syncs), per change per receiving node',
        }),
      }
    } finally {
      await cluster.close()
    }
  },
}
