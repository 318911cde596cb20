/**
 * The store conformance suite over LevelDB (a fresh directory per test, removed after) and over
 * memory (reopen = the same instance: a disk that survives), plus what only LevelDB can show.
 */
import { describe, expect, it } from 'vitest'
import { LevelBackend, MemoryBackend, Store } from '../../src/storage/index.js'
import { meshCodeOf, tempDir } from '../helpers/async.js'
import { storeConformance } from './conformance.js'

storeConformance('LevelBackend', async () => {
  const { dir, remove } = await tempDir('store')
  return { backend: new LevelBackend(dir), reopen: () => new LevelBackend(dir), cleanup: remove }
})

storeConformance('MemoryBackend', async () => {
  const backend = new MemoryBackend()
  return { backend, reopen: () => backend, cleanup: async () => {} }
})

describe('LevelBackend', () => {
  it('refuses a directory another instance holds with MESHKV_ERR_LOCKED, and opens it once released', async () => {
    const { dir, remove } = await tempDir('locked')
    try {
      const first = new LevelBackend(dir)
      await first.open()
      const second = new LevelBackend(dir)
      expect(await meshCodeOf(second.open())).toBe('MESHKV_ERR_LOCKED')
      await first.write([{ type: 'put', sub: 'kv', key: 'k', value: new Uint8Array([7]) }], { sync: true })
      await first.close()
      const third = new LevelBackend(dir)
      await third.open()
      expect(Buffer.from((await third.get('kv', 'k')) ?? []).equals(Buffer.from([7]))).toBe(true)
      await third.close()
    } finally {
      await remove()
    }
  })

  it('maps calls on a closed database to MESHKV_ERR_CLOSED', async () => {
    const { dir, remove } = await tempDir('closed')
    try {
      const backend = new LevelBackend(dir)
      await backend.open()
      await backend.close()
      expect(await meshCodeOf(backend.get('kv', 'k'))).toBe('MESHKV_ERR_CLOSED')
      expect(await meshCodeOf(backend.write([{ type: 'del', sub: 'kv', key: 'k' }], { sync: false }))).toBe(
        'MESHKV_ERR_CLOSED',
      )
    } finally {
      await remove()
    }
  })

  it('keeps sublevels apart: a key in one never shows in another', async () => {
    const { dir, remove } = await tempDir('subs')
    try {
      const store = await Store.open({
        backend: new LevelBackend(dir),
        now: () => 1,
        randomBytes: () => new Uint8Array(8).fill(3),
      })
      expect(store.nodeId).toBe('0303030303030303')
      await store.commitLocal([
        { type: 'kv.put', key: 'same', value: new Uint8Array([1]), contentType: 'x' },
        { type: 'counter.add', name: 'same', delta: 2 },
        { type: 'set.add', name: 'same', member: 'm' },
      ])
      const keys: string[] = []
      for await (const [key] of store.iterateStates('kv', {})) keys.push(key)
      expect(keys).toEqual(['same'])
      await store.close()
    } finally {
      await remove()
    }
  })
})
