/**
 * The quorum read's HTTP side (src/node/quorum.ts): signed state requests, answers joined, and
 * requests still in flight aborted once enough members have answered or the read ends.
 */
import { once } from 'node:events'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { toNodeId } from '../../src/clock/index.js'
import type { RegisterState } from '../../src/crdt/index.js'
import { lwwSibling } from '../../src/crdt/index.js'
import { PEER_AUTH_HEADER, STATE_MEDIA_TYPE, answerStateRequest, quorumRead } from '../../src/node/quorum.js'
import { MemoryBackend, Store } from '../../src/storage/index.js'
import { meshCodeOf } from '../helpers/async.js'
import { utf8 } from '../helpers/bytes.js'

const SECRET = 'quorum-test-secret'
const SELF = toNodeId('a1a1a1a1a1a1a1a1')
const LIMITS = { keyBytesMax: 1024, valueBytesMax: 1024, batchOpsMax: 10 }

const servers: Server[] = []
const stores: Store[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    server.close()
  }
  for (const store of stores.splice(0)) await store.close()
})

async function listen(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<string> {
  const server = createServer(handler)
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A member that holds `value` under key `k` and answers state requests for it. */
async function answeringMember(value: string, id: string): Promise<string> {
  const store = await Store.open({
    backend: new MemoryBackend(),
    now: () => 1_700_000_000_000,
    randomBytes: () => new Uint8Array(Buffer.from(id, 'hex')),
  })
  stores.push(store)
  await store.commitLocal([{ type: 'kv.put', key: 'k', value: utf8(value), contentType: 'text/plain' }])
  return listen((request, response) => {
    const auth = request.headers[PEER_AUTH_HEADER]
    void answerStateRequest({ store, secret: SECRET, now: Date.now(), limits: LIMITS }, 'kv', 'k', auth).then(
      (bytes) => {
        response.writeHead(200, { 'content-type': STATE_MEDIA_TYPE })
        response.end(bytes)
      },
      () => {
        response.writeHead(401)
        response.end()
      },
    )
  })
}

/** A member that takes the request and never answers; resolves `closed` when the request is torn down. */
async function silentMember(): Promise<{ url: string; closed: Promise<void>; asked: Promise<void> }> {
  let onClosed!: () => void
  let onAsked!: () => void
  const closed = new Promise<void>((resolve) => (onClosed = resolve))
  const asked = new Promise<void>((resolve) => (onAsked = resolve))
  const url = await listen((request) => {
    onAsked()
    request.socket.on('close', onClosed)
  })
  return { url, closed, asked }
}

function read(targets: { nodeId: NodeId; url: string }[], required: number, signal: AbortSignal) {
  const empty: RegisterState = { siblings: [] } as unknown as RegisterState
  return quorumRead({
    space: 'kv',
    key: 'k',
    own: empty,
    ownVc: {},
    required,
    targets,
    secret: SECRET,
    self: SELF,
    now: Date.now,
    timeoutMs: 600_000,
    signal,
  })
}

describe('quorum read', () => {
  it('joins the answers it needs and aborts the request still in flight', async () => {
    const member = await answeringMember('held', 'b2b2b2b2b2b2b2b2')
    const silent = await silentMember()
    const state = await read(
      [
        { nodeId: toNodeId('c3c3c3c3c3c3c3c3'), url: silent.url },
        { nodeId: toNodeId('b2b2b2b2b2b2b2b2'), url: member },
      ],
      2,
      new AbortController().signal,
    )
    expect(Buffer.from(lwwSibling(state)?.value ?? []).toString('utf8')).toBe('held')
    await silent.asked
    // Without the abort the silent request would stay open until the 600 s deadline.
    await silent.closed
  })

  it('aborts every request when the read is ended (the node closing)', async () => {
    const silent = await silentMember()
    const ending = new AbortController()
    const reading = meshCodeOf(read([{ nodeId: toNodeId('c3c3c3c3c3c3c3c3'), url: silent.url }], 2, ending.signal))
    await silent.asked
    ending.abort()
    expect(await reading).toBe('MESHKV_ERR_READ_QUORUM')
    await silent.closed
  })

  it('refuses at once when fewer members have a URL than it needs', async () => {
    expect(await meshCodeOf(read([], 2, new AbortController().signal))).toBe('MESHKV_ERR_READ_QUORUM')
  })
})
