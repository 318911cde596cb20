/**
 * Embedded Yjs documents (`node.doc(name)`, src/node/doc-sync.ts) on real nodes: two nodes on
 * their own LevelDB directories, linked over real WebSockets on loopback. Edits on each Y.Doc
 * converge on both, an HTTP-style write (`applyDocUpdate`) reaches an open Y.Doc, an applied
 * update is not written back (no echo), one Y.Doc per name until destroyed, and a local edit the
 * node refuses is an 'error' event naming the document.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { MeshError } from '../../src/errors.js'
import { MeshNode } from '../../src/node/index.js'
import type { WatchEvent } from '../../src/node/index.js'
import { meshCodeOf, tempDir } from '../helpers/async.js'
import { twoLinkedNodes } from './linked.js'
import { docEdit } from '../helpers/ydoc.js'

const SECRET = 'doc-sync-test-cluster-secret'
const cleanups: (() => Promise<void>)[] = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const twoNodes = (): Promise<[MeshNode, MeshNode]> => twoLinkedNodes('doc-sync', SECRET, cleanups)

function updateEvents(node: MeshNode): WatchEvent[] {
  const events: WatchEvent[] = []
  node.on('change', (event) => events.push(event))
  return events
}

/** The names the node's Y.Docs write through `applyDocUpdate` (the real method, counted). */
function countWrites(node: MeshNode): string[] {
  const names: string[] = []
  const apply = node.applyDocUpdate.bind(node)
  node.applyDocUpdate = (name, update, options) => {
    names.push(name)
    return apply(name, update, options)
  }
  return names
}

describe('node.doc(name)', () => {
  it('edits on two linked nodes converge on both Y.Docs, and each edit is written once', async () => {
    const [a, b] = await twoNodes()
    await a.applyDocUpdate('room', docEdit(7, 'seed. '))
    const docA = await a.doc('room')
    expect(docA.getText('body').toString()).toBe('seed. ')
    const docB = await b.doc('room')
    await vi.waitFor(() => expect(docB.getText('body').toString()).toBe('seed. '), { timeout: 10_000 })
    const eventsA = updateEvents(a)
    const eventsB = updateEvents(b)
    const [writesA, writesB] = [countWrites(a), countWrites(b)]

    docA.getText('body').insert(0, 'from a. ')
    docB.getText('body').insert(6, 'from b. ')
    docB.getMap('meta').set('title', 'b')
    await vi.waitFor(
      () => {
        expect(docA.getText('body').toString()).toBe(docB.getText('body').toString())
        expect(docA.getText('body').toString()).toHaveLength(22)
        expect(docA.getMap('meta').toJSON()).toEqual({ title: 'b' })
      },
      { timeout: 10_000 },
    )
    // Both nodes hold the same document as their Y.Docs.
    await vi.waitFor(async () => expect(await a.docJson('room')).toEqual(await b.docJson('room')), { timeout: 10_000 })
    expect((await a.docJson('room'))?.['body']).toBe(docA.getText('body').toString())
    // Three local edits, three changes on each node: an applied update is never written back.
    const origins = (events: WatchEvent[]) => events.filter((event) => event.type === 'doc').map((e) => e.origin)
    expect(origins(eventsA).sort()).toEqual(['local', 'remote', 'remote'])
    expect(origins(eventsB).sort()).toEqual(['local', 'local', 'remote'])
    // And no write of an applied update either (the node would drop it as held, so count calls).
    expect([writesA, writesB]).toEqual([['room'], ['room', 'room']])
  })

  it('applies updates written through the node API; one Y.Doc per name until destroyed', async () => {
    const [a] = await twoNodes()
    const doc = await a.doc('notes')
    expect(await a.doc('notes')).toBe(doc)
    expect(doc.getText('body').toString()).toBe('')
    await a.applyDocUpdate('notes', docEdit(9, 'posted'))
    expect(doc.getText('body').toString()).toBe('posted')
    await a.deleteDoc('notes')
    expect(doc.getText('body').toString()).toBe('')

    doc.destroy()
    const again = await a.doc('notes')
    expect(again).not.toBe(doc)
    await a.applyDocUpdate('notes', docEdit(10, 'later'))
    expect(again.getText('body').toString()).toBe('later')
    expect(doc.getText('body').toString()).toBe('')
    expect(await meshCodeOf(a.doc(''))).toBe('MESHKV_ERR_INVALID_KEY')
  })

  it('a local edit the node refuses is an error event naming the document', async () => {
    const [a] = await twoNodes()
    const errors: MeshError[] = []
    a.on('error', (error) => errors.push(error))
    const doc = await a.doc('big')
    // One update past the per-update limit (1 MiB): the node refuses it.
    doc.getText('body').insert(0, 'x'.repeat(1024 * 1024 + 1))
    await vi.waitFor(() => expect(errors).toHaveLength(1), { timeout: 10_000 })
    expect(errors[0]?.code).toBe('MESHKV_ERR_VALUE_TOO_LARGE')
    expect(errors[0]?.details?.['doc']).toBe('big')
    expect((await a.docState('big')).exists).toBe(false)
  })

  it('close destroys the Y.Docs after writing their last edits; a closed node opens none', async () => {
    const { dir, remove } = await tempDir('doc-sync')
    cleanups.push(remove)
    const node = await MeshNode.open({ dir })
    const doc = await node.doc('last')
    let destroyed = false
    doc.on('destroy', () => (destroyed = true))
    doc.getText('body').insert(0, 'kept')
    await node.close()
    expect(destroyed).toBe(true)
    expect(await meshCodeOf(node.doc('last'))).toBe('MESHKV_ERR_CLOSED')
    const reopened = await MeshNode.open({ dir })
    cleanups.push(() => reopened.close())
    expect((await reopened.doc('last')).getText('body').toString()).toBe('kept')
  })
})
