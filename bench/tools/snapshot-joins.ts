/**
 * Brand-new nodes joining by snapshot, one after another, on one loaded cluster: a 3-node cluster
 * filled with N keys (each node's store written directly, then linked), then R joiners in turn
 * (each stopped after). Per join: keys/s as snapshot_bootstrap counts it (from /livez to a clock
 * covering node 1's), the CPU each sender and the joiner spent, and the joiner's `snapshot.last`.
 * Loading once makes repeated joins cheap to compare on a noisy machine. With PROF_DIR set, the
 * senders run under `--cpu-prof` and the first joiner too (bench/tools/cpuprofile-top.ts).
 *
 *   node --import tsx bench/tools/snapshot-joins.ts [keys] [rounds]
 */
import { MeshkvCluster, vcCovers } from '../lib/cluster.js'
import { fillNode } from '../lib/populate.js'
import { nowMs, waitFor } from '../lib/procs.js'

const keys = Number(process.argv[2] ?? 100_000)
const rounds = Number(process.argv[3] ?? 3)
const prof = process.env['PROF_DIR']
const cluster = await MeshkvCluster.start({ size: 3, label: 'snapshot-joins' })
try {
  const first = cluster.nodes.slice(0, 3)
  for (const node of first) await node.stop()
  for (const [i, node] of first.entries())
    await fillNode(node.dir, { count: Math.ceil(keys / 3), prefix: `boot-n${i}-`, valueBytes: 100, inflight: 256 })
  for (const node of first) node.start()
  for (const node of first) await node.waitReady()
  await cluster.waitSameVc(first, 600_000, 100)
  if (prof !== undefined) {
    for (const node of first) await node.stop()
    for (const node of first) node.start(['--cpu-prof', '--cpu-prof-dir', prof])
    for (const node of first) await node.waitReady()
    await cluster.waitSameVc(first, 600_000, 100)
  }
  const held = await cluster.checkDigests(first)
  console.log(`holds ${held.keys}`)
  for (let r = 0; r < rounds; r++) {
    const target = (await first[0]!.status()).vc
    const cpu0 = await Promise.all(first.map((n) => n.cpuSeconds()))
    const node = await cluster.addNode(first)
    node.start(prof === undefined || r > 0 ? [] : ['--cpu-prof', '--cpu-prof-dir', prof])
    const listening = await node.waitListening()
    const at = await waitFor(
      'catch up',
      600_000,
      async () => (vcCovers((await node.status()).vc, target) ? nowMs() : undefined),
      20,
    )
    const cpu1 = await Promise.all(first.map((n) => n.cpuSeconds()))
    const cpu4 = await node.cpuSeconds()
    const status = await node.status()
    const last = (status.snapshot as { last?: unknown }).last
    console.log(
      `round ${r}: ${Math.round(held.keys / ((at - listening) / 1000))} keys/s, ${Math.round(at - listening)} ms cpu senders ${cpu1.map((c, i) => Math.round((c - cpu0[i]!) * 1000)).join('/')} ms, joiner ${Math.round(cpu4 * 1000)} ms (with startup)`,
      JSON.stringify(last),
    )
    await node.stop()
  }
  if (prof !== undefined) for (const node of first) await node.stop()
} finally {
  await cluster.close()
}
