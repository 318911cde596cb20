/**
 * The WebSocket transport over TLS on real loopback sockets: WSS with a private CA and mutual TLS.
 * The acceptor's HTTPS server is set up as `buildApp(node, { tls })` sets up its own (the CA,
 * `requestCert`, `rejectUnauthorized: false`). Links open only when both sides verify each other:
 * a client certificate from another CA, or none, is refused at the upgrade (403, `MESHKV_ERR_AUTH`
 * on the acceptor); a dialer that does not trust the server's CA, or dials a host name the
 * server's certificate does not carry, fails its TLS handshake (`MESHKV_ERR_UNREACHABLE`).
 */
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocketTransportOptions } from '../../src/transport/websocket.js'
import { WebSocketTransport, dialTlsOf } from '../../src/transport/websocket.js'
import type { Pem, TestPki } from '../support/certs.js'
import { makeLeaf, makeTestPki } from '../support/certs.js'
import { testTransportOptions } from './conformance.js'
import { Recorder, changeFrom, freshNodeId } from './helpers.js'

const SOON_MS = 5_000
/** Long enough for a few dozen redials at the test timings (20 to 100 ms apart). */
const REFUSED_FOR_MS = 1_000

let pki: TestPki
beforeAll(async () => {
  pki = await makeTestPki()
})

interface Side {
  readonly transport: WebSocketTransport
  readonly events: Recorder
}

