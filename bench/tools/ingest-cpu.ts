/**
 * The receiving side of catch-up alone, in this process: one store makes N changes (one key each,
 * 100-byte values), its log is read into `changes` frames as a sender would ship them, and a
 * fresh store takes the frames through the inbound pipeline (decode, causal buffer, group commit).
 * Prints the rate, and the CPU time per change of the main thread and of the whole process (the
 * rest is LevelDB's threads), read from /proc: CPU time holds on a busy machine where the rate
 * does not.
 *
 *   node --import tsx bench/tools/ingest-cpu.ts [changes=100000] [runs=3]
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import { vcCovers } from '../../src/clock/index.js'
import { Inbound, newCounters } from '../../src/replication/inbound.js'
import { SILENT_LOGGER } from '../../src/replication/logger.js'
import { LevelBackend, Store } from '../../src/storage/index.js'
import { removeDir, tempDir } from '../lib/procs.js'

/** CPU seconds of this process's main thread (Linux /proc; utime + stime in 1/100 s ticks). */
function mainThreadSeconds(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function openStore(dir: string): Promise<Store> {
  return Store.open({ backend: new LevelBackend(dir), now: () => Date.now(), randomBytes: (size) => randomBytes(size) })
}

/** Frames of about 512 changes each, as a session reads them from `store`'s log. */
async function framesOf(store: Store): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = []
  for (let after = 0; after < store.lsn;) {
    const entries = await store.readLog(after, 512)
    frames.push(encodeFrame({ type: 'changes', changes: entries.map((entry) => entry.change) }))
    after = (entries.at(-1) as { lsn: number }).lsn
  }
  return frames
}

async function ingest(frames: readonly Uint8Array[], target: Store): Promise<void> {
  let wake = (): void => {}
  const inbound = new Inbound({
    store: target,
    logger: SILENT_LOGGER,
    bufferChangesMax: 100_000,
    bufferBytesMax: 64 * 1024 * 1024,
    counters: newCounters(),
    forgottenAfter: () => undefined,
    onApplied: () => wake(),
    takesOwn: () => false,
  })
  let received = 0
  for (const frame of frames) {
    // At most about four frames ahead of what the store applied: a socket's worth.
    while (received - target.lsn > 2048) await new Promise<void>((resolve) => (wake = resolve))
    const decoded = decodeFrame(frame)
    if (decoded.type !== 'changes') throw new Error('not a changes frame')
    inbound.receive(decoded.changes)
    received += decoded.changes.length
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  await inbound.settled()
  while (target.lsn < received) await new Promise<void>((resolve) => setTimeout(resolve, 1))
}

const [changes = 100_000, runs = 3] = process.argv.slice(2).map(Number)
const root = await tempDir('ingest-cpu')
try {
  const source = await openStore(`${root}/source`)
  const value = new Uint8Array(100).fill(7)
  for (let i = 0; i < changes; i += 256) {
    const batch = []
    for (let j = i; j < Math.min(changes, i + 256); j++)
      batch.push(
        source.commitLocal([
          { type: 'kv.put', key: `cu-${String(j).padStart(8, '0')}`, value, contentType: 'application/octet-stream' },
        ]),
      )
    await Promise.all(batch)
  }
  const frames = await framesOf(source)
  for (let run = 1; run <= runs; run++) {
    const target = await openStore(`${root}/target-${run}`)
    const cpu0 = process.cpuUsage()
    const main0 = mainThreadSeconds()
    const t0 = performance.now()
    await ingest(frames, target)
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const main = mainThreadSeconds() - main0
    if (!vcCovers(target.vc, source.vc)) throw new Error('the target does not hold every change')
    const perChange = (seconds: number): string => `${((seconds * 1e6) / changes).toFixed(1)} µs`
    console.log(
      `run ${run}: ${changes} changes in ${ms.toFixed(0)} ms = ${Math.round((changes / ms) * 1000)}/s; ` +
        `CPU per change: main thread ${perChange(main)}, process ${perChange((cpu.user + cpu.system) / 1e6)}`,
    )
    await target.close()
  }
  await source.close()
} finally {
  await removeDir(root)
}
