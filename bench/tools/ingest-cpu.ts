/**
 * The receiving side of catch-up alone, in this process: one store makes N changes (one key each,
 * 100-byte values), its log is read into `changes` frames as a sender would ship them, and a
 * fresh store takes the frames through the inbound pipeline (decode, causal buffer, group commit).
 * Frames go through a pair of link codecs of the current protocol, as on a real link: positional,
 * with each change's `deps` (the source first took one change of another origin) cut and restored.
 * Prints the sender's CPU time per change (reading the log into frames, as a session does), the
 * receiver's rate, and its CPU time per change on the main thread and in the whole process (the
 * rest is LevelDB's threads), read from /proc: CPU time holds on a busy machine where the rate
 * does not.
 *
 *   node --import tsx bench/tools/ingest-cpu.ts [changes=100000] [runs=3] [profile.cpuprofile]
 *
 * With a third argument, the last run's ingest alone (not the source's making) is profiled
 * into that file (bench/tools/cpuprofile-top.ts reads it).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { LinkCodec } from '../../src/codec/link-codec.js'
import { PROTOCOL_VERSION } from '../../src/codec/peer.js'
import type { NodeId } from '../../src/clock/index.js'
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
  const codec = new LinkCodec(PROTOCOL_VERSION)
  for (let after = 0; after < store.lsn;) {
    const entries = await store.readLog(after, 512)
    frames.push(codec.encode({ type: 'changes', changes: entries.map((entry) => entry.change) }))
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
  const codec = new LinkCodec(PROTOCOL_VERSION)
  for (const frame of frames) {
    // At most about four frames ahead of what the store applied: a socket's worth.
    while (received - target.lsn > 2048) await new Promise<void>((resolve) => (wake = resolve))
    const decoded = codec.decode(frame)
    if (decoded.type !== 'changes') throw new Error('not a changes frame')
    inbound.receive(decoded.changes)
    received += decoded.changes.length
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  await inbound.settled()
  while (target.lsn < received) await new Promise<void>((resolve) => setTimeout(resolve, 1))
}

const [changes = 100_000, runs = 3] = process.argv.slice(2, 4).map(Number)
const profileFile = process.argv[4]
const root = await tempDir('ingest-cpu')
try {
  const source = await openStore(`${root}/source`)
  const value = new Uint8Array(100).fill(7)
  // Another origin's change first: every change after it names it in its deps, as in a cluster.
  const other = {
    dot: { node: '00000000000000aa' as NodeId, seq: 1 },
    deps: {},
    hlc: { wallMs: Date.now(), logical: 0 },
  }
  await source.applyRemote({
    ...other,
    ops: [{ type: 'kv.put', key: 'other', value, contentType: 'application/octet-stream', context: [] }],
  })
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
  const senderCpu0 = process.cpuUsage()
  const frames = await framesOf(source)
  const senderCpu = process.cpuUsage(senderCpu0)
  console.log(
    `sender (log read into frames): ${(((senderCpu.user + senderCpu.system) / changes) * 1).toFixed(1)} µs of process CPU per change`,
  )
  for (let run = 1; run <= runs; run++) {
    const target = await openStore(`${root}/target-${run}`)
    const profiler = run === runs && profileFile !== undefined ? new Session() : null
    if (profiler !== null) {
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.start')
    }
    const cpu0 = process.cpuUsage()
    const main0 = mainThreadSeconds()
    const t0 = performance.now()
    await ingest(frames, target)
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const main = mainThreadSeconds() - main0
    if (profiler !== null) {
      const { profile } = await profiler.post('Profiler.stop')
      writeFileSync(profileFile as string, JSON.stringify(profile))
      profiler.disconnect()
    }
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
