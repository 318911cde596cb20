/**
 * Where the wire_bytes go: three linked `meshkv node` processes behind counting proxies (as the
 * wire_bytes case runs them); writes N changes at a rate to node 1 and prints, per proxy (dialer >
 * acceptor) and direction, the bytes per change, after the idle traffic of as long is taken off.
 *
 *   node --import tsx bench/tools/wire-split.ts [changes=2000] [rate=1000]
 */
import { MeshkvCluster } from '../lib/cluster.js'
import { nowMs, sleep } from '../lib/procs.js'
import { writeAtRate } from '../lib/writer.js'

const count = Number(process.argv[2] ?? 2000)
const rate = Number(process.argv[3] ?? 1000)
const cluster = await MeshkvCluster.start({ size: 3, proxies: true, label: 'wire-split' })
try {
  await sleep(1500)
  const snap = () => [...cluster.pairProxies].map(([pair, p]) => [pair, p.bytesToTarget, p.bytesFromTarget] as const)
  const idle0 = snap()
  const idleStart = nowMs()
  await sleep(2000)
  const idle1 = snap()
  const idleMs = nowMs() - idleStart
  const before = snap()
  const started = nowMs()
  const written = await writeAtRate(cluster.node(1).url, {
    prefix: 'ws-',
    rate,
    count,
    valueBytes: 100,
    maxOutstanding: 64,
  })
  await cluster.waitSameVc()
  await sleep(1500)
  const ms = nowMs() - started
  const after = snap()
  console.log(`${written.acked} writes at ${rate}/s; bytes per change (idle taken off), dialer>acceptor:`)
  for (let i = 0; i < after.length; i++) {
    const [pair, to, from] = after[i] as readonly [string, number, number]
    const idleTo = ((idle1[i]?.[1] ?? 0) - (idle0[i]?.[1] ?? 0)) / idleMs
    const idleFrom = ((idle1[i]?.[2] ?? 0) - (idle0[i]?.[2] ?? 0)) / idleMs
    const dTo = (to - (before[i]?.[1] ?? 0) - idleTo * ms) / count
    const dFrom = (from - (before[i]?.[2] ?? 0) - idleFrom * ms) / count
    console.log(`  ${pair}: to acceptor ${dTo.toFixed(1)}, to dialer ${dFrom.toFixed(1)}`)
  }
  const status = (await (await fetch(`${cluster.node(1).url}/v1/status`)).json()) as { vc: Record<string, number> }
  console.log('node 1 clock:', JSON.stringify(status.vc))
} finally {
  await cluster.close()
}
