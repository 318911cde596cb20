/**
 * The WebSocket transport on real sockets (127.0.0.1, free ports): the conformance suite, then
 * hostile input as docs/testing.md lists it — garbage, text, truncated, oversized and fragmented
 * frames, peer messages before the handshake, replayed hellos, header floods, long
 * Sec-WebSocket-Protocol, half-open and unauthenticated socket floods, a peer that never reads and
 * a peer that never answers pings. After each, the node keeps serving and passes nothing on.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import selfsigned from 'selfsigned'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { WebSocketServer } from 'ws'
import type { ClientOptions } from 'ws'
import type { NodeId } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import { FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX, encodeFrame } from '../../src/codec/peer.js'
import { Link } from '../../src/transport/connection.js'
import type { HandshakeIdentity } from '../../src/transport/handshake.js'
import { AcceptorHandshake, DialerHandshake } from '../../src/transport/handshake.js'
import { CLOSE_CODES } from '../../src/transport/transport.js'
import type { WebSocketTransportOptions } from '../../src/transport/websocket.js'
import {
  FRAGMENTS_MAX,
  PENDING_PER_ADDRESS_MAX_DEFAULT,
  WebSocketTransport,
  peerUrlOf,
} from '../../src/transport/websocket.js'
import type { HarnessNode, StartOptions, TransportHarness } from './conformance.js'
import { CLUSTER, SECRET, testTransportOptions, transportConformance } from './conformance.js'
import { Recorder, changeFrom, exoticFrames, freshNodeId } from './helpers.js'
import type { Closed } from '../support/fake-peer.js'
import { FakePeer } from '../support/fake-peer.js'
import { sleep } from '../support/poll.js'

// ---------------------------------------------------------------------------------------------
// Servers and the harness.

function listen(server: http.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

/** An HTTP server that answers every request "ok" (the node's other routes, in miniature). */
function okServer(): http.Server {
  return http.createServer((_request, response) => response.end('ok'))
}

interface WsNode extends HarnessNode {
  readonly transport: WebSocketTransport
  readonly server: http.Server
  readonly port: number
}

function transportOptions(
  nodeId: NodeId,
  advertiseUrl: string | null,
  extra: Partial<WebSocketTransportOptions> = {},
): WebSocketTransportOptions {
  return testTransportOptions<WebSocketTransportOptions>(nodeId, advertiseUrl, extra)
}

/** Starts and tracks nodes; `dispose` closes every transport, server and stray socket. */
class WsNodes implements TransportHarness {
  private readonly nodes = new Set<WsNode>()
  private readonly cleanups: (() => Promise<void> | void)[] = []

  async start(options: StartOptions & { extra?: Partial<WebSocketTransportOptions> } = {}): Promise<WsNode> {
    const nodeId = options.nodeId ?? freshNodeId()
    const server = okServer()
    const requestedPort = options.url === undefined ? 0 : Number(new URL(options.url).port)
    const port = await listen(server, requestedPort)
    const url = `http://127.0.0.1:${port}`
    let transport: WebSocketTransport
    try {
      transport = new WebSocketTransport({
        ...transportOptions(nodeId, url, options.extra),
        ...(options.clusterId === undefined ? {} : { clusterId: options.clusterId }),
        ...(options.secret === undefined ? {} : { secret: options.secret }),
        ...options.options,
      })
    } catch (error) {
      await closeServer(server)
      throw error
    }
    transport.attach(server)
    const node: WsNode = {
      nodeId,
      url,
      port,
      server,
      transport,
      events: new Recorder(transport, options.recordMessages ?? true),
    }
    this.nodes.add(node)
    return node
  }

  async stop(node: HarnessNode): Promise<void> {
    const wsNode = [...this.nodes].find((candidate) => candidate.transport === node.transport)
    if (wsNode === undefined) throw new Error('not a node of this harness')
    this.nodes.delete(wsNode)
    await wsNode.transport.close()
    await closeServer(wsNode.server)
  }