interface AcceptorSide extends Side {
  readonly port: number
  /** The SNI name of each TLS connection the server accepted (false: none sent). */
  readonly servernames: (string | false | null)[]
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

async function listen(server: http.Server | https.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  return (server.address() as AddressInfo).port
}

function track(server: http.Server | https.Server, transport: WebSocketTransport): void {
  cleanups.push(async () => {
    await transport.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
}

/** An HTTPS server with `pem` (mutual TLS against `ca` when given) and a transport on it. */
async function acceptor(pem: Pem, ca: string | undefined = pki.ca.cert): Promise<AcceptorSide> {
  const mutual = ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: false }
  const server = https.createServer({ ...pem, ...mutual }, (_request, response) => response.end('ok'))
  const servernames: (string | false | null)[] = []
  server.on('secureConnection', (socket: TLSSocket) => servernames.push(socket.servername))
  const port = await listen(server)
  const transport = new WebSocketTransport(
    testTransportOptions<WebSocketTransportOptions>(freshNodeId(), `https://127.0.0.1:${port}`, {
      tls: dialTlsOf({ ...pem, ...(ca === undefined ? {} : { ca }) }),
    }),
  )
  transport.attach(server)
  track(server, transport)
  return { transport, events: new Recorder(transport), port, servernames }
}

/** A transport that only dials, with these TLS settings. */
function dialer(tls: WebSocketTransportOptions['tls']): Side {
  const transport = new WebSocketTransport(
    testTransportOptions<WebSocketTransportOptions>(freshNodeId(), null, tls === undefined ? {} : { tls }),
  )
  cleanups.push(() => transport.close())
  return { transport, events: new Recorder(transport) }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** `side` dials `url` again and again and never gets a link; so does the acceptor. */
async function neverLinks(side: Side, server: Side, url: string): Promise<void> {
  side.transport.keep(url)
  await side.events.refusal('MESHKV_ERR_UNREACHABLE', SOON_MS, 'the dial to fail')
  await sleep(REFUSED_FOR_MS)
  expect(side.events.refusals.length, 'it kept redialing').toBeGreaterThan(2)
  expect({ dialed: side.events.links.length, accepted: server.events.links.length }).toEqual({ dialed: 0, accepted: 0 })
}

describe('WebSocket transport over TLS', () => {
  it('links two nodes over mutual TLS and carries frames both ways', async () => {
    const [a, b] = await Promise.all([acceptor(pki.leaf), acceptor(pki.leaf)])
    // One side dials: two crossing dials would leave one link, after a race the test does not need.
    a.transport.keep(`https://127.0.0.1:${b.port}`)
    const onA = await a.events.oneOpen(SOON_MS, 'a link on a')
    const onB = await b.events.oneOpen(SOON_MS, 'a link on b')
    expect(onA.link.nodeId).toBe(b.transport.identity.nodeId)
    expect(onA.link.send({ type: 'changes', changes: [changeFrom(a.transport.identity.nodeId)] })).toBe(true)
    expect(onB.link.send({ type: 'changes', changes: [changeFrom(b.transport.identity.nodeId)] })).toBe(true)
    await expect.poll(() => [onA.messages.length, onB.messages.length], { timeout: SOON_MS }).toEqual([1, 1])
    expect([...a.events.refusals, ...b.events.refusals]).toEqual([])
  })

  it('dials an IP host without SNI and a DNS host with it: the host name check follows the URL', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error): number => warnings.push(warning)
    process.on('warning', onWarning)
    cleanups.push(async () => void process.off('warning', onWarning))
    const server = await acceptor(pki.leaf)
    const byIp = dialer(dialTlsOf({ ...pki.leaf, ca: pki.ca.cert }))
    byIp.transport.keep(`https://127.0.0.1:${server.port}`)
    await byIp.events.oneOpen(SOON_MS, 'the link dialed at 127.0.0.1')
    const byName = dialer(dialTlsOf({ ...pki.leaf, ca: pki.ca.cert }))
    byName.transport.keep(`wss://localhost:${server.port}`)
    await byName.events.oneOpen(SOON_MS, 'the link dialed at localhost')
    expect(server.servernames).toEqual([false, 'localhost'])
    // Setting an IP address as the SNI name is what Node warns about (RFC 6066 forbids it).
    expect(warnings.map((warning) => warning.name)).toEqual([])
  })

  it('refuses a dialer whose client certificate comes from another CA, and one with none', async () => {
    const server = await acceptor(pki.leaf)
    const url = `https://127.0.0.1:${server.port}`
    // Both trust the server: only the acceptor's check can stop them.
    await neverLinks(dialer(dialTlsOf({ ...pki.otherLeaf, ca: pki.ca.cert })), server, url)
    const authRefusals = server.events.refusals.filter((refusal) => refusal.code === 'MESHKV_ERR_AUTH')
    expect(authRefusals.length).toBeGreaterThan(2)
    expect(server.events.refusals.every((refusal) => refusal.code === 'MESHKV_ERR_AUTH')).toBe(true)
    const before = server.events.refusals.length
    await neverLinks(dialer({ ca: pki.ca.cert }), server, url)
    expect(server.events.refusals.length).toBeGreaterThan(before)
    expect(server.events.refusals.every((refusal) => refusal.code === 'MESHKV_ERR_AUTH')).toBe(true)
    // The acceptor keeps serving: a dialer with a certificate of its CA links.
    const good = dialer(dialTlsOf({ ...pki.leaf, ca: pki.ca.cert }))
    good.transport.keep(url)
    await good.events.oneOpen(SOON_MS, 'the trusted dialer')
    await server.events.oneOpen(SOON_MS, 'the accepted link')
  })

  it('answers a peer upgrade without a verified certificate 403, before any WebSocket', async () => {
    const server = await acceptor(pki.leaf)
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const request = https.request({
        host: '127.0.0.1',
        port: server.port,
        path: '/v1/peer',
        ca: pki.ca.cert,
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      })
      request.on('response', (response) => resolve(response.statusCode))
      request.on('upgrade', () => resolve(101))
      request.on('error', reject)
      request.end()
    })
    expect(status).toBe(403)
    expect(server.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_AUTH'])
  })

  it('refuses every peer link over plain HTTP when the transport has a CA', async () => {
    const server = http.createServer((_request, response) => response.end('ok'))
    const port = await listen(server)
    const transport = new WebSocketTransport(
      testTransportOptions<WebSocketTransportOptions>(freshNodeId(), `http://127.0.0.1:${port}`, {
        tls: dialTlsOf({ ...pki.leaf, ca: pki.ca.cert }),
      }),
    )
    transport.attach(server)
    track(server, transport)
    const side = { transport, events: new Recorder(transport) }
    await neverLinks(dialer(dialTlsOf({ ...pki.leaf, ca: pki.ca.cert })), side, `http://127.0.0.1:${port}`)
    expect(side.events.refusals.length).toBeGreaterThan(0)
    expect(side.events.refusals.every((refusal) => refusal.code === 'MESHKV_ERR_AUTH')).toBe(true)
  })

  it('fails to dial a server whose certificate its CA did not sign', async () => {
    const server = await acceptor(pki.leaf)
    const untrusting = dialer(dialTlsOf({ ...pki.leaf, ca: pki.otherCa.cert }))
    await neverLinks(untrusting, server, `https://127.0.0.1:${server.port}`)
    expect(untrusting.events.refusals.every((refusal) => refusal.code === 'MESHKV_ERR_UNREACHABLE')).toBe(true)
  })

  it('fails to dial a host name the server certificate does not carry (and links where it does)', async () => {
    const ipOnly = await acceptor(await makeLeaf(pki.ca, { dns: ['peer.meshkv.test'], ips: ['127.0.0.1'] }))
    const nameOnly = await acceptor(await makeLeaf(pki.ca, { dns: ['localhost'], ips: [] }))
    const client = dialTlsOf({ ...pki.leaf, ca: pki.ca.cert })
    await neverLinks(dialer(client), ipOnly, `https://localhost:${ipOnly.port}`)
    await neverLinks(dialer(client), nameOnly, `https://127.0.0.1:${nameOnly.port}`)
    // The controls: the same servers, dialed at the names their certificates carry.
    const [toIp, toName] = [dialer(client), dialer(client)]
    toIp.transport.keep(`https://127.0.0.1:${ipOnly.port}`)
    toName.transport.keep(`https://localhost:${nameOnly.port}`)
    await toIp.events.oneOpen(SOON_MS, 'the link dialed at the IP SAN')
    await toName.events.oneOpen(SOON_MS, 'the link dialed at the DNS SAN')
  })
})
