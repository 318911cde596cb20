/**
 * Backup and restore on real processes, while the cluster keeps writing: `meshkv backup` refuses
 * a running node's directory (locked), then backs it up once stopped; the node's directory is
 * lost; `meshkv restore` fills an empty one (backed up in turn, it gives the same clock and the
 * same states byte for byte), and a node started on it (a new id) joins the other
 * two, and the lost node is forgotten. Writers on nodes 1 and 2 run throughout (before the backup,
 * during the restore, after the join). At the end every node holds every acknowledged write
 * (digests equal) and each key reads its last acknowledged value, the keys overwritten after the
 * backup included: the backup's states were joined under its clock, never written as new writes.
 */
import { existsSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { spawnMeshkv } from '../cli/helpers.js'
import { Cluster, get, kvctl, sleep, useLinkedCluster } from './helpers.js'

const KEYS_PER_WRITER = 40

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

/** Writes `name/<k>` in turn with rising values until stopped; `acked` holds each key's last acknowledged value. */
class Writer {
  readonly acked = new Map<string, string>()
  #stopped = false
  readonly #done: Promise<void>

  constructor(
    readonly name: string,
    url: string,
  ) {
    const client = new MeshClient({ nodes: url })
    this.#done = this.#run(client)
  }

  async #run(client: MeshClient): Promise<void> {
    for (let seq = 0; !this.#stopped; seq++) {
      const key = `${this.name}/${seq % KEYS_PER_WRITER}`
      const value = `${this.name}-${seq}`
      // A write that failed may still land: it is written again until acknowledged, so the last
      // value sent to a key is always its last acknowledged one.
      for (;;) {
        try {
          await client.put(key, value, { w: 2 })
          break
        } catch {
          await sleep(100)
        }
      }
      this.acked.set(key, value)
      await sleep(5)
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await this.#done
  }
}

async function meshkv(args: string[]): Promise<{ code: number | null; out: string; stderr: string }> {
  const exited = await spawnMeshkv(args).exited
  return { code: exited.code, out: exited.stdout.toString('utf8'), stderr: exited.stderr }
}

describe('meshkv backup and restore', () => {
  it('a restored node joins a cluster that keeps writing, and loses nothing the cluster wrote after the backup', async () => {
    // Keys written once before the backup, then once after it (p/ again, d/ deleted), and never
    // again: were the restore to write the backup's states as new writes, their old values would win.
    const client = new MeshClient({ nodes: cluster.urls(1)[0] as string })
    for (let i = 0; i < 10; i++) await client.put(`p/${i}`, 'before the backup', { w: 'all' })
    for (let i = 0; i < 5; i++) await client.put(`d/${i}`, 'before the backup', { w: 'all' })
    const writers = [new Writer('a', cluster.urls(1)[0] as string), new Writer('b', cluster.urls(2)[0] as string)]
    await sleep(1000)
    const old = cluster.node(3)
    const oldId = (await old.status()).nodeId
    const file = join(cluster.root, 'node3.backup')

    const locked = await meshkv(['backup', '--dir', old.dir, '--out', file])
    expect(locked.code).toBe(1)
    expect(locked.stderr).toContain('MESHKV_ERR_LOCKED')
    expect(existsSync(file)).toBe(false)

    await old.kill('SIGTERM')
    const backup = await meshkv(['backup', '--dir', old.dir, '--out', file])
    expect(backup.stderr).toBe('')
    expect(backup.code).toBe(0)
    const backedUp = backupValues(await readFile(file, 'utf8'))
    expect(backedUp.get('p/0')).toBe('before the backup')
    for (let i = 0; i < 10; i++) await client.put(`p/${i}`, 'after the backup', { w: 2 })
    for (let i = 0; i < 5; i++) expect(await client.del(`d/${i}`, { w: 2 })).toBe(true)
    await sleep(1000)
    // The node's disk is lost; its backup goes into an empty directory, while the writers go on.
    await rm(old.dir, { recursive: true, force: true })
    const dir = join(cluster.root, 'node4')
    const restored = await meshkv(['restore', '--dir', dir, file])
    expect(restored.stderr).toBe('')
    expect(restored.code).toBe(0)
    expect(restored.out).toContain(`from a backup of node ${oldId}`)
    // The directory holds the backup: backed up in turn, it gives the same clock and states.
    const again = join(cluster.root, 'node4.backup')
    expect((await meshkv(['backup', '--dir', dir, '--out', again])).code).toBe(0)
    const [original, roundTrip] = [await readFile(file, 'utf8'), await readFile(again, 'utf8')].map(parts)
    expect(roundTrip?.header['vc']).toEqual(original?.header['vc'])
    expect(roundTrip?.header['node']).not.toBe(oldId)
    expect(roundTrip?.entries).toEqual(original?.entries)

    const fresh = await cluster.addNode({ peers: [cluster.node(1).entry.url, cluster.node(2).entry.url] })
    const freshId = (await fresh.status()).nodeId
    expect(freshId).not.toBe(oldId)
    const forgot = await kvctl(['--node', cluster.urls(1)[0] as string, 'forget', oldId, '--force'])
    expect(forgot.code, forgot.stderr).toBe(0)
    writers.push(new Writer('c', fresh.url))
    await sleep(1000)
    for (const writer of writers) await writer.stop()

    await cluster.waitConverged([1, 2, 4])
    const overwritten = [...writers[0]!.acked].filter(
      ([key, value]) => backedUp.has(key) && backedUp.get(key) !== value,
    )
    expect(overwritten.length, 'keys the cluster wrote again after the backup').toBeGreaterThan(0)
    for (const url of cluster.urls(1, 2, 4)) {
      for (let i = 0; i < 10; i++) expect((await get(url, `p/${i}`)).text).toBe('after the backup')
      for (let i = 0; i < 5; i++) expect((await get(url, `d/${i}`)).status, `d/${i} stays deleted`).toBe(404)
    }
    for (const url of cluster.urls(1, 2, 4))
      for (const writer of writers)
        for (const [key, value] of writer.acked) {
          const answer = await get(url, key)
          expect({ url, key, value: answer.text }).toEqual({ url, key, value })
        }
  }, 180_000)
})

/** A backup file's header and entry lines. */
function parts(text: string): { header: Record<string, unknown>; entries: string[] } {
  const lines = text.trimEnd().split('\n')
  return { header: JSON.parse(lines[0] as string) as Record<string, unknown>, entries: lines.slice(1, -1) }
}

/** The live kv values of a backup file, by key. */
function backupValues(text: string): Map<string, string> {
  const values = new Map<string, string>()
  for (const line of text.trimEnd().split('\n')) {
    const entry = JSON.parse(line) as { space?: string; key?: string; value?: string | null }
    if (entry.space === 'kv' && typeof entry.key === 'string' && typeof entry.value === 'string')
      values.set(entry.key, Buffer.from(entry.value, 'base64').toString('utf8'))
  }
  return values
}