  alias(url: string): string {
    // Same socket address, another spelling: the transport can only tell by the node id.
    return `${url}/?alias=1`
  }

  /** Runs `cleanup` in dispose (sockets and servers a test opened by hand). */
  later(cleanup: () => Promise<void> | void): void {
    this.cleanups.push(cleanup)
  }

  async dispose(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) await cleanup()
    await Promise.all([...this.nodes].map((node) => this.stop(node)))
  }
}

transportConformance('WebSocketTransport', () => new WsNodes())

// ---------------------------------------------------------------------------------------------
function identity(nodeId: NodeId, extra: Partial<HandshakeIdentity> = {}): HandshakeIdentity {
  return { nodeId, clusterId: CLUSTER, secret: SECRET, advertiseUrl: null, ...extra }
}

/** One HTTP GET with no keep-alive; resolves with the status and how long it took. */
/**
 * GETs `path` and resolves with the status. The abort after `HTTP_ANSWER_BOUND_MS` is a liveness
 * bound (a server that never answers fails the test), not a measure of speed.
 */
function httpGet(port: number, path: string): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const signal = AbortSignal.timeout(HTTP_ANSWER_BOUND_MS)
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, signal }, (response) => {
      response.resume()
      response.on('end', () => resolve({ status: response.statusCode ?? 0 }))
    })
    request.on('error', reject)
  })
}

const HTTP_ANSWER_BOUND_MS = 10_000

