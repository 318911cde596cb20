/**
 * A received snapshot taken in by the store alone (no network, no peers): N kv states of 100-byte
 * values, as a sender ships them, in chunks of 1000, into a brand-new LevelDB store: straight into
 * place (`receiveSnapshot`), and the staged way (`stageSnapshot` then `applyStagedSnapshot`, what
 * every node did before), each on a fresh directory; prints keys/s and where the time went,
 * beside raw LevelDB ingest of as many 100-byte records (snapshot_bootstrap's baseline).
 * Run under `node --cpu-prof` to profile the storage side of snapshot_bootstrap:
 *
 *   node --import tsx bench/tools/snapshot-intake.ts [keys]
 */
import { randomBytes } from 'node:crypto'
import type { SnapshotEntry } from '../../src/storage/index.js'
import { LevelBackend, MemoryBackend, Store, checkStates } from '../../src/storage/index.js'
import { keyOf, rawBatchIngest } from '../lib/populate.js'
import { nowMs, removeDir, tempDir } from '../lib/procs.js'

const keys = Number(process.argv[2] ?? 100_000)
const CHUNK = 1000
const options = { now: () => Date.now(), randomBytes: (size: number) => new Uint8Array(randomBytes(size)) }

async function donorEntries(): Promise<{ entries: SnapshotEntry[]; vc: Store['vc'] }> {
  const donor = await Store.open({ backend: new MemoryBackend(), ...options })
  const value = new Uint8Array(Buffer.alloc(100, 0x63))
  for (let i = 0; i < keys; i += 500) {
    const intents = []
    for (let j = i; j < Math.min(keys, i + 500); j++)
      intents.push({ type: 'kv.put' as const, key: keyOf('boot-', j), value, contentType: 'application/octet-stream' })
    await donor.commitLocal(intents)
  }
  const view = await donor.snapshot()
  const entries: SnapshotEntry[] = []
  for await (const [key, bytes] of view.iterateRaw('kv', {})) entries.push(['kv', key, bytes])
  await view.close()
  return { entries, vc: donor.vc }
}

async function take(label: string, run: (store: Store) => Promise<string>): Promise<void> {
  const dir = await tempDir('snapshot-intake')
  try {
    const store = await Store.open({ backend: new LevelBackend(dir), ...options })
    const started = nowMs()
    const detail = await run(store)
    const seconds = (nowMs() - started) / 1000
    await store.close()
    process.stdout.write(`${label}: ${Math.round(keys / seconds)} keys/s (${seconds.toFixed(3)} s) ${detail}\n`)
  } finally {
    await removeDir(dir)
  }
}

const { entries, vc } = await donorEntries()
const chunks: SnapshotEntry[][] = []
for (let at = 0; at < entries.length; at += CHUNK) chunks.push(entries.slice(at, at + CHUNK))

await take('into place', async (store) => {
  const intake = await store.receiveSnapshot(vc)
  // As the receiver does: a chunk is checked while the one before it is written.
  let writing: Promise<void> = Promise.resolve()
  for (const chunk of chunks) {
    const checked = checkStates(chunk)
    await writing
    writing = intake.write(checked)
  }
  await writing
  await intake.finish()
  return `into ${intake.into}, stages_ms ${JSON.stringify(intake.stages, (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}`
})

await take('staged, then joined', async (store) => {
  for (const chunk of chunks) await store.stageSnapshot(chunk)
  await store.applyStagedSnapshot(vc)
  return ''
})

const rawDir = await tempDir('snapshot-intake-raw')
try {
  process.stdout.write(
    `raw LevelDB ingest, batches of 512: ${Math.round(await rawBatchIngest(rawDir, keys, 100))} keys/s\n`,
  )
} finally {
  await removeDir(rawDir)
}
