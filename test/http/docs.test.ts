/**
 * `/v1/docs/:name` on one real node (fastify inject): Yjs updates in and out, the `?sv=` diff,
 * `?format=json`, deletes, limits, causal tokens, write concern and the watch stream's `doc` events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { formatEvent } from '../../src/http/watch.js'
import type { WatchEvent } from '../../src/node/index.js'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
})

afterAll(async () => {
  await h.close()
})

function post(name: string, update: Uint8Array, query = '') {
  return h.app.inject({
    method: 'POST',
    url: `/v1/docs/${name}${query}`,
    payload: Buffer.from(update),
    headers: { 'content-type': 'application/octet-stream' },
  })
}

/** A Y.Doc that records its updates, as a client editor would send them. */
function editor(client: number): { doc: Y.Doc; updates: Uint8Array[] } {
  const doc = new Y.Doc()
  doc.clientID = client
  const updates: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => updates.push(update))
  return { doc, updates }
}

describe('/v1/docs/:name', () => {
  it('applies updates and answers the state as a Yjs update and as JSON', async () => {
    const { doc, updates } = editor(1)
    doc.getText('body').insert(0, 'hello')
    doc.getMap('meta').set('title', 'Greeting')
    for (const update of updates) expect((await post('notes', update)).statusCode).toBe(200)

    const state = await h.app.inject({ url: '/v1/docs/notes' })
    expect(state.statusCode).toBe(200)
    expect(state.headers['content-type']).toBe('application/octet-stream')
    const copy = new Y.Doc()
    Y.applyUpdate(copy, state.rawPayload)
    expect(copy.getText('body').toString()).toBe('hello')

    const json = await h.app.inject({ url: '/v1/docs/notes?format=json' })
    expect(json.json()).toEqual({ body: 'hello', meta: { title: 'Greeting' } })
  })

  it('answers only what a state vector lacks with ?sv=', async () => {
    const { doc, updates } = editor(2)
    doc.getText('body').insert(0, 'one')
    await post('diffed', updates[0] as Uint8Array)
    const first = await h.app.inject({ url: '/v1/docs/diffed' })
    const sv = first.headers['x-state-vector'] as string
    const local = new Y.Doc()
    Y.applyUpdate(local, first.rawPayload)
    expect(Buffer.from(Y.encodeStateVector(local)).toString('base64')).toBe(sv)

    doc.getText('body').insert(3, ' two')
    await post('diffed', updates[1] as Uint8Array)
    const diff = await h.app.inject({ url: `/v1/docs/diffed?sv=${encodeURIComponent(sv)}` })
    expect(diff.statusCode).toBe(200)
    expect(diff.rawPayload.length).toBeLessThan((await h.app.inject({ url: '/v1/docs/diffed' })).rawPayload.length)
    Y.applyUpdate(local, diff.rawPayload)
    expect(local.getText('body').toString()).toBe('one two')
  })

  it('answers a token with each write; a read after it sees the write', async () => {
    const { doc, updates } = editor(3)
    doc.getText('body').insert(0, 'x')
    const written = await post('tokened', updates[0] as Uint8Array, '?w=1')
    expect(written.json()).toEqual({ name: 'tokened', changed: true, token: expect.stringMatching(/^c1\./) })
    expect(written.headers['x-causal-token']).toBe(written.json().token)
    const again = await post('tokened', updates[0] as Uint8Array)
    expect(again.json().changed).toBe(false)
    const read = await h.app.inject({ url: `/v1/docs/tokened?format=json&after=${written.json().token}` })
    expect(read.json()).toEqual({ body: 'x' })
  })

  it('deletes a document; a concurrent editor is then re-creating it', async () => {
    const { doc, updates } = editor(4)
    doc.getText('body').insert(0, 'gone soon')
    await post('doomed', updates[0] as Uint8Array)
    const deleted = await h.app.inject({ method: 'DELETE', url: '/v1/docs/doomed' })
    expect(deleted.json()).toMatchObject({ name: 'doomed', changed: true })
    expectProblem(await h.app.inject({ url: '/v1/docs/doomed' }), 'MESHKV_ERR_NOT_FOUND')
    expectProblem(await h.app.inject({ url: '/v1/docs/doomed?format=json' }), 'MESHKV_ERR_NOT_FOUND')
    expect((await h.app.inject({ method: 'DELETE', url: '/v1/docs/doomed' })).json().changed).toBe(false)

    // An editor that never saw the delete writes on: its new text is there, the deleted text is not.
    doc.getText('body').insert(0, 'back: ')
    await post('doomed', updates[1] as Uint8Array)
    expect((await h.app.inject({ url: '/v1/docs/doomed?format=json' })).json()).toEqual({ body: 'back: ' })
  })

  it('renders kinds named by ?types=', async () => {
    const { doc, updates } = editor(5)
    doc.getArray('list').push([1, 2])
    await post('typed', updates[0] as Uint8Array)
    const json = await h.app.inject({ url: '/v1/docs/typed?format=json&types=list:array,body:text' })
    expect(json.json()).toEqual({ list: [1, 2], body: '' })
    expectProblem(
      await h.app.inject({ url: '/v1/docs/typed?format=json&types=list:blob' }),
      'MESHKV_ERR_INVALID_ARGUMENT',
    )
  })

  it('refuses what is not a Yjs update, an empty body, an update past its limit, a bad sv', async () => {
    expectProblem(await post('bad', Uint8Array.of(9, 9, 9)), 'MESHKV_ERR_DECODE')
    expectProblem(await h.app.inject({ method: 'POST', url: '/v1/docs/bad' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    const big = editor(6)
    big.doc.getText('body').insert(0, 'x'.repeat(1024 * 1024))
    expectProblem(await post('bad', big.updates[0] as Uint8Array), 'MESHKV_ERR_VALUE_TOO_LARGE')
    expectProblem(await h.app.inject({ url: '/v1/docs/bad?sv=!!' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await h.app.inject({ url: '/v1/docs/bad?format=json&sv=AA' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await post('x', Uint8Array.of(0, 0), '?w=3'), 'MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('emits a doc event carrying the update on the watch stream and as a change event', async () => {
    const seen: Uint8Array[] = []
    const listener = (event: { type: string; name?: string; update?: Uint8Array }): void => {
      if (event.type === 'doc' && event.name === 'watched') seen.push(event.update as Uint8Array)
    }
    h.node.on('change', listener)
    const since = h.node.status().lsn
    const { doc, updates } = editor(8)
    doc.getText('body').insert(0, 'hi')
    await post('watched', updates[0] as Uint8Array)
    h.node.off('change', listener)
    expect(seen.map((update) => Buffer.from(update))).toEqual([Buffer.from(updates[0] as Uint8Array)])
    // The same event as the watch stream writes it: the update in base64.
    const events = h.node.watch({ prefix: 'watched', since: String(since) })
    const first = (await events.next()).value as WatchEvent
    await events.return(undefined)
    const block = formatEvent(first)
    expect(block).toMatch(/^id: .+\nevent: doc\ndata: /)
    const data = JSON.parse(block.split('\ndata: ')[1] as string) as Record<string, unknown>
    expect(data).toMatchObject({ type: 'doc', name: 'watched', origin: 'local' })
    expect(Buffer.from(data['update'] as string, 'base64')).toEqual(Buffer.from(updates[0] as Uint8Array))
  })
})
