/**
 * scale (issue 13, part 8): whether a replicated change costs the same per link as nodes are
 * added. Two clusters one after the other, `scaleNodes` (16) and `scaleBaseNodes` (3) local
 * `meshkv node` processes, each a full mesh (every node lists every other as a peer). The driver
 * writes as below for `scaleWarmupSeconds` unmeasured (a fresh cluster is slow for its first
 * seconds), follows `GET /v1/watch` on every node, then:
 *
 * 1. idle: reads every node's `process_cpu_seconds_total` from `/metrics`, waits
 *    `scaleIdleSeconds` with no writes, reads it again (pings, ticks, GC: what the cluster costs
 *    doing nothing);
 * 2. load: reads the CPU again, writes fresh keys over HTTP at `scaleRate` per second in all (open
 *    loop, write i to node i mod N) for `scaleSeconds`, waits until every write's SSE event was
 *    read on every other node (at most 30 s), reads the CPU again.
 *
 * Visible on all: per write, the latest of its events on the N−1 other nodes minus the time its
 * PUT answer was read (same driver clock; an event before the answer counts 0). CPU per replicated
 * change per link: the CPU all nodes spent in the load window / (writes × (N−1)), in µs: gross,
 * and net of the idle rate over the window. Both include the origin's HTTP handling of the write
 * and every node's SSE event for it (N per write, next to N−1 links): a cost per link that stays
 * flat shows as a ratio near 1 or below.
 *
 * value = gross µs per change per link at `scaleNodes`; baseline = the same at `scaleBaseNodes`;
 * ratio = value/baseline. p50_ms/p99_ms/max_ms: visible on all at `scaleNodes`.
 */
import { MeshkvCluster } from '../lib/cluster.js'
import type { MeshkvNode } from '../lib/cluster.js'
import { Latencies } from '../lib/hist.js'
import type { LatencySummary } from '../lib/hist.js'
import { watch } from '../lib/http.js'
import { nowMs, sleep, waitFor } from '../lib/procs.js'
import { entry, round } from '../lib/report.js'
import type { WriterResult } from '../lib/writer.js'
import { writeAtRate } from '../lib/writer.js'
import type { BenchCase, Context } from './types.js'
import type { Sizes } from '../lib/options.js'

interface ScaleRun {
  nodes: number
  writes: number
  errors: number
  missing: number
  visible: LatencySummary
  /** Every (write, other node) pair: time until it was visible there. */
  pair: LatencySummary
  grossUsPerChangeLink: number
  netUsPerChangeLink: number
  idleCpuMsPerS: number
  loadCpuS: number
  windowS: number
  startS: number
}

async function clusterCpu(cluster: MeshkvCluster): Promise<{ cpu: number; at: number }> {
  const all = await Promise.all(cluster.nodes.map((node) => node.cpuSeconds()))
  return { cpu: all.reduce((sum, value) => sum + value, 0), at: nowMs() }
}

interface Loaded {
  /** Per node: key → when its SSE event was read. */
  seen: Map<string, number>[]
  /** Key → when its PUT answer was read, and the index of the node it was written to. */
  acks: Map<string, { at: number; origin: number }>
  written: WriterResult
  /** CPU seconds of all nodes per second, idle. */
  idleRate: number
  /** CPU seconds of all nodes over the load window, and its length in seconds. */
  loadCpu: number
  windowS: number
}

async function loadAndWatch(cluster: MeshkvCluster, sizes: Sizes, prefix: string): Promise<Loaded> {
  const nodes = cluster.nodes
  const seen = nodes.map(() => new Map<string, number>())
  const streams = await Promise.all(
    nodes.map((node, index) =>
      watch(node.url, prefix, (data, atMs) => {
        const key = data['key']
        if (typeof key === 'string' && !seen[index]?.has(key)) seen[index]?.set(key, atMs)
      }),
    ),
  )
  try {
    const idleFrom = await clusterCpu(cluster)
    await sleep(sizes.scaleIdleSeconds * 1000)
    const idleTo = await clusterCpu(cluster)
    const acks = new Map<string, { at: number; origin: number }>()
    const origins = new Map<string, number>()
    const loadFrom = await clusterCpu(cluster)
    const written = await writeAtRate((i) => (nodes[i % nodes.length] as MeshkvNode).url, {
      prefix,
      rate: sizes.scaleRate,
      count: Math.max(10, Math.round(sizes.scaleRate * sizes.scaleSeconds)),
      valueBytes: sizes.valueBytes,
      onSend: (key) => origins.set(key, origins.size % nodes.length),
      onAck: (key, at) => acks.set(key, { at, origin: origins.get(key) as number }),
    })
    const visibleEverywhere = (): boolean =>
      [...acks.entries()].every(([key, { origin }]) => seen.every((map, index) => index === origin || map.has(key)))
    await waitFor(
      'every write visible on every other node',
      30_000,
      () => (visibleEverywhere() ? true : undefined),
      20,
    ).catch(() => undefined)
    const loadTo = await clusterCpu(cluster)
    return {
      seen,
      acks,
      written,
      idleRate: (idleTo.cpu - idleFrom.cpu) / ((idleTo.at - idleFrom.at) / 1000),
      loadCpu: loadTo.cpu - loadFrom.cpu,
      windowS: (loadTo.at - loadFrom.at) / 1000,
    }
  } finally {
    for (const stream of streams) stream.close()
  }
}