/** Writes raw bytes on a fresh TCP connection and reads the HTTP status line that comes back. */
function rawHttpStatus(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no HTTP answer; got ${JSON.stringify(text.slice(0, 80))}`))
    }, 3_000)
    const done = (): void => {
      const match = /^HTTP\/1\.1 (\d{3})/u.exec(text)
      if (match === null) return
      clearTimeout(timer)
      socket.destroy()
      resolve(Number(match[1]))
    }
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1')
      done()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      if (/^HTTP\/1\.1 \d{3}/u.test(text)) done()
      else reject(new Error(`closed without an HTTP answer: ${JSON.stringify(text.slice(0, 80))}`))
    })
    socket.write(request)
  })
}

function upgradeRequest(port: number, extraHeaders: string[] = [], leading: string[] = []): string {
  return [
    'GET /v1/peer HTTP/1.1',
    ...leading,
    `Host: 127.0.0.1:${port}`,
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    ...extraHeaders,
    '',
    '',
  ].join('\r\n')
}

// ---------------------------------------------------------------------------------------------

describe('peer URLs', () => {
  it('turns node URLs into /v1/peer WebSocket URLs', () => {
    expect(peerUrlOf('http://10.0.0.1:7700')).toBe('ws://10.0.0.1:7700/v1/peer')
    expect(peerUrlOf('https://node.example/')).toBe('wss://node.example/v1/peer')
    expect(peerUrlOf('ws://h:1/v1/peer')).toBe('ws://h:1/v1/peer')
    expect(peerUrlOf('http://h:1/prefix/')).toBe('ws://h:1/prefix/v1/peer')
    expect(() => peerUrlOf('ftp://h')).toThrow(/http/)
    expect(() => peerUrlOf('not a url')).toThrow(/URL/)
  })
})

describe('WebSocketTransport against hostile peers', () => {
  let nodes: WsNodes
  let server: WsNode

  beforeEach(async () => {
    nodes = new WsNodes()
    server = await nodes.start({ extra: { handshakeTimeoutMs: 500, pingIntervalMs: 50 } })
  })

  afterEach(async () => {
    await nodes.dispose()
  })

  async function raw(options?: ClientOptions): Promise<FakePeer> {
    const peer = await FakePeer.connect(server.port, options)
    nodes.later(() => peer.destroy())
    return peer
  }

  /** The server still links with a well-behaved node and answers HTTP. */
  async function stillServing(): Promise<void> {
    const client = await nodes.start()
    client.transport.keep(server.url)
    await client.events.oneOpen(3_000, 'a normal link')
    expect((await httpGet(server.port, '/healthz')).status).toBe(200)
  }

  it('garbage bytes close with 1008', async () => {
    const peer = await raw()
    await peer.frame('challenge')
    peer.socket.send(randomBytes(64), { binary: true })
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_DECODE'])
    expect(server.events.links).toEqual([])
    await stillServing()
  })

  it('a text frame closes with 1008', async () => {
    const peer = await raw()
    await peer.frame('challenge')
    peer.socket.send('{"type":"hello"}')
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.events.links).toEqual([])
  })

  it('a truncated frame closes with 1008', async () => {
    const peer = await raw()
    const challenge = await peer.frame('challenge')
    const dialer = new DialerHandshake(identity(freshNodeId()), new Uint8Array(randomBytes(32)), null)
    const hello = encodeFrame(dialer.receive(challenge).send!)
    peer.socket.send(hello.subarray(0, hello.length - 5), { binary: true })
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.events.links).toEqual([])
  })

  it('a 4 MiB frame before the handshake closes with 1008 unread; after it, a frame over 4 MiB closes with 1009', async () => {
    const stranger = await raw()
    await stranger.frame('challenge')
    stranger.socket.send(Buffer.alloc(FRAME_BYTES_MAX), { binary: true })
    expect((await stranger.closedWithin(3_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.transport.preAuthOverruns).toBe(1)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_FRAME_TOO_LARGE'])

    const peer = await raw()
    await peer.handshake(identity(freshNodeId()))
    await server.events.oneOpen(3_000, 'the fake peer linked')
    peer.socket.send(Buffer.alloc(FRAME_BYTES_MAX + 1), { binary: true })
    expect((await peer.closedWithin(3_000)).code).toBe(CLOSE_CODES.tooBig)
    await stillServing()
  })

  it('a frame over HANDSHAKE_FRAME_BYTES_MAX before the handshake closes with 1008 and is not decoded', async () => {
    const peer = await raw()
    await peer.frame('challenge')
    // A well-formed hello, padded past the pre-auth limit with a long URL: refused by size alone.
    const dialer = new DialerHandshake(
      identity(freshNodeId(), { advertiseUrl: `http://x/${'a'.repeat(HANDSHAKE_FRAME_BYTES_MAX)}` }),
      new Uint8Array(randomBytes(32)),
      null,
    )
    const hello = encodeFrame(dialer.receive(peer.frames[0]!).send!)
    expect(hello.length).toBeGreaterThan(HANDSHAKE_FRAME_BYTES_MAX)
    peer.socket.send(hello, { binary: true })
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_FRAME_TOO_LARGE'])
    expect(server.events.links).toEqual([])
    await stillServing()
  })

  it('a flood of tiny fragments closes with 1008', async () => {
    const peer = await raw()
    await peer.frame('challenge')
    for (let index = 0; index <= FRAGMENTS_MAX + 10 && !peer.isClosed; index += 1) {
      peer.socket.send(Buffer.from([index & 0xff]), { binary: true, fin: false })
    }
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.events.links).toEqual([])
  })

  it('a peer message before the handshake closes with 1008 and is not delivered', async () => {
    const peer = await raw()
    await peer.frame('challenge')
    const nodeId = freshNodeId()
    peer.send({ type: 'changes', changes: [changeFrom(nodeId)] })
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.policy)
    expect(server.events.links).toEqual([])
  })

  it('a peer message between hello and welcome on the dialer side drops the link', async () => {
    // A fake acceptor that sends a sync right after its challenge, before any welcome.
    const fake = okServer()
    const port = await listen(fake)
    const wss = new WebSocketServer({ server: fake })
    nodes.later(async () => {
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await closeServer(fake)
    })
    const fakeId = freshNodeId()
    const seen: Closed[] = []
    wss.on('connection', (socket) => {
      socket.on('close', (code: number, reason: Buffer) => seen.push({ code, reason: reason.toString() }))
      const acceptor = new AcceptorHandshake(identity(fakeId), new Uint8Array(randomBytes(32)))
      socket.send(encodeFrame(acceptor.start()))
      socket.send(encodeFrame({ type: 'sync', vc: {}, peers: [] }))
    })
    server.transport.keep(`http://127.0.0.1:${port}`)
    const refusal = await server.events.refusal('MESHKV_ERR_DECODE', 2_000, 'the dialer reports the early message')
    expect(refusal.url).toBe(`http://127.0.0.1:${port}`)
    await expect
      .poll(() => seen.some((closed) => closed.code === CLOSE_CODES.policy), {
        timeout: 2_000,
        message: 'the fake acceptor sees 1008',
      })
      .toBe(true)
    expect(server.events.links).toEqual([])
    server.transport.forget(`http://127.0.0.1:${port}`)
  })

  it('an acceptor that cannot prove the secret is refused by the dialer (4401)', async () => {
    const fake = okServer()
    const port = await listen(fake)
    const wss = new WebSocketServer({ server: fake })
    nodes.later(async () => {
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await closeServer(fake)
    })
    const seen: number[] = []
    wss.on('connection', (socket) => {
      socket.on('close', (code: number) => seen.push(code))
      const acceptor = new AcceptorHandshake(identity(freshNodeId()), new Uint8Array(randomBytes(32)))
      socket.send(encodeFrame(acceptor.start()))
      socket.on('message', () => socket.send(encodeFrame({ type: 'welcome', proof: randomBytes(32) })))
    })
    server.transport.keep(`http://127.0.0.1:${port}`)
    await server.events.refusal('MESHKV_ERR_AUTH', 2_000, 'the dialer reports auth')
    await expect
      .poll(() => seen.includes(CLOSE_CODES.auth), { timeout: 2_000, message: 'the fake acceptor sees 4401' })
      .toBe(true)
    expect(server.events.links).toEqual([])
    server.transport.forget(`http://127.0.0.1:${port}`)
  })

  it('a replayed hello from an earlier handshake fails: the nonce is fresh', async () => {
    const nodeId = freshNodeId()
    const first = await raw()
    const hello = await first.handshake(identity(nodeId))
    await server.events.oneOpen(2_000, 'the first, honest link')
    first.destroy()
    await expect
      .poll(() => server.events.open.length === 0, { timeout: 2_000, message: 'the first link closes' })
      .toBe(true)
    const replay = await raw()
    await replay.frame('challenge')
    replay.send(hello)
    expect((await replay.closedWithin(2_000)).code).toBe(CLOSE_CODES.auth)
    expect(server.events.links).toHaveLength(1)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_AUTH'])
  })

  it('a socket that never finishes the handshake is closed (4408)', async () => {
    const peer = await raw()
    await peer.frame('challenge')
    // The close code says the handshake deadline closed it; 2 s is only a liveness bound.
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.timeout)
    expect(server.transport.pendingSocketCount).toBe(0)
  })

  it('2,000 request headers are refused and the server keeps serving', async () => {
    const filler = Array.from({ length: 2_000 }, (_, index) => `X-Filler-${index}: v`)
    expect(await rawHttpStatus(server.port, upgradeRequest(server.port, [], filler))).toBeGreaterThanOrEqual(400)
    expect(await rawHttpStatus(server.port, upgradeRequest(server.port, filler.slice(0, 100)))).toBe(431)
    await stillServing()
  })

  it('a 10 kB Sec-WebSocket-Protocol is refused and the server keeps serving', async () => {
    const protocols = Array.from({ length: 1_500 }, (_, index) => `p${index}`).join(', ')
    expect(protocols.length).toBeGreaterThan(9_000)
    const long = `Sec-WebSocket-Protocol: ${protocols}${'x'.repeat(10_000 - protocols.length)}`
    expect(await rawHttpStatus(server.port, upgradeRequest(server.port, [long]))).toBe(400)
    await stillServing()
  })

  it('other upgrade paths get 404 when nobody serves them, and are left alone otherwise', async () => {
    expect(await rawHttpStatus(server.port, upgradeRequest(server.port).replace('/v1/peer', '/v1/other'))).toBe(404)
    const handled: string[] = []
    const other = (request: http.IncomingMessage, socket: net.Socket): void => {
      if (request.url !== '/v1/other') return
      handled.push(request.url)
      socket.end("HTTP/1.1 418 I'm a teapot\r\nConnection: close\r\n\r\n")
    }
    server.server.on('upgrade', other)
    expect(await rawHttpStatus(server.port, upgradeRequest(server.port).replace('/v1/peer', '/v1/other'))).toBe(418)
    expect(handled).toEqual(['/v1/other'])
    server.server.off('upgrade', other)
  })

  it('300 half-open TCP sockets: a link still forms and HTTP answers within a second', async () => {
    const sockets: net.Socket[] = []
    nodes.later(() => sockets.forEach((socket) => socket.destroy()))
    await Promise.all(
      Array.from(
        { length: 300 },
        (_, index) =>
          new Promise<void>((resolve) => {
            const socket = net.connect(server.port, '127.0.0.1', () => {
              // Some send half a request, some nothing at all.
              if (index % 2 === 0) socket.write(`GET /v1/peer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`)
              resolve()
            })
            socket.on('error', () => resolve())
            sockets.push(socket)
          }),
      ),
    )
    await stillServing()
  })

  it('unauthenticated sockets past the limit are refused; the rest time out; then links form', async () => {
    await nodes.stop(server)
    // Every socket comes from 127.0.0.1 here: lift the per-address cap to test the global one.
    server = await nodes.start({
      extra: { handshakeTimeoutMs: 2_500, pendingSocketsMax: 256, pendingPerAddressMax: 1_000 },
    })
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, () =>
        FakePeer.connect(server.port).then(
          (peer) => {
            nodes.later(() => peer.destroy())
            return peer
          },
          () => null,
        ),
      ),
    )
    const accepted = outcomes.filter((peer): peer is FakePeer => peer !== null)
    expect(accepted.length).toBeLessThanOrEqual(256)
    expect(accepted.length).toBeGreaterThan(200)
    expect(server.transport.pendingSocketCount).toBeLessThanOrEqual(256)
    // Meanwhile, with every unauthenticated socket still held open, plain HTTP answers.
    expect((await httpGet(server.port, '/healthz')).status).toBe(200)
    const closes = await Promise.all(accepted.map((peer) => peer.closedWithin(4_000)))
    expect(closes.every((closed) => closed.code === CLOSE_CODES.timeout)).toBe(true)
    expect(server.transport.pendingSocketCount).toBe(0)
    await stillServing()
  })

  it('300 sockets from one address: 8 wait, the rest get 429; a node dialing from 127.0.0.2 links meanwhile', async () => {
    await nodes.stop(server)
    server = await nodes.start({ extra: { handshakeTimeoutMs: 2_500 } })
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, () =>
        FakePeer.connect(server.port).then(
          (peer) => {
            nodes.later(() => peer.destroy())
            return 'open'
          },
          (error: Error) => error.message,
        ),
      ),
    )
    expect(outcomes.filter((outcome) => outcome === 'open')).toHaveLength(PENDING_PER_ADDRESS_MAX_DEFAULT)
    expect(outcomes.filter((outcome) => outcome.includes('HTTP 429'))).toHaveLength(300 - 8)
    expect(server.transport.perAddressRefusals).toBe(300 - 8)
    const other = await nodes.start({ extra: { localAddress: '127.0.0.2' } })
    other.transport.keep(server.url)
    const link = await server.events.oneOpen(2_000, 'the link from 127.0.0.2')
    expect(link.link.nodeId).toBe(other.nodeId)
    expect(server.transport.pendingSocketCount).toBe(PENDING_PER_ADDRESS_MAX_DEFAULT)
  })

  it('a second connection claiming a linked peer id is refused while that link is alive (4000, counted)', async () => {
    const client = await nodes.start({ extra: { pingIntervalMs: 50 } })
    client.transport.keep(server.url)
    const held = await server.events.oneOpen(3_000, 'the honest link')
    const impostor = await raw()
    await impostor.handshake(identity(client.nodeId), { expectWelcome: false })
    expect((await impostor.closedWithin(2_000)).code).toBe(CLOSE_CODES.duplicate)
    expect(server.transport.counters.idAlreadyLinked).toBe(1)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_MEMBER_ALIVE'])
    expect(held.link.closed).toBe(false)
    expect(server.events.open).toEqual([held])
    // The honest link still carries messages.
    const message: PeerMessage = { type: 'ack', vc: {} }
    expect(client.events.open[0]!.link.send(message)).toBe(true)
    await vi.waitFor(() => expect(held.messages).toContainEqual(message), { timeout: 2_000 })
  })

  it('a link that answers no pings is proven dead: a new connection with its id replaces it', async () => {
    const nodeId = freshNodeId()
    const first = await raw()
    await first.handshake(identity(nodeId))
    await server.events.oneOpen(2_000, 'the first link')
    first.tcp!.pause() // It stops reading, so it answers no ping (the server pings every 50 ms).
    await new Promise((resolve) => setTimeout(resolve, 250))
    const second = await raw()
    await second.handshake(identity(nodeId))
    await vi.waitFor(() => expect(server.events.links).toHaveLength(2), { timeout: 2_000 })
    expect(server.events.links[0]!.link.closed).toBe(true)
    expect(server.events.open.map((record) => record.link)).toEqual([server.events.links[1]!.link])
    expect(server.transport.counters.idAlreadyLinked).toBe(0)
  })

  it('a restart whose old link is half-open (another instance, the old one silent) replaces it: never a conflict', async () => {
    const nodeId = freshNodeId()
    const before = await raw()
    await before.handshake(identity(nodeId, { instance: new Uint8Array(8).fill(1) }))
    const held = await server.events.oneOpen(2_000, 'the link of the process before its restart')
    before.tcp!.pause() // The process died with its socket half-open: no pong ever comes again.
    const restarted = identity(nodeId, { instance: new Uint8Array(8).fill(2) })
    // Its first dial meets the old link while that still counts as alive: refused, noted.
    const early = await raw()
    await early.handshake(restarted, { expectWelcome: false })
    expect((await early.closedWithin(2_000)).code).toBe(CLOSE_CODES.duplicate)
    // The old link is never heard again (the server pings every 50 ms): the next dial replaces it.
    await new Promise((resolve) => setTimeout(resolve, 250))
    const later = await raw()
    await later.handshake(restarted)
    await vi.waitFor(() => expect(server.events.open.map((record) => record.link.nodeId)).toEqual([nodeId]), {
      timeout: 2_000,
    })
    expect(held.link.closed).toBe(true)
    expect(held.closes[0]!.code).toBe(CLOSE_CODES.duplicate)
    expect(server.transport.counters.idConflicts).toBe(0)
    expect(server.events.conflicts).toEqual([])
  })

  it('links past linksMax are refused with 4503 and counted; the links held stay', async () => {
    await nodes.stop(server)
    server = await nodes.start({ extra: { linksMax: () => 2 } })
    const peers = await Promise.all([raw(), raw(), raw()])
    await peers[0]!.handshake(identity(freshNodeId()))
    await peers[1]!.handshake(identity(freshNodeId()))
    await peers[2]!.handshake(identity(freshNodeId()), { expectWelcome: false })
    expect((await peers[2]!.closedWithin(2_000)).code).toBe(CLOSE_CODES.linksFull)
    expect(server.transport.counters.linksOverCap).toBe(1)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_BUSY'])
    expect(server.events.open).toHaveLength(2)
  })

  it('a frame with a msgpack extension or a BigInt after the handshake closes with 1008 and is not delivered', async () => {
    for (const [what, bytes] of Object.entries(exoticFrames(freshNodeId()))) {
      const peer = await raw()
      await peer.handshake(identity(freshNodeId()))
      const record = await server.events.oneOpen(2_000, `the link for ${what}`)
      peer.socket.send(bytes, { binary: true })
      expect((await peer.closedWithin(2_000)).code, what).toBe(CLOSE_CODES.policy)
      expect(record.messages, what).toEqual([])
    }
    await stillServing()
  })

  it('a peer that never reads is disconnected with 4429 and its queue stays bounded', async () => {
    await nodes.stop(server)
    const queueMax = 2 * 1024 * 1024
    server = await nodes.start({
      extra: { sendHighWaterBytes: 256 * 1024, sendQueueBytesMax: queueMax, peerTimeoutMs: 20_000 },
    })
    const peer = await raw()
    const nodeId = freshNodeId()
    await peer.handshake(identity(nodeId))
    const record = await server.events.oneOpen(2_000, 'the link to the lazy reader')
    peer.tcp!.pause()
    const link = record.link as Link
    expect(link).toBeInstanceOf(Link)
    const big: PeerMessage = { type: 'changes', changes: [changeFrom(nodeId, 256 * 1024)] }
    let sentBytes = 0
    let maxBuffered = 0
    for (let round = 0; round < 1_000 && link.send(big); round += 1) {
      sentBytes += 256 * 1024
      maxBuffered = Math.max(maxBuffered, link.bufferedBytes)
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(record.closes).toEqual([
      { code: CLOSE_CODES.slowReader, reason: expect.stringContaining('slowly') as string },
    ])
    expect(maxBuffered).toBeLessThanOrEqual(queueMax)
    // What left this process sits in kernel buffers, bounded by the OS, not by our memory.
    expect(sentBytes).toBeLessThan(256 * 1024 * 1_000)
    expect(link.send(big)).toBe(false)
    await link.drained()
    await stillServing()
  })

  it('a peer that never answers pings is dropped after the timeout', async () => {
    await nodes.stop(server)
    server = await nodes.start({ extra: { pingIntervalMs: 50, peerTimeoutMs: 400 } })
    const peer = await raw({ autoPong: false })
    await peer.handshake(identity(freshNodeId()))
    const record = await server.events.oneOpen(2_000, 'the link to the silent peer')
    const started = Date.now()
    await expect
      .poll(() => record.closes.length > 0, { timeout: 2_000, message: 'the silent peer is dropped' })
      .toBe(true)
    expect(record.closes).toEqual([{ code: CLOSE_CODES.timeout, reason: expect.stringContaining('silent') as string }])
    expect(Date.now() - started).toBeLessThan(1_500)
    await peer.closedWithin(2_000)
  })

  it('a linked node whose socket stops reading is dropped by the other side', async () => {
    await nodes.stop(server)
    server = await nodes.start({ extra: { pingIntervalMs: 50, peerTimeoutMs: 400 } })
    const peer = await raw()
    await peer.handshake(identity(freshNodeId()))
    const record = await server.events.oneOpen(2_000, 'the link')
    peer.tcp!.pause()
    await expect
      .poll(() => record.closes.length > 0, { timeout: 2_000, message: 'the stalled peer is dropped' })
      .toBe(true)
    expect(record.closes[0]?.code).toBe(CLOSE_CODES.timeout)
  })

  it('close() leaves the HTTP server serving other routes', async () => {
    const peer = await raw()
    await peer.handshake(identity(freshNodeId()))
    await server.events.oneOpen(2_000, 'a link')
    await server.transport.close()
    expect((await peer.closedWithin(2_000)).code).toBe(CLOSE_CODES.goingAway)
    expect((await httpGet(server.port, '/healthz')).status).toBe(200)
    await expect(FakePeer.connect(server.port)).rejects.toThrow()
  })
})

