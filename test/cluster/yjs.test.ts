/**
 * Live collaboration across three real meshkv processes: stock y-websocket clients (Node, `ws` as
 * the WebSocket) on different nodes edit one Y.Text and one Y.Map at once and converge through
 * replication, and node 3, which no client touched, serves the same document over HTTP. A
 * thousand small concurrent edits converge too. Awareness from a client on one node reaches
 * clients on another, through the peer relay, and goes when the client leaves. A node killed
 * (SIGKILL) and restarted keeps what it had stored and catches up on the edits made while it was
 * down, both for a fresh client of its room and over HTTP.
 * The time for an edit on node 1 to reach a client on node 2 is printed (p50/p99), not asserted.
 */
import { performance } from 'node:perf_hooks'
import { afterEach, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { Cluster, request, useLinkedCluster } from './helpers.js'

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

interface Session {
  doc: Y.Doc
  provider: WebsocketProvider
}

const sessions: Session[] = []

afterEach(() => {
  for (const { doc, provider } of sessions.splice(0)) {
    provider.destroy()
    doc.destroy()
  }
})

async function join(node: string, room: string): Promise<Session> {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(`${node.replace(/^http/u, 'ws')}/v1/yjs`, room, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    disableBc: true,
  })
  sessions.push({ doc, provider })
  await vi.waitFor(() => expect(provider.synced, `a client of ${node} to sync ${room}`).toBe(true), {
    timeout: 10_000,
    interval: 20,
  })
  return { doc, provider }
}

