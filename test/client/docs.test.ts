/**
 * The client's document calls against a real node over HTTP: an update posted and read back as
 * bytes, the diff a state vector lacks, JSON with and without kinds, a missing document, a delete,
 * the session token of a write, and failover: a post (idempotent, the Yjs merge) is retried on the
 * next node after a silent one, a delete is not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { MeshClient } from '../../src/client/index.js'
import type { MeshError } from '../../src/errors.js'
import { meshCodeOf, rejectionOf } from '../helpers/async.js'
import type { LiveNode } from './helpers.js'
import { silentServer, startNode } from './helpers.js'
import { docEdit } from '../helpers/ydoc.js'

let live: LiveNode

beforeAll(async () => {
  live = await startNode()
})

afterAll(async () => {
  await live?.close()
})

describe('MeshClient documents', () => {
  it('posts updates and reads the state, the diff for a state vector, and JSON', async () => {
    const client = new MeshClient({ nodes: live.url })
    expect(await client.getDoc('notes/ü 1')).toBeUndefined()
    expect(await client.getDocJson('notes/ü 1')).toBeUndefined()
    const first = await client.applyDocUpdate('notes/ü 1', docEdit(1, 'hello', 'greeting'))
    expect(first).toMatchObject({ name: 'notes/ü 1', changed: true })
    expect(client.token).toBe(first.token)
    expect((await client.applyDocUpdate('notes/ü 1', docEdit(1, 'hello', 'greeting'))).changed).toBe(false)

    const local = new Y.Doc()
    Y.applyUpdate(local, (await client.getDoc('notes/ü 1')) as Uint8Array)
    expect(local.getText('body').toString()).toBe('hello')
    await live.node.applyDocUpdate('notes/ü 1', docEdit(2, 'world '))
    const diff = (await client.getDoc('notes/ü 1', { sv: Y.encodeStateVector(local) })) as Uint8Array
    expect(diff.length).toBeLessThan(((await client.getDoc('notes/ü 1')) as Uint8Array).length)
    Y.applyUpdate(local, diff)
    expect(local.getText('body').toString()).toHaveLength(11)

    expect(await client.getDocJson('notes/ü 1')).toEqual({
      body: local.getText('body').toString(),
      meta: { title: 'greeting' },
    })
    expect(await client.getDocJson('notes/ü 1', { types: { body: 'text', extra: 'array' } })).toEqual({
      body: local.getText('body').toString(),
      meta: { title: 'greeting' },
      extra: [],
    })
  })

  it('deletes a document, and refuses bad input', async () => {
    const client = new MeshClient({ nodes: live.url })
    await client.applyDocUpdate('gone', docEdit(3, 'soon gone'))
    expect((await client.deleteDoc('gone')).changed).toBe(true)
    expect(await client.getDoc('gone')).toBeUndefined()
    expect((await client.deleteDoc('gone')).changed).toBe(false)
    expect(await meshCodeOf(client.applyDocUpdate('bad', Uint8Array.of(1, 2, 3)))).toBe('MESHKV_ERR_DECODE')
    expect(await meshCodeOf(client.applyDocUpdate('bad', new Uint8Array()))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(client.getDoc('bad', { sv: Uint8Array.of(200) }))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(client.getDoc('..'))).toBe('MESHKV_ERR_INVALID_KEY')
  })

  it('retries a post on the next node after a silent one, but not a delete', async () => {
    const silent = await silentServer()
    try {
      const client = new MeshClient({ nodes: [silent.url, live.url], timeoutMs: 300 })
      expect((await client.applyDocUpdate('retried', docEdit(4, 'once'))).changed).toBe(true)
      expect(silent.requests()).toBe(1)
      expect((await live.node.docJson('retried'))?.['body']).toBe('once')

      const deleter = new MeshClient({ nodes: [silent.url, live.url], timeoutMs: 300 })
      const error = await rejectionOf(deleter.deleteDoc('retried'))
      expect((error as MeshError).code).toBe('MESHKV_ERR_UNREACHABLE')
      expect((await live.node.docState('retried')).exists).toBe(true)
    } finally {
      await silent.close()
    }
  })
})