describe('WebSocketTransport links', () => {
  let nodes: WsNodes

  beforeEach(() => {
    nodes = new WsNodes()
  })

  afterEach(async () => {
    await nodes.dispose()
  })

  it('drained() waits while the queue is above the high-water mark, then resolves', async () => {
    const highWater = 64 * 1024
    const a = await nodes.start({ extra: { sendHighWaterBytes: highWater } })
    const b = await nodes.start()
    a.transport.keep(b.url)
    const onA = await a.events.oneOpen(3_000, 'a link')
    const onB = await b.events.oneOpen(3_000, 'the other end')
    const link = onA.link as Link
    const big: PeerMessage = { type: 'changes', changes: [changeFrom(a.nodeId, 512 * 1024)] }
    for (let index = 0; index < 16; index += 1) expect(link.send(big)).toBe(true)
    expect(link.bufferedBytes).toBeGreaterThan(highWater)
    let drained = false
    const waiting = link.drained().then(() => {
      drained = true
    })
    expect(drained).toBe(false)
    await expect.poll(() => drained, { timeout: 5_000, message: 'drained()' }).toBe(true)
    await waiting
    expect(link.bufferedBytes).toBeLessThan(highWater)
    await expect.poll(() => onB.messages.length === 16, { timeout: 5_000, message: 'all 16 frames' }).toBe(true)
  })

  it('links over TLS (wss) when the server is https and the dialer trusts its certificate', async () => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    })
    const cert = pems.cert
    const server = https.createServer({ key: pems.private, cert }, (_request, response) => response.end('ok'))
    const port = await listen(server as unknown as http.Server)
    const url = `https://127.0.0.1:${port}`
    const acceptor = new WebSocketTransport(transportOptions(freshNodeId(), url))
    acceptor.attach(server)
    const dialer = new WebSocketTransport({ ...transportOptions(freshNodeId(), null), tls: { ca: cert } })
    const untrusting = new WebSocketTransport(transportOptions(freshNodeId(), null))
    nodes.later(async () => {
      await Promise.all([acceptor.close(), dialer.close(), untrusting.close()])
      await closeServer(server as unknown as http.Server)
    })
    const accepted = new Recorder(acceptor)
    const dialed = new Recorder(dialer)
    const refused = new Recorder(untrusting)
    dialer.keep(url)
    untrusting.keep(url)
    const link = await dialed.oneOpen(3_000, 'a wss link')
    expect(link.link.url).toBe(url)
    await accepted.oneOpen(3_000, 'the accepted wss link')
    await refused.refusal('MESHKV_ERR_UNREACHABLE', 3_000, 'an untrusted certificate is refused')
    expect(refused.links).toEqual([])
  })

  it('a link whose reading is paused takes nothing new until it resumes; then every message arrives, in order', async () => {
    const acceptor = await nodes.start()
    const dialer = await nodes.start()
    dialer.transport.keep(acceptor.url)
    const sending = (await dialer.events.oneOpen(3_000, 'the dialed link')).link
    const reading = await acceptor.events.oneOpen(3_000, 'the accepted link')
    const first: PeerMessage = { type: 'ack', vc: { [dialer.nodeId]: 1 } }
    expect(sending.send(first)).toBe(true)
    await vi.waitFor(() => expect(reading.messages).toEqual([first]), { timeout: 2_000 })
    reading.link.pauseReading?.(true)
    const held = Array.from({ length: 50 }, (_, index): PeerMessage => ({
      type: 'ack',
      vc: { [dialer.nodeId]: index + 2 },
    }))
    for (const message of held) expect(sending.send(message)).toBe(true)
    await sleep(300)
    expect(reading.messages).toEqual([first])
    reading.link.pauseReading?.(false)
    await vi.waitFor(() => expect(reading.messages).toEqual([first, ...held]), { timeout: 2_000 })
    expect(reading.link.closed).toBe(false)
  })
})