async function scaleRun(size: number, sizes: Sizes): Promise<ScaleRun> {
  const started = nowMs()
  const cluster = await MeshkvCluster.start({ size, label: `scale${size}` })
  try {
    const startS = (nowMs() - started) / 1000
    // A fresh cluster is slow for its first seconds (JIT): the same load first, unmeasured.
    await writeAtRate((i) => (cluster.nodes[i % size] as MeshkvNode).url, {
      prefix: `scalewarm${size}-`,
      rate: sizes.scaleRate,
      count: Math.max(10, Math.round(sizes.scaleRate * sizes.scaleWarmupSeconds)),
      valueBytes: sizes.valueBytes,
    })
    await cluster.waitSameVc(cluster.nodes, 60_000, 100)
    const { seen, acks, written, idleRate, loadCpu, windowS } = await loadAndWatch(cluster, sizes, `scale${size}-`)
    const visible = new Latencies()
    const pair = new Latencies()
    let missing = 0
    for (const [key, { at, origin }] of acks) {
      const times = seen.filter((_, index) => index !== origin).map((map) => map.get(key))
      for (const time of times) if (time !== undefined) pair.recordMs(time - at)
      if (times.some((time) => time === undefined)) missing++
      else visible.recordMs(Math.max(...(times as number[])) - at)
    }
    const changeLinks = written.acked * (size - 1)
    return {
      nodes: size,
      writes: written.acked,
      errors: written.errors,
      missing,
      visible: visible.summary(),
      pair: pair.summary(),
      grossUsPerChangeLink: (loadCpu / changeLinks) * 1e6,
      netUsPerChangeLink: ((loadCpu - idleRate * windowS) / changeLinks) * 1e6,
      idleCpuMsPerS: idleRate * 1000,
      loadCpuS: loadCpu,
      windowS,
      startS,
    }
  } finally {
    await cluster.close()
  }
}

function described(run: ScaleRun): Record<string, unknown> {
  return {
    nodes: run.nodes,
    writes: run.writes,
    write_errors: run.errors,
    missing: run.missing,
    visible_on_all: run.visible,
    visible_per_node: run.pair,
    gross_us_per_change_link: round(run.grossUsPerChangeLink),
    net_us_per_change_link: round(run.netUsPerChangeLink),
    idle_cpu_ms_per_s: round(run.idleCpuMsPerS),
    load_cpu_s: round(run.loadCpuS, 3),
    load_window_s: round(run.windowS, 2),
    start_s: round(run.startS, 1),
  }
}

export const scaleCase: BenchCase = {
  names: ['scale'],
  async run({ sizes, log }: Context) {
    const runs: ScaleRun[] = []
    for (const size of [sizes.scaleNodes, sizes.scaleBaseNodes]) {
      const run = await scaleRun(size, sizes)
      log(
        `${size} nodes (up in ${round(run.startS, 1)} s): visible on all p50 ${run.visible.p50_ms} ms, p99 ${run.visible.p99_ms} ms; ` +
          `${round(run.grossUsPerChangeLink)} µs CPU per change per link (net of idle ${round(run.netUsPerChangeLink)}), idle ${round(run.idleCpuMsPerS)} ms/s (${run.missing} missing)`,
      )
      runs.push(run)
    }
    const [large, base] = runs as [ScaleRun, ScaleRun]
    return {
      scale: entry(large.grossUsPerChangeLink, 'µs/change/link', base.grossUsPerChangeLink, {
        p50_ms: large.visible.p50_ms,
        p99_ms: large.visible.p99_ms,
        max_ms: large.visible.max_ms,
        net_ratio: base.netUsPerChangeLink > 0 ? round(large.netUsPerChangeLink / base.netUsPerChangeLink, 3) : null,
        visible_p50_ratio: base.visible.p50_ms > 0 ? round(large.visible.p50_ms / base.visible.p50_ms, 3) : null,
        large: described(large),
        base: described(base),
        rate_per_s: sizes.scaleRate,
        seconds: sizes.scaleSeconds,
        method:
          'full mesh of local meshkv node processes; writes spread over all nodes; SSE /v1/watch on every node; CPU from /metrics process_cpu_seconds_total',
        baseline_kind: `the same at ${sizes.scaleBaseNodes} nodes; ratio = value/baseline (flat cost per link: near 1 or below)`,
      }),
    }
  },
}
