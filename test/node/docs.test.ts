/**
 * Documents through the embeddable API (`MeshNode`) over a real LevelDB directory: the seam a
 * sync room uses (`applyDocUpdate`, `docState` with a state vector, 'change' events), deletes,
 * a document kept across a reopen, the digest, and the per-document size limit.
 */
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { WatchEvent } from '../../src/node/index.js'
import { meshCodeOf } from '../helpers/async.js'
import { nodeFixture } from './fixture.js'
import { docEdit } from '../helpers/ydoc.js'

const fixture = nodeFixture('docs')
const open = fixture.open

describe('MeshNode documents', () => {
  it('applies updates, answers the state or the diff a state vector lacks, and emits the update', async () => {
    const node = await open()
    const events: WatchEvent[] = []
    node.on('change', (event) => events.push(event))
    const first = await node.applyDocUpdate('room', docEdit(1, 'abc'))
    expect(first.changed).toBe(true)
    const read = await node.docState('room')
    expect(read.exists).toBe(true)
    const client = new Y.Doc()
    Y.applyUpdate(client, read.update)
    expect(client.getText('body').toString()).toBe('abc')

    await node.applyDocUpdate('room', docEdit(2, 'xyz'))
    const diff = await node.docState('room', { sv: Y.encodeStateVector(client) })
    expect(diff.update.length).toBeLessThan((await node.docState('room')).update.length)
    Y.applyUpdate(client, diff.update)
    expect(client.getText('body').toString()).toHaveLength(6)
    expect(events.map((event) => event.type)).toEqual(['doc', 'doc'])
    expect(await meshCodeOf(node.docState('room', { sv: Uint8Array.of(200) }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('keeps a document across a reopen, deleted or not, and counts it in the digest', async () => {
    let node = await open()
    const before = await node.digest()
    await node.applyDocUpdate('kept', docEdit(1, 'stays'))
    await node.applyDocUpdate('dropped', docEdit(2, 'goes'))
    expect((await node.deleteDoc('dropped')).changed).toBe(true)
    const digest = await node.digest()
    expect(digest.digest).not.toBe(before.digest)
    await node.close()
    node = await open()
    expect(await node.docJson('kept')).toEqual({ body: 'stays' })
    expect(await node.docJson('dropped')).toBeUndefined()
    expect((await node.docState('dropped')).exists).toBe(false)
    expect((await node.digest()).digest).toBe(digest.digest)
  })

  it('refuses an update that would take a document past 8 MiB', async () => {
    const node = await open()
    for (let client = 1; client <= 8; client++) await node.applyDocUpdate('big', docEdit(client, 'x'.repeat(1_000_000)))
    expect(await meshCodeOf(node.applyDocUpdate('big', docEdit(9, 'y'.repeat(800_000))))).toBe(
      'MESHKV_ERR_STATE_TOO_LARGE',
    )
    // Deleting is never refused: it is how a document is brought back under the limit.
    expect((await node.deleteDoc('big')).changed).toBe(true)
    expect(await meshCodeOf(node.applyDocUpdate('', docEdit(1, 'x')))).toBe('MESHKV_ERR_INVALID_KEY')
  })
})
