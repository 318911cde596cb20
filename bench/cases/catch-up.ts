/**
 * catch_up: a restarted node applying the changes it missed. A linked 3-node cluster of
 * `meshkv node` processes is started and stopped; node 1's store is then given N new changes (one
 * key each, 100-byte values) while nodes 2 and 3 are down (written in this process through
 * MeshNode on node 1's own directory: the same changes node 1 would have made serving clients,
 * made faster); node 1 starts again, then node 3 restarts and catches up from it. Rate = N / (time
 * its vector clock covers node 1's and their digests agree − time it first answered /livez);
 * `startup_ms` is spawn to /livez. Node 3 runs under `--cpu-prof`: `stages_ms` says where its time
 * went between /livez and covering node 1's clock (decode, merge, LevelDB, waiting, GC, other:
 * lib/profile-stages.ts), and `cpu_us_per_change` the CPU time of node 1 (sender) and node 3
 * (receiver) per change over the same span (process CPU, from /metrics; it holds on a busy
 * machine where the rate does not), with the receiver's peak RSS.
 *
 * snapshot_bootstrap: a linked 3-node cluster takes N keys over HTTP PUT (autocannon, spread over
 * the three), converges, then a brand-new node 4 (peers: nodes 1-3) starts. Rate = N / (time its
 * vector clock covers the others' and its digest equals theirs − time it first answered
 * /livez). (Equal clocks should mean equal digests; when the first digest check after the clock
 * differs, the time is when a later check found them equal, `digest_checks` says how many.)
 * `method` is read from node 4's /v1/status `snapshot` object while it joins (see methodOf):
 * "log" (log shipping) when it has none; `stages_ms`, `into` and `snapshot_ms` from its
 * `snapshot.last` (see stagesOf).
 *
 * With MESHKV_BENCH_PROF_DIR set, catch_up keeps node 3's profile there, and snapshot_bootstrap
 * runs every node with `--cpu-prof` into that directory (nodes 1-3 restarted under it before
 * node 4 starts; each `.cpuprofile` is written as the node exits; bench/tools/cpuprofile-top.ts
 * summarises one).
 *
 * Baseline of both: raw LevelDB ingest of N 100-byte records in batches of 512 without fsync, in
 * this process (what the disk takes when nothing else is done per record); ratio = value/baseline.
 */
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { MeshkvNode } from '../lib/cluster.js'
import { MeshkvCluster, vcCovers } from '../lib/cluster.js'
import { combine, runLoad } from '../lib/load.js'
import { fillNode, rawBatchIngest } from '../lib/populate.js'
import { nowMs, removeDir, rssOf, tempDir, waitFor } from '../lib/procs.js'
import type { ProfileStages } from '../lib/profile-stages.js'
import { monotonicUs, profileStages } from '../lib/profile-stages.js'
import type { Profile } from '../tools/cpuprofile-top.js'
import { entry } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

async function rawIngest(count: number, valueBytes: number): Promise<number> {
  const dir = await tempDir('raw-ingest')
  try {
    return await rawBatchIngest(dir, count, valueBytes)
  } finally {
    await removeDir(dir)
  }
}

/** Polls `node` until its vector clock covers `target`; returns when (performance.now()), and the `snapshot` objects seen. */
async function waitCaughtUp(
  node: MeshkvNode,
  target: Record<string, number>,
  ms: number,
): Promise<{ at: number; snapshots: unknown[] }> {
  const snapshots: unknown[] = []
  const at = await waitFor(
    `node ${node.n} to catch up`,
    ms,
    async () => {
      const status = await node.status()
      if (typeof status.snapshot === 'object' && status.snapshot !== null) snapshots.push(status.snapshot)
      return vcCovers(status.vc, target) ? nowMs() : undefined
    },
    20,
  )
  return { at, snapshots }
}

/**
 * How the new node got its state, from the `snapshot` objects its /v1/status showed: their
 * `method` when they name one; "snapshot" when one shows a transfer (a non-null field other than
 * `method`, e.g. `receiving` or `last`); "log" when there was none, or it stayed empty.
 */
function methodOf(snapshots: Record<string, unknown>[]): string {
  for (const snapshot of snapshots) if (typeof snapshot['method'] === 'string') return snapshot['method']
  const used = snapshots.some((snapshot) =>
    Object.values(snapshot).some((value) => value !== null && value !== undefined && value !== false && value !== 0),
  )
  return used ? 'snapshot' : 'log'
}

