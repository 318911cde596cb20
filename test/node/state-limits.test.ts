/**
 * Per-key limits (docs/consistency.md, "Per-key limits"): a write that would push a register past
 * REGISTER_SIBLINGS_MAX siblings or REGISTER_BYTES_MAX bytes, or a set past SET_MEMBERS_MAX members
 * or SET_BYTES_MAX bytes, is refused with MESHKV_ERR_STATE_TOO_LARGE before it is committed
 * (nothing written, the clock unmoved), and the node keeps serving. A write that does not grow a
 * key already past a limit (a merge put it there) is let through: it is how the key comes back.
 * Real LevelDB.
 */
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { vcDistance } from '../../src/clock/index.js'
import { REGISTER_BYTES_MAX, REGISTER_SIBLINGS_MAX, SET_BYTES_MAX, SET_MEMBERS_MAX } from '../../src/crdt/index.js'
import { MeshNode } from '../../src/node/index.js'
import { MemoryBackend, Store } from '../../src/storage/index.js'
import { meshCodeOf } from '../helpers/async.js'
import { nodeFixture } from './fixture.js'

const fixture = nodeFixture('state-limits')
const open = fixture.open

/**
 * Makes `key` hold `count` siblings of `bytes` bytes the way the issue saw it: each write replaces
 * only the first version (its context), so from the second on each one adds a sibling. Returns
 * that first version, which a later write can name to add one more.
 */
async function siblings(node: MeshNode, key: string, count: number, bytes: number): Promise<string> {
  const first = await node.put(key, new Uint8Array(bytes))
  for (let index = 0; index < count; index++)
    await node.put(key, new Uint8Array(bytes).fill(index), { context: first.version })
  return first.version
}

describe('register limits', () => {
  it(`refuses sibling ${REGISTER_SIBLINGS_MAX + 1} with nothing written; a put that replaces them all is taken`, async () => {
    const node = await open()
    const first = await siblings(node, 'k', REGISTER_SIBLINGS_MAX, 10)
    expect((await node.get('k'))?.siblingCount).toBe(REGISTER_SIBLINGS_MAX)
    const vc = node.vc
    expect(await meshCodeOf(node.put('k', 'one more', { context: first }))).toBe('MESHKV_ERR_STATE_TOO_LARGE')
    expect(node.vc).toEqual(vc)
    expect((await node.get('k'))?.siblingCount).toBe(REGISTER_SIBLINGS_MAX)
    // Other keys, and a blind put of this one (it replaces every sibling the node holds), go on.
    await node.put('other', 'fine')
    await node.put('k', 'all replaced')
    expect((await node.get('k'))?.siblingCount).toBe(1)
  })

  it(`refuses a put that takes the register past ${REGISTER_BYTES_MAX} bytes (the 409 a client sees)`, async () => {
    const node = await open()
    const mb = 1_000_000
    // Eight 1 MB siblings are about 8 MB: under 8 MiB. The ninth would pass it.
    const first = await siblings(node, 'big', 8, mb)
    const refused = await node.put('big', new Uint8Array(mb), { context: first }).catch((error: unknown) => error)
    expect(refused).toMatchObject({ code: 'MESHKV_ERR_STATE_TOO_LARGE', status: 409, details: { limit: 'bytes' } })
    expect((await node.get('big'))?.siblingCount).toBe(8)
  })
})

describe('set limits', () => {
  it(`refuses member ${SET_MEMBERS_MAX + 1}; adding a member already there, and removing, still work`, async () => {
    const node = await open()
    const set = node.set('s')
    const names = Array.from({ length: SET_MEMBERS_MAX }, (_, index) => `m${index}`)
    for (let from = 0; from < names.length; from += 1000) await set.add(...names.slice(from, from + 1000))
    expect(await meshCodeOf(set.add('one-more'))).toBe('MESHKV_ERR_STATE_TOO_LARGE')
    expect(await set.has('one-more')).toBe(false)
    await set.add('m0')
    await set.remove('m1')
    await set.add('one-more')
    expect((await set.members()).length).toBe(SET_MEMBERS_MAX)
  })

  it(`refuses an add that takes the set past ${SET_BYTES_MAX} bytes`, async () => {
    const node = await open({ keyBytesMax: 64 * 1024 })
    const set = node.set('wide')
    const member = (index: number) => `${index}`.padStart(64 * 1024 - 16, '.')
    // 32 members of about 64 KiB per change (2 MiB, under the 3.5 MiB a change may be). Each add
    // is checked against the set as it was before its change: the fourth change takes it to 128
    // members (8.4 MB, past 8 MiB by less than one change), the fifth is refused.
    let added = 0
    let code: string | undefined
    while (code === undefined && added < 320) {
      const batch = Array.from({ length: 32 }, (_, index) => member(added + index))
      code = await set.add(...batch).then(
        () => undefined,
        (error: { code?: string }) => error.code ?? 'not a MeshError',
      )
      if (code === undefined) added += 32
    }
    expect(code).toBe('MESHKV_ERR_STATE_TOO_LARGE')
    expect(added).toBe(128)
    expect((await set.members()).length).toBe(128)
  })
})

describe('a state past the limits by merge', () => {
  it('a node that holds such a key keeps serving it, and a write that shrinks it is taken', async () => {
    const store = await Store.open({
      backend: new MemoryBackend(),
      now: Date.now,
      randomBytes: (n) => new Uint8Array(n),
    })
    const other = 'ff000000000000aa' as NodeId
    // A peer's changes are never refused for size: 40 concurrent siblings, past the sibling limit.
    for (let seq = 1; seq <= REGISTER_SIBLINGS_MAX + 8; seq++) {
      await store.applyRemote({
        dot: { node: other, seq },
        deps: seq === 1 ? {} : { [other]: seq - 1 },
        hlc: { wallMs: Date.now(), logical: seq },
        ops: [{ type: 'kv.put', key: 'k', value: new Uint8Array(4), contentType: 't', context: [] }],
      })
    }
    expect(vcDistance(store.vc, {})).toBe(REGISTER_SIBLINGS_MAX + 8)
    expect((await store.getState('kv', 'k')).siblings.length).toBe(REGISTER_SIBLINGS_MAX + 8)
    // Replacing all of them is the way back under; adding one more is refused.
    expect(
      await meshCodeOf(
        store.commitLocal([{ type: 'kv.put', key: 'k', value: new Uint8Array(1), contentType: 't', context: [] }]),
      ),
    ).toBe('MESHKV_ERR_STATE_TOO_LARGE')
    await store.commitLocal([{ type: 'kv.put', key: 'k', value: new Uint8Array(1), contentType: 't' }])
    expect((await store.getState('kv', 'k')).siblings.length).toBe(1)
    await store.close()
  })
})
