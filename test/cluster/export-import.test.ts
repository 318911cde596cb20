/**
 * `kvctl export` from one real cluster and `kvctl import` into fresh ones: the target then reads
 * the same values with the same content types, counters, set members and documents as the source.
 * An import SIGKILLed midway (inside the counters, where doing a write twice would show) and run
 * again with `--resume` ends complete with every counter exactly at its exported total.
 */
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { spawnKvctl } from '../cli/helpers.js'
import { docEdit } from '../helpers/ydoc.js'
import { Cluster, buildIfStale, killAllKvctl, kvctl, stopAllClusters } from './helpers.js'

const KV_KEYS = 150
const COUNTERS = 1200
const SETS = 40
const DOCS = 5

let source: Cluster
let dir: string
let file: string

beforeAll(async () => {
  buildIfStale()
  dir = await mkdtemp(join(tmpdir(), 'meshkv-export-'))
  file = join(dir, 'export.ndjson')
  source = await Cluster.start({ size: 2 })
  await source.waitLinked()
  await seed(new MeshClient({ nodes: source.urls(1)[0] as string }))
}, 120_000)

afterAll(async () => {
  await killAllKvctl()
  await stopAllClusters()
  await rm(dir, { recursive: true, force: true })
})

/** Keys of every content type, a deleted key, counters (some negative), sets and documents. */
async function seed(client: MeshClient): Promise<void> {
  const w = { w: 'all' as const }
  const jobs: (() => Promise<unknown>)[] = []
  for (let i = 0; i < KV_KEYS; i++) {
    if (i % 3 === 0) jobs.push(() => client.put(`kv/${i}`, `text ${i} é`, w))
    else if (i % 3 === 1)
      jobs.push(() => client.put(`kv/${i}`, JSON.stringify({ i }), { contentType: 'application/json', ...w }))
    else
      jobs.push(() =>
        client.put(
          `kv/${i}`,
          Uint8Array.from({ length: 256 }, (_, b) => (b + i) % 256),
          w,
        ),
      )
  }
  for (let i = 0; i < COUNTERS; i++) jobs.push(() => client.incr(`c/${i}`, i * 7 - 300, w))
  for (let i = 0; i < SETS; i++)
    jobs.push(() =>
      client.sadd(
        `s/${i}`,
        Array.from({ length: 1 + (i % 5) }, (_, m) => `m${m}-${i}`),
        w,
      ),
    )
  for (let i = 0; i < DOCS; i++)
    jobs.push(() => client.applyDocUpdate(`d/${i}`, docEdit(10 + i, `doc ${i}`, `t${i}`), w))
  for (let at = 0; at < jobs.length; at += 50) await Promise.all(jobs.slice(at, at + 50).map((job) => job()))
  await client.put('kv/deleted', 'soon gone', w)
  await client.del('kv/deleted', w)
}

/** Everything the target must read as the source does. */
async function expectSameData(from: MeshClient, to: MeshClient): Promise<void> {
  for (let i = 0; i < KV_KEYS; i++) {
    const [a, b] = await Promise.all([from.get(`kv/${i}`), to.get(`kv/${i}`)])
    expect(b?.contentType, `content type of kv/${i}`).toBe(a?.contentType)
    expect(Buffer.from(b?.value ?? []).equals(Buffer.from(a?.value ?? [0])), `value of kv/${i}`).toBe(true)
  }
  expect(await to.get('kv/deleted')).toBeUndefined()
  for (let at = 0; at < COUNTERS; at += 100) {
    const names = Array.from({ length: 100 }, (_, k) => `c/${at + k}`)
    const [a, b] = await Promise.all([
      Promise.all(names.map((name) => from.counter(name))),
      Promise.all(names.map((name) => to.counter(name))),
    ])
    expect(b, `counters ${at}..${at + 99}`).toEqual(a)
  }
  for (let i = 0; i < SETS; i++)
    expect((await to.smembers(`s/${i}`)).sort(), `set s/${i}`).toEqual((await from.smembers(`s/${i}`)).sort())
  for (let i = 0; i < DOCS; i++) {
    const json = await from.getDocJson(`d/${i}`)
    expect(json).toEqual({ body: `doc ${i}`, meta: { title: `t${i}` } })
    expect(await to.getDocJson(`d/${i}`), `document d/${i}`).toEqual(json)
  }
}

