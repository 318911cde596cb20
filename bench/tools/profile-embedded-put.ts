/**
 * The embedded_put case alone (MeshNode.put, 64 in flight, no raw baseline), to run under
 * `node --cpu-prof`; see cpuprofile-top.ts.
 */
import { meshPut } from '../cases/embedded.js'
import { cleanupAll } from '../lib/procs.js'

const ops = Number(process.argv[2] ?? 100_000)
try {
  const rate = await meshPut(ops, 64, 100, false)
  process.stdout.write(`MeshNode.put, 64 in flight: ${Math.round(rate)} ops/s\n`)
} finally {
  await cleanupAll()
}