function contentOf(doc: Y.Doc): { body: string; meta: Record<string, unknown> } {
  return { body: doc.getText('body').toString(), meta: doc.getMap('meta').toJSON() }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

describe('y-websocket rooms across three processes', () => {
  it('concurrent edits on two nodes converge, and the third node serves the same document', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    const a = await join(n1, 'pad')
    const b = await join(n2, 'pad')
    a.doc.transact(() => {
      a.doc.getText('body').insert(0, 'from one. ')
      a.doc.getMap('meta').set('title', 'one')
      a.doc.getMap('meta').set('by-one', 1)
    })
    b.doc.transact(() => {
      b.doc.getText('body').insert(0, 'from two. ')
      b.doc.getMap('meta').set('title', 'two')
      b.doc.getMap('meta').set('by-two', 2)
    })
    await vi.waitFor(
      () => {
        expect(contentOf(a.doc).body).toHaveLength(20)
        expect(contentOf(b.doc)).toEqual(contentOf(a.doc))
      },
      { timeout: 10_000, interval: 50 },
    )
    const both = contentOf(a.doc)
    expect(both.body).toContain('from one. ')
    expect(both.body).toContain('from two. ')
    expect(both.meta).toMatchObject({ 'by-one': 1, 'by-two': 2 })
    expect(['one', 'two']).toContain(both.meta['title'])
    await vi.waitFor(async () => expect((await request(`${n3}/v1/docs/pad?format=json`, {})).json).toEqual(both), {
      timeout: 10_000,
      interval: 100,
    })
  })

  it('a thousand small concurrent edits from two nodes converge', async () => {
    const [n1, n2] = cluster.urls() as [string, string, string]
    const a = await join(n1, 'many')
    const b = await join(n2, 'many')
    for (let i = 0; i < 500; i++) {
      a.doc.getText('body').insert(0, 'a')
      b.doc.getText('body').insert(0, 'b')
      a.doc.getMap('meta').set(`a${i % 50}`, i)
      b.doc.getMap('meta').set(`b${i % 50}`, i)
    }
    await vi.waitFor(
      () => {
        expect(contentOf(a.doc).body).toHaveLength(1000)
        expect(contentOf(b.doc)).toEqual(contentOf(a.doc))
      },
      { timeout: 30_000, interval: 100 },
    )
    expect(Object.keys(contentOf(a.doc).meta)).toHaveLength(100)
    expect(contentOf(a.doc).meta['a0']).toBe(450)
  })

  it('awareness from one client reaches another client of the room', async () => {
    const [n1] = cluster.urls() as [string, string, string]
    const a = await join(n1, 'presence')
    const b = await join(n1, 'presence')
    a.provider.awareness.setLocalStateField('user', { name: 'ann', cursor: 3 })
    await vi.waitFor(
      () => expect(b.provider.awareness.getStates().get(a.doc.clientID)).toEqual({ user: { name: 'ann', cursor: 3 } }),
      { timeout: 10_000, interval: 20 },
    )
  })

  it('a node killed and restarted keeps the document and catches up', async () => {
    const [n1, n2] = cluster.urls() as [string, string, string]
    const a = await join(n1, 'restart')
    const b = await join(n2, 'restart')
    a.doc.getText('body').insert(0, 'one-before. ')
    b.doc.getText('body').insert(0, 'two-before. ')
    const docJson = async (node: string): Promise<unknown> =>
      (await request(`${node}/v1/docs/restart?format=json`, {})).json
    // Node 2 has stored both edits (its own client's and node 1's) before it dies.
    await vi.waitFor(
      async () => expect((await docJson(n2)) as { body: string }).toMatchObject({ body: contentOf(a.doc).body }),
      { timeout: 10_000, interval: 50 },
    )
    expect(contentOf(a.doc).body).toHaveLength(24)
    const before = contentOf(a.doc).body

    await cluster.node(2).kill('SIGKILL')
    for (let i = 0; i < 20; i++) a.doc.getText('body').insert(a.doc.getText('body').length, `down${i} `)
    a.doc.getMap('meta').set('while-down', true)
    // Node 1 has them before node 2 comes back: what node 2 then learns, it learns from its peers.
    await vi.waitFor(async () => expect(await docJson(n1)).toEqual(contentOf(a.doc)), { timeout: 10_000, interval: 50 })

    // Back first with every link cut: what a fresh client sees then is what node 2 kept on disk.
    cluster.isolate(2)
    await cluster.restart(2)
    const kept = await join(n2, 'restart')
    expect(contentOf(kept.doc)).toEqual({ body: before, meta: {} })

    cluster.heal()
    await cluster.waitLinked()
    const fresh = await join(n2, 'restart')
    await vi.waitFor(() => expect(contentOf(fresh.doc)).toEqual(contentOf(a.doc)), { timeout: 20_000, interval: 50 })
    expect(contentOf(fresh.doc).body).toBe(`${before}${Array.from({ length: 20 }, (_, i) => `down${i} `).join('')}`)
    expect(contentOf(kept.doc)).toEqual(contentOf(a.doc))
    await vi.waitFor(async () => expect(await docJson(n2)).toEqual(await docJson(n1)), {
      timeout: 10_000,
      interval: 100,
    })
    expect(await docJson(n2)).toEqual(contentOf(a.doc))
  })

  it('prints how long an edit on node 1 takes to reach a client on node 2', async () => {
    const [n1, n2] = cluster.urls() as [string, string, string]
    const a = await join(n1, 'latency')
    const b = await join(n2, 'latency')
    const text = b.doc.getText('body')
    const times: number[] = []
    for (let i = 0; i < 200; i++) {
      const arrived = new Promise<void>((resolve) => {
        const seen = (): void => {
          if (text.length <= i) return
          text.unobserve(seen)
          resolve()
        }
        text.observe(seen)
      })
      const start = performance.now()
      a.doc.getText('body').insert(i, 'x')
      await arrived
      times.push(performance.now() - start)
    }
    expect(text.toString()).toBe('x'.repeat(200))
    times.sort((x, y) => x - y)
    console.log(
      `y-websocket edit node 1 -> client on node 2 over ${times.length} edits: ` +
        `p50 ${percentile(times, 50).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms`,
    )
  })
})
