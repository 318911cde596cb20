/**
 * The durability model the simulator's crashes rely on (MemoryBackend / MemoryDisk): kill -9 keeps
 * the page cache, a power loss keeps only what was synced, a batch is all or nothing, a crashed
 * process's calls never land; and the store syncs every batch holding a change of its own.
 */
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { MemoryBackend, Store } from '../../src/storage/index.js'
import type { BackendWrite } from '../../src/storage/index.js'
import { meshCodeOf } from '../helpers/async.js'

const put = (key: string, text: string): BackendWrite => ({
  type: 'put',
  sub: 'kv',
  key,
  value: new Uint8Array(Buffer.from(text)),
})

async function keys(backend: MemoryBackend): Promise<string[]> {
  const out: string[] = []
  for await (const [key] of backend.iterate('kv', {})) out.push(key)
  return out
}

describe('MemoryBackend durability model', () => {
  it('kill -9 keeps every batch written; a power loss keeps batches up to the last synced one', async () => {
    for (const kind of ['process', 'power'] as const) {
      const backend = new MemoryBackend()
      await backend.open()
      await backend.write([put('a', '1')], { sync: false })
      await backend.write([put('b', '1'), put('c', '1')], { sync: true })
      await backend.write([put('d', '1'), put('e', '1')], { sync: false })
      const next = backend.crash(kind)
      await next.open()
      expect(await keys(next), kind).toEqual(kind === 'process' ? ['a', 'b', 'c', 'd', 'e'] : ['a', 'b', 'c'])
      await next.close()
    }
  })

  it("a crashed instance's calls fail, and a write still on its way when it crashed never lands", async () => {
    const backend = new MemoryBackend()
    await backend.open()
    let land: () => void = () => {}
    backend.disk.latency = () => new Promise<void>((resolve) => (land = resolve))
    const writing = backend.write([put('late', '1')], { sync: true })
    const next = backend.crash('process')
    land()
    expect(await meshCodeOf(writing)).toBe('MESHKV_ERR_CLOSED')
    expect(await meshCodeOf(backend.get('kv', 'late'))).toBe('MESHKV_ERR_CLOSED')
    expect(await meshCodeOf(() => backend.open())).toBe('MESHKV_ERR_CLOSED')
    next.disk.latency = null
    await next.open()
    expect(await keys(next)).toEqual([])
    // One process at a time: the disk is locked while open.
    expect(await meshCodeOf(() => new MemoryBackend(next.disk).open())).toBe('MESHKV_ERR_LOCKED')
  })

  it('a store that does not fsync each batch still syncs its own changes: a power loss never takes back a dot it gave out', async () => {
    const backend = new MemoryBackend()
    const now = (): number => 1_700_000_000_000
    const store = await Store.open({ backend, now, randomBytes: () => new Uint8Array(8).fill(1), sync: false })
    const other = '0202020202020202' as NodeId
    await store.applyRemote({
      dot: { node: other, seq: 1 },
      deps: {},
      hlc: { wallMs: 1, logical: 0 },
      ops: [{ type: 'counter.add', name: 'c', delta: 1 }],
    })
    const { change } = await store.commitLocal([{ type: 'counter.add', name: 'c', delta: 2 }])
    await store.applyRemote({
      dot: { node: other, seq: 2 },
      deps: { [other]: 1 },
      hlc: { wallMs: 2, logical: 0 },
      ops: [{ type: 'counter.add', name: 'c', delta: 4 }],
    })
    expect(backend.disk.syncs).toBeGreaterThan(0)
    const after = await Store.open({
      backend: backend.crash('power'),
      now,
      randomBytes: () => new Uint8Array(8).fill(9),
      sync: false,
    })
    // Its own change and what came before it survive; the peer's later change (unsynced) is lost
    // and will come back from the peer.
    expect(after.vc).toEqual({ [store.nodeId]: change?.dot.seq, [other]: 1 })
    expect(after.nodeId).toBe(store.nodeId)
    await after.close()
  })
})
