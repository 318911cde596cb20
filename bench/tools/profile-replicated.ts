/**
 * replicated_throughput's embedded cluster alone (3 linked MeshNode processes, 64 puts in flight
 * on each for a few seconds), each node under `node --cpu-prof`, to see where the replicated path
 * spends its time:
 *
 *   node --import tsx bench/tools/profile-replicated.ts [seconds] [profile dir]
 *   node --import tsx bench/tools/cpuprofile-top.ts <dir>/<file>.cpuprofile [count]
 */
import { randomBytes } from 'node:crypto'
import { join, resolve } from 'node:path'
import { cleanupAll, freePort, spawnNode, tempDir, waitFor } from '../lib/procs.js'
import { WorkerRpc } from '../lib/rpc.js'

const seconds = Number(process.argv[2] ?? 5)
const profileDir = resolve(process.argv[3] ?? '.tmp/prof-replicated')
const worker = join(import.meta.dirname, '..', 'workers', 'embedded-node.ts')

try {
  const root = await tempDir('profile-replicated')
  const ports = [await freePort(), await freePort(), await freePort()]
  const secret = randomBytes(16).toString('hex')
  const rpcs = ports.map((port, i) => {
    const peers = ports.filter((_, j) => j !== i).map((other) => `http://127.0.0.1:${other}`)
    const config = { dir: join(root, `node${i + 1}`), port, peers, secret }
    const proc = spawnNode(
      `node ${i + 1}`,
      ['--import', 'tsx', worker, JSON.stringify(config)],
      ['--cpu-prof', `--cpu-prof-dir=${profileDir}`],
    )
    return new WorkerRpc(proc)
  })
  await Promise.all(rpcs.map((rpc) => rpc.proc.waitLine((line) => line.includes('"listening"'), 30_000, 'listening')))
  await waitFor('linked', 30_000, async () => {
    const statuses = await Promise.all(rpcs.map((rpc) => rpc.call<{ ready: boolean; linked: string[] }>('status')))
    return statuses.every((status) => status.ready && status.linked.length === 2) ? true : undefined
  })
  // A fresh node takes writes once every peer has synced with it (the seq guard): warm up until all do.
  await waitFor('writable', 60_000, async () => {
    const warm = await Promise.all(
      rpcs.map((rpc, i) =>
        rpc.call<{ acked: number }>('load', {
          seconds: 0.5,
          rate: null,
          inflight: 8,
          prefix: `w${i}-`,
          valueBytes: 100,
        }),
      ),
    )
    return warm.every((answer) => answer.acked > 0) ? true : undefined
  })
  const results = await Promise.all(
    rpcs.map((rpc, i) =>
      rpc.call<{ acked: number; seconds: number; errors: number; firstError?: string }>('load', {
        seconds,
        rate: null,
        inflight: 64,
        prefix: `n${i}-`,
        valueBytes: 100,
      }),
    ),
  )
  const rate = results.reduce((sum, result) => sum + result.acked / result.seconds, 0)
  process.stdout.write(`acknowledged ${Math.round(rate)} writes/s over 3 nodes ${JSON.stringify(results[0])}\n`)
  const vcs = async (): Promise<string[]> =>
    (await Promise.all(rpcs.map((rpc) => rpc.call<{ vc: object }>('vc')))).map((answer) => JSON.stringify(answer.vc))
  const started = performance.now()
  await waitFor('convergence', 120_000, async () => (new Set(await vcs()).size === 1 ? true : undefined))
  process.stdout.write(`converged ${Math.round(performance.now() - started)} ms after the load\n`)
  if (process.env['SHOW_STDERR'] === '1') for (const rpc of rpcs) process.stdout.write(rpc.proc.stderr.slice(-3000))
  for (const rpc of rpcs) {
    await rpc.call('close').catch(() => undefined)
    await rpc.proc.stop('SIGTERM', 10_000)
  }
  process.stdout.write(`profiles in ${profileDir}\n`)
} finally {
  await cleanupAll()
}