/**
 * Where the new node's time went while it took the snapshot, from its /v1/status `snapshot.last`
 * (docs/protocol.md, "Snapshots"): `stages_ms` (decode, join, leveldb, waiting) and `into`
 * (`place` or `stage`), with `snapshot_ms`, offer to joined. Nothing when the node reports none.
 */
function stagesOf(snapshot: Record<string, unknown>): Record<string, unknown> {
  const last = snapshot['last'] as { ms?: number; into?: string; stages_ms?: Record<string, number> } | null
  if (last === null || last === undefined || last.stages_ms === undefined) return {}
  return { stages_ms: last.stages_ms, into: last.into, snapshot_ms: last.ms }
}

/** Node 3's profile over the catch-up (lib/profile-stages.ts), or null when it wrote none. */
async function stagesFrom(dir: string, fromUs: number, toUs: number): Promise<ProfileStages | null> {
  const files = (await readdir(dir)).filter((name) => name.endsWith('.cpuprofile'))
  const file = files.sort().pop()
  if (file === undefined) return null
  const profile = JSON.parse(await readFile(join(dir, file), 'utf8')) as Profile & { startTime: number }
  return profileStages(profile, fromUs, toUs)
}

async function catchUp(context: Context): Promise<ReturnType<typeof entry>> {
  const { sizes, log } = context
  const changes = sizes.catchUpChanges
  const cluster = await MeshkvCluster.start({ size: 3, label: 'catchup' })
  try {
    await Promise.all(cluster.nodes.map((node) => node.stop()))
    const fillRate = await fillNode(cluster.node(1).dir, {
      count: changes,
      prefix: 'cu-',
      valueBytes: sizes.valueBytes,
      inflight: sizes.inflight,
    })
    log(`node 1 made ${changes} changes while nodes 2 and 3 were down (${Math.round(fillRate)}/s)`)
    const node1 = cluster.node(1)
    node1.start()
    await node1.waitReady()
    const target = (await node1.status()).vc
    const node3 = cluster.node(3)
    // Node 3 runs under the sampling profiler, so the entry says where its catch-up time went
    // (kept in MESHKV_BENCH_PROF_DIR when that is set).
    const profileDir = process.env['MESHKV_BENCH_PROF_DIR'] ?? (await tempDir('catchup-profile'))
    node3.start(['--cpu-prof', `--cpu-prof-dir=${profileDir}`])
    const listening = await node3.waitListening()
    const fromUs = monotonicUs()
    const cpuBefore = await Promise.all([node1.cpuSeconds(), node3.cpuSeconds()])
    const caught = await waitCaughtUp(node3, target, 600_000)
    const toUs = monotonicUs()
    const cpuAfter = await Promise.all([node1.cpuSeconds(), node3.cpuSeconds()])
    const receiverRss = await rssOf(node3.pid)
    // CPU time per change holds on a busy machine where the rate does not.
    const cpuUs = (index: number): number =>
      Math.round((((cpuAfter[index] as number) - (cpuBefore[index] as number)) * 1e7) / changes) / 10
    const equal = await cluster.waitSameDigest([node1, node3], caught.at)
    const seconds = (equal.at - listening) / 1000
    const rate = changes / seconds
    log(
      `node 3 caught up on ${changes} changes in ${seconds.toFixed(2)} s: ${Math.round(rate)} changes/s (startup ${Math.round(listening - node3.spawnedAtMs)} ms)`,
    )
    // Stopped gracefully, so a node under --cpu-prof writes its profile.
    await Promise.all([node1.stop(), node3.stop()])
    const stages = await stagesFrom(profileDir, fromUs, toUs)
    log(`node 3 while catching up (ms): ${JSON.stringify(stages)}`)
    log(
      `CPU per change (µs, whole process, under the profiler): sender ${cpuUs(0)}, receiver ${cpuUs(1)}; receiver peak RSS ${Math.round(receiverRss.peak / 2 ** 20)} MiB`,
    )
    const baseline = await rawIngest(changes, sizes.valueBytes)
    return entry(rate, 'changes/s', baseline, {
      changes,
      seconds: Math.round(seconds * 1000) / 1000,
      startup_ms: Math.round(listening - node3.spawnedAtMs),
      total_ms: Math.round(equal.at - node3.spawnedAtMs),
      vc_covered_ms: Math.round(caught.at - listening),
      stages_ms: stages,
      cpu_us_per_change: { sender: cpuUs(0), receiver: cpuUs(1) },
      receiver_peak_rss_mb: Math.round(receiverRss.peak / 2 ** 20),
      digest_checks: equal.checks,
      baseline_kind: 'raw LevelDB ingest of the same number of 100-byte records, batches of 512, no fsync',
    })
  } finally {
    await cluster.close()
  }
}