describe('kvctl export and import', () => {
  it('an export imported into a fresh cluster reads the same there, every type', async () => {
    const exported = await kvctl(['--node', source.urls(1)[0] as string, 'export'])
    expect(exported.stderr, 'not a terminal: no progress bar').toBe('')
    expect(exported.code).toBe(0)
    await writeFile(file, exported.stdout)
    const lines = exported.out.trimEnd().split('\n')
    const header = JSON.parse(lines[0] as string) as Record<string, unknown>
    expect(header).toMatchObject({ format: 'meshkv-export', version: 1, full: true, prefix: '' })
    const trailer = JSON.parse(lines[lines.length - 1] as string) as { counts: Record<string, number> }
    expect(trailer).toMatchObject({ end: true, counts: { counter: COUNTERS, doc: DOCS } })
    // The member set rides along (reserved, for a restore); import skips it.
    expect(trailer.counts['set']).toBeGreaterThan(SETS)

    const target = await Cluster.start({ size: 2 })
    await target.waitLinked()
    const imported = await kvctl(['--node', target.urls(1)[0] as string, '--w', 'all', 'import', file])
    expect(imported.stderr).toBe('')
    expect(imported.code).toBe(0)
    expect(imported.out).toMatch(/^imported \d+ entries \(written: kv 150, counter 1200, set 40, doc 5;/)
    // w=all: every entry is on both target nodes when the import ends.
    for (const url of target.urls())
      await expectSameData(new MeshClient({ nodes: source.urls(1)[0] as string }), new MeshClient({ nodes: url }))
    // Run again: nothing more to do for counters (each already at its total); the rest is rewritten as it was.
    const again = await kvctl(['--node', target.urls(2)[0] as string, 'import', file])
    expect(again.code).toBe(0)
    await expectSameData(
      new MeshClient({ nodes: source.urls(1)[0] as string }),
      new MeshClient({ nodes: target.urls(1)[0] as string }),
    )
    await target.close()
  }, 180_000)

  it('an import SIGKILLed inside the counters and resumed ends complete, counters exact', async () => {
    expect(existsSync(file), 'the export of the first test').toBe(true)
    const target = await Cluster.start({ size: 2 })
    await target.waitLinked()
    const node = target.urls(1)[0] as string
    const progress = `${file}.import-progress`
    const running = spawnKvctl(['--node', node, '--w', 'all', 'import', file, '--parallel', '2'])
    // Past the keys, into the counters: the checkpoint names the last entry acknowledged in order.
    const done = await vi.waitFor(
      () => {
        const checkpoint = JSON.parse(readFileSync(progress, 'utf8')) as { done: number }
        expect(checkpoint.done).toBeGreaterThan(KV_KEYS + 50)
        return checkpoint.done
      },
      { timeout: 60_000, interval: 5 },
    )
    running.child.kill('SIGKILL')
    const killed = await running.exited
    expect(
      killed.signal,
      `killed before it finished (checkpoint at ${done}); stdout: ${killed.stdout.toString()}`,
    ).toBe('SIGKILL')
    const checkpoint = JSON.parse(readFileSync(progress, 'utf8')) as { done: number; token: string }
    expect(checkpoint.done).toBeGreaterThanOrEqual(done)
    expect(checkpoint.done).toBeLessThan(KV_KEYS + COUNTERS)

    const resumed = await kvctl(['--node', node, '--w', 'all', 'import', file, '--resume'])
    expect(resumed.stderr).toBe('')
    expect(resumed.code).toBe(0)
    expect(resumed.out).toContain(`resumed after entry ${checkpoint.done}`)
    expect(existsSync(progress), 'a complete import removes its checkpoint').toBe(false)
    for (const url of target.urls())
      await expectSameData(new MeshClient({ nodes: source.urls(1)[0] as string }), new MeshClient({ nodes: url }))
    await target.close()
  }, 180_000)
})
