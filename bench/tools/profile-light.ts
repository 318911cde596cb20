/**
 * What a node costs at a light load: N local nodes (default 3), HTTP writes spread over all of
 * them at RATE per second (default 200) for SECONDS (default 5), an SSE watch on every node, and
 * the CPU each node spent (from /metrics). With MESHKV_BENCH_NODE_OPTIONS="--cpu-prof
 * --cpu-prof-dir=DIR" every node leaves a profile (bench/tools/cpuprofile-top.ts reads it).
 *
 *   node --import tsx bench/tools/profile-light.ts [nodes] [rate] [seconds] [watch=1]
 */
import { MeshkvCluster } from '../lib/cluster.js'
import type { MeshkvNode } from '../lib/cluster.js'
import { watch } from '../lib/http.js'
import { cleanupAll, nowMs, sleep } from '../lib/procs.js'
import { writeAtRate } from '../lib/writer.js'
import { readFileSync, readdirSync } from 'node:fs'

/** CPU ticks (1/100 s) of each thread of a process, summed by thread name (Linux /proc). */
function threadTicks(pid: number): Map<string, number> {
  const byName = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const name = tid === String(pid) ? 'main' : `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}/${tid}`
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    byName.set(name, (byName.get(name) ?? 0) + ticks)
  }
  return byName
}

async function main(): Promise<void> {
  const [size = 3, rate = 200, seconds = 5, watching = 1] = process.argv.slice(2).map(Number)
  const cluster = await MeshkvCluster.start({ size, label: 'light' })
  try {
    const url = (i: number): string => (cluster.nodes[i % size] as MeshkvNode).url
    await writeAtRate(url, { prefix: 'warm-', rate, count: rate * 2, valueBytes: 100 })
    await cluster.waitSameVc(cluster.nodes, 60_000, 100)
    const streams =
      watching === 1 ? await Promise.all(cluster.nodes.map((node) => watch(node.url, 'light-', () => undefined))) : []
    const idle0 = await Promise.all(cluster.nodes.map((node) => node.cpuSeconds()))
    const idleAt = nowMs()
    await sleep(2000)
    const idle1 = await Promise.all(cluster.nodes.map((node) => node.cpuSeconds()))
    const idleS = (nowMs() - idleAt) / 1000
    const threads0 = cluster.nodes.map((node) => threadTicks(node.pid))
    const at = nowMs()
    const written = await writeAtRate(url, { prefix: 'light-', rate, count: rate * seconds, valueBytes: 100 })
    await cluster.waitSameVc(cluster.nodes, 60_000, 100)
    const load1 = await Promise.all(cluster.nodes.map((node) => node.cpuSeconds()))
    const loadS = (nowMs() - at) / 1000
    cluster.nodes.forEach((node, i) => {
      const before = threads0[i] as Map<string, number>
      const parts = [...threadTicks(node.pid)].map(([name, ticks]) => [name, (ticks - (before.get(name) ?? 0)) * 10])
      console.log(`node ${node.n} threads (ms): ${parts.map(([name, ms]) => `${name} ${ms}`).join(', ')}`)
    })
    for (const stream of streams) stream.close()
    cluster.nodes.forEach((node, i) => {
      const idle = ((idle1[i] as number) - (idle0[i] as number)) / idleS
      const load = ((load1[i] as number) - (idle1[i] as number)) / loadS
      console.log(
        `node ${node.n}: idle ${(idle * 1000).toFixed(1)} ms/s, load ${(load * 1000).toFixed(1)} ms/s, ` +
          `${(((load - idle) * loadS * 1e6) / written.acked).toFixed(0)} µs per write (net of idle)`,
      )
    })
    console.log(`${written.acked} writes at ${written.rate.toFixed(0)}/s, ${written.errors} errors`)
    // Stopped gracefully, so a node under --cpu-prof writes its profile.
    await Promise.all(cluster.nodes.map((node) => node.stop('SIGTERM')))
  } finally {
    await cluster.close()
    await cleanupAll()
  }
}

await main()
