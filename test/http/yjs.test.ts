/**
 * The y-websocket rooms of one node (node/yjs-rooms.ts) with auth on: the token travels as
 * `?token=`, none or an unknown one is 401 before the upgrade, a prefix-limited token outside its
 * prefix 403, and a `read` token's session is read-only (its edits never reach the document). A
 * message over the document update limit closes the socket with 1009; a room past its socket
 * bound answers 503.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { DOC_UPDATE_BYTES_MAX, YjsRooms } from '../../src/node/index.js'
import type { Harness } from './helpers.js'
import { openHarness } from './helpers.js'

const ROOT = 'r'.repeat(32)
let h: Harness
let base: string
const tokens: Record<string, string> = {}
const closers: (() => void)[] = []

beforeAll(async () => {
  h = await openHarness({ app: { rootToken: ROOT } })
  base = (await h.app.listen({ port: 0, host: '127.0.0.1' })).replace(/^http/u, 'ws')
  for (const role of ['read', 'write'] as const) tokens[role] = (await h.node.tokens.create({ role })).token
  tokens['prefixed'] = (await h.node.tokens.create({ role: 'write', prefix: 'team-' })).token
})

afterEach(() => {
  for (const close of closers.splice(0)) close()
})

afterAll(async () => {
  await h.close()
})

/** The HTTP status of an upgrade to `url` (101 when it opens). */
function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url)
    closers.push(() => socket.terminate())
    socket.once('open', () => resolve(101))
    socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0))
    socket.once('error', reject)
  })
}

async function join(room: string, token: string): Promise<{ doc: Y.Doc; provider: WebsocketProvider }> {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(`${base}/v1/yjs`, room, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    disableBc: true,
    params: { token },
  })
  closers.push(() => {
    provider.destroy()
    doc.destroy()
  })
  await vi.waitFor(() => expect(provider.synced).toBe(true), { timeout: 5_000, interval: 20 })
  return { doc, provider }
}

describe('y-websocket rooms with tokens', () => {
  it('refuses a missing or unknown token (401) and a room outside the prefix (403)', async () => {
    expect(await upgradeStatus(`${base}/v1/yjs/pad`)).toBe(401)
    expect(await upgradeStatus(`${base}/v1/yjs/pad?token=mkv_nope`)).toBe(401)
    expect(await upgradeStatus(`${base}/v1/yjs/pad?token=${tokens['prefixed']}`)).toBe(403)
    expect(await upgradeStatus(`${base}/v1/yjs/team-pad?token=${tokens['prefixed']}`)).toBe(101)
    expect(await upgradeStatus(`${base}/v1/yjs/pad?token=${ROOT}`)).toBe(101)
  })

  it('gives a read token a read-only session: it sees edits, its own never land', async () => {
    const writer = await join('shared', tokens['write']!)
    const reader = await join('shared', tokens['read']!)
    writer.doc.getText('body').insert(0, 'written')
    await vi.waitFor(() => expect(reader.doc.getText('body').toString()).toBe('written'), { timeout: 5_000 })
    reader.doc.getText('body').insert(0, 'read-only ')
    // Messages of one socket are handled in order: once its awareness is seen, its edit was handled.
    reader.provider.awareness.setLocalStateField('user', 'reader')
    await vi.waitFor(
      () => expect(writer.provider.awareness.getStates().get(reader.doc.clientID)).toEqual({ user: 'reader' }),
      { timeout: 5_000 },
    )
    expect(await h.node.docJson('shared')).toEqual({ body: 'written' })
    expect(writer.doc.getText('body').toString()).toBe('written')
  })

  it('closes a socket that sends a message over the document update limit (1009)', async () => {
    const socket = new WebSocket(`${base}/v1/yjs/big?token=${ROOT}`)
    closers.push(() => socket.terminate())
    await new Promise((resolve) => socket.once('open', resolve))
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)))
    socket.send(Buffer.alloc(DOC_UPDATE_BYTES_MAX + 4096, 1))
    expect(await closed).toBe(1009)
  })

  it('answers 503 past the sockets a room takes', async () => {
    const server = createServer()
    const rooms = new YjsRooms(h.node, { roomConnectionsMax: 1 })
    rooms.attach(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/yjs/full`
    try {
      expect(await upgradeStatus(url)).toBe(101)
      expect(await upgradeStatus(url)).toBe(503)
      expect(await upgradeStatus(`${url}-other`)).toBe(101)
    } finally {
      for (const close of closers.splice(0)) close()
      rooms.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
