/**
 * A Yjs document across three real meshkv processes: node 2 is cut off, nodes 1 and 2 each take
 * an update the other never saw (text at the same place, the same map key), the link heals, and
 * every node, node 3 included, answers the same `?format=json`: the one a Y.Doc given both
 * updates shows. A write with `?w=all` is then on every node when it is answered.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { Cluster, request, useLinkedCluster } from './helpers.js'
import { docEdit } from '../helpers/ydoc.js'

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

afterEach(() => {
  cluster.heal()
})

function post(node: string, name: string, update: Uint8Array, query = '') {
  return request(`${node}/v1/docs/${name}${query}`, {
    method: 'POST',
    body: update,
    headers: { 'content-type': 'application/octet-stream' },
  })
}

describe('documents across three processes', () => {
  it('concurrent updates on two nodes give the same document on all three', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    cluster.isolate(2)
    await vi.waitFor(
      async () => expect((await cluster.node(2).status()).linked.length, 'node 2 to see its links drop').toBe(0),
      { timeout: 10_000, interval: 100 },
    )
    const one = docEdit(1, 'from one. ', 'one')
    const two = docEdit(2, 'from two. ', 'two')
    expect((await post(n1, 'shared', one)).status).toBe(200)
    expect((await post(n2, 'shared', two)).status).toBe(200)
    // Node 3 hears node 1 only while node 2 is cut off.
    await vi.waitFor(
      async () =>
        expect((await request(`${n3}/v1/docs/shared?format=json`, {})).json?.['meta']).toEqual({ title: 'one' }),
      { timeout: 10_000, interval: 100 },
    )

    cluster.heal()
    await cluster.waitConverged()
    const expected = new Y.Doc()
    Y.applyUpdate(expected, two)
    Y.applyUpdate(expected, one)
    const json = { body: expected.getText('body').toString(), meta: expected.getMap('meta').toJSON() }
    expect(json.body).toHaveLength(20)
    for (const node of [n1, n2, n3]) {
      const answer = await request(`${node}/v1/docs/shared?format=json`, {})
      expect({ node, status: answer.status, json: answer.json }).toEqual({ node, status: 200, json })
    }
  })

  it('a write with ?w=all is on every node when it is answered; a delete reaches every node', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    const written = await post(n3, 'everywhere', docEdit(3, 'all of us', 'w'), '?w=all')
    expect(written.status).toBe(200)
    for (const node of [n1, n2]) {
      const answer = await request(`${node}/v1/docs/everywhere?format=json&r=all`, {})
      expect(answer.json).toEqual({ body: 'all of us', meta: { title: 'w' } })
    }
    expect((await request(`${n1}/v1/docs/everywhere?w=all`, { method: 'DELETE' })).status).toBe(200)
    for (const node of [n2, n3]) expect((await request(`${node}/v1/docs/everywhere`, {})).status).toBe(404)
  })
})