async function bootstrap(context: Context): Promise<ReturnType<typeof entry>> {
  const { sizes, log } = context
  const keys = sizes.bootstrapKeys
  const cluster = await MeshkvCluster.start({ size: 3, label: 'bootstrap' })
  try {
    const perNode = Math.ceil(keys / 3)
    const loaded = combine(
      await runLoad({
        connections: sizes.httpConnections,
        valueBytes: sizes.valueBytes,
        targets: cluster.nodes.map((node) => ({
          url: node.url,
          method: 'PUT' as const,
          keyPrefix: `boot-n${node.n}-`,
          amount: perNode,
        })),
      }),
    )
    await cluster.waitSameVc(cluster.nodes, 600_000, 100)
    const held = await cluster.checkDigests()
    log(`cluster holds ${held.keys} keys (loaded over HTTP at ${Math.round(loaded.rps)}/s)`)
    const profDir = process.env['MESHKV_BENCH_PROF_DIR']
    const profile = profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir]
    if (profDir !== undefined) {
      // The senders too: nodes 1-3 start again under the profiler (whichever sends, it is in one).
      for (const node of cluster.nodes) await node.stop()
      for (const node of cluster.nodes) node.start(profile)
      for (const node of cluster.nodes) await node.waitReady()
      await cluster.waitSameVc(cluster.nodes, 600_000, 100)
    }
    const target = (await cluster.node(1).status()).vc
    const node4 = await cluster.addNode()
    node4.start(profile)
    const listening = await node4.waitListening()
    const caught = await waitCaughtUp(node4, target, 600_000)
    // Every node, not against the digest held before: joining may itself change the state (a
    // membership record, with the membership work under way).
    const equal = await cluster.waitSameDigest(cluster.nodes, caught.at)
    const equalAt = equal.at
    const digestChecks = equal.checks
    const seconds = (equalAt - listening) / 1000
    const rate = held.keys / seconds
    const finalStatus = await node4.status()
    if (typeof finalStatus.snapshot === 'object' && finalStatus.snapshot !== null)
      caught.snapshots.push(finalStatus.snapshot)
    const snapshot = caught.snapshots[caught.snapshots.length - 1] as Record<string, unknown> | undefined
    const method = methodOf(caught.snapshots as Record<string, unknown>[])
    log(
      `node 4 (new) holds all ${held.keys} keys after ${seconds.toFixed(2)} s: ${Math.round(rate)} keys/s, method ${method}${digestChecks > 1 ? ` (digest equal only at check ${digestChecks})` : ''}`,
    )
    // The profile is written as the process exits, on SIGTERM (the cluster's close kills).
    if (profDir !== undefined) for (const node of cluster.nodes) await node.stop()
    const baseline = await rawIngest(held.keys, sizes.valueBytes)
    return entry(rate, 'keys/s', baseline, {
      keys: held.keys,
      method,
      ...(snapshot === undefined ? {} : { snapshot_status: snapshot, ...stagesOf(snapshot) }),
      seconds: Math.round(seconds * 1000) / 1000,
      startup_ms: Math.round(listening - node4.spawnedAtMs),
      total_ms: Math.round(equalAt - node4.spawnedAtMs),
      vc_covered_ms: Math.round(caught.at - listening),
      digest_checks: digestChecks,
      baseline_kind: 'raw LevelDB ingest of the same number of 100-byte records, batches of 512, no fsync',
    })
  } finally {
    await cluster.close()
  }
}

export const catchUpCase: BenchCase = {
  names: ['catch_up', 'snapshot_bootstrap'],
  async run(context: Context) {
    const results: Record<string, ReturnType<typeof entry>> = {}
    if (context.wants('catch_up')) results['catch_up'] = await catchUp(context)
    if (context.wants('snapshot_bootstrap')) results['snapshot_bootstrap'] = await bootstrap(context)
    return results
  },
}
