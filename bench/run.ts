/**
 * Benchmarks are programs, not tests: `npm run bench`. Each case is reported as a ratio against a
 * baseline measured in the same run on the same machine (raw LevelDB), so the ratio holds on a
 * noisy machine. Prints a table and writes bench/results/<date>.json.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { MeshNode } from '../src/node.js'

const COUNT = Number(process.env.MESHKV_BENCH_COUNT ?? 20_000)
const CONCURRENCY = Number(process.env.MESHKV_BENCH_CONCURRENCY ?? 64)
const VALUE = Buffer.alloc(100, 7)

interface Result {
  name: string
  opsPerSecond: number
  baseline: string
  ratio: number
}

async function timed(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0
  const started = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await op(next++)
    }),
  )
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  return count / seconds
}

async function withDir<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'meshkv-bench-'))
  try {
    return await run(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function rawLevelPut(concurrency: number): Promise<number> {
  return withDir(async (dir) => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    await db.open()
    const rate = await timed(COUNT, concurrency, (i) => db.put(`key-${i}`, VALUE))
    await db.close()
    return rate
  })
}

async function meshPut(concurrency: number): Promise<number> {
  return withDir(async (dir) => {
    const node = await MeshNode.open({ dir })
    const rate = await timed(COUNT, concurrency, (i) => node.put(`key-${i}`, VALUE))
    await node.close()
    return rate
  })
}

async function rawLevelGet(): Promise<number> {
  return withDir(async (dir) => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    await db.open()
    await db.batch(Array.from({ length: COUNT }, (_, i) => ({ type: 'put' as const, key: `key-${i}`, value: VALUE })))
    const rate = await timed(COUNT, CONCURRENCY, (i) => db.get(`key-${i}`))
    await db.close()
    return rate
  })
}

async function meshGet(): Promise<number> {
  return withDir(async (dir) => {
    const node = await MeshNode.open({ dir })
    await Promise.all(Array.from({ length: COUNT }, (_, i) => node.put(`key-${i}`, VALUE)))
    const rate = await timed(COUNT, CONCURRENCY, (i) => node.get(`key-${i}`))
    await node.close()
    return rate
  })
}

async function main(): Promise<void> {
  const results: Result[] = []
  const add = (name: string, opsPerSecond: number, baseline: string, baselineOps: number): void => {
    results.push({ name, opsPerSecond, baseline, ratio: opsPerSecond / baselineOps })
  }
  const levelSerial = await rawLevelPut(1)
  add('raw level put, 1 in flight', levelSerial, 'itself', levelSerial)
  add('meshkv put, 1 in flight', await meshPut(1), 'raw level put, 1 in flight', levelSerial)
  const levelConcurrent = await rawLevelPut(CONCURRENCY)
  add(`raw level put, ${CONCURRENCY} in flight`, levelConcurrent, 'itself', levelConcurrent)
  add(`meshkv put, ${CONCURRENCY} in flight (group commit)`, await meshPut(CONCURRENCY), `raw level put, ${CONCURRENCY} in flight`, levelConcurrent)
  const levelGet = await rawLevelGet()
  add('raw level get', levelGet, 'itself', levelGet)
  add('meshkv get', await meshGet(), 'raw level get', levelGet)

  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), node: process.version }
  console.log(`meshkv bench: ${COUNT} ops of 100-byte values; ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}`)
  console.log('command: npm run bench')
  console.log(`${'case'.padEnd(48)} ${'ops/s'.padStart(10)}  ratio to baseline`)
  for (const result of results) {
    console.log(`${result.name.padEnd(48)} ${Math.round(result.opsPerSecond).toString().padStart(10)}  ${result.ratio.toFixed(2)} × ${result.baseline}`)
  }
  await mkdir('bench/results', { recursive: true })
  const file = join('bench/results', `${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(file, JSON.stringify({ command: 'npm run bench', count: COUNT, machine, results }, null, 2))
  console.log(`written: ${file}`)
}

await main()
