/**
 * The WebSocket transport: peers reach a node on its own HTTP port at `/v1/peer`, one binary
 * WebSocket message per frame (replication/protocol.ts), the handshake of transport/handshake.ts
 * before anything else, ping/pong every `pingIntervalMs` in both directions.
 *
 * Limits against hostile input (each one tested in test/transport/websocket.test.ts):
 * - frames over `FRAME_BYTES_MAX` are refused by ws itself (`maxPayload`, close 1009), and so are
 *   messages in more than `FRAGMENTS_MAX` fragments (1008);
 * - text frames and frames that do not decode to the right shape close with 1008;
 * - a socket has `handshakeTimeoutMs` to authenticate (4408), and at most `pendingSocketsMax`
 *   sockets may be unauthenticated at once (more are answered 503 before the upgrade), at most
 *   `pendingPerAddressMax` of them from one remote address (more are answered 429), so one host
 *   cannot take every slot and keep a restarted peer from linking;
 * - before the handshake passes, a socket may send at most `PREAUTH_BYTES_MAX` raw bytes (a
 *   challenge's answer is a few hundred): past that it is closed (1008) and no longer read, so a
 *   stranger's 4 MiB frame is never buffered; each frame is also held to HANDSHAKE_FRAME_BYTES_MAX
 *   (connection.ts);
 * - upgrade requests with more than `UPGRADE_HEADERS_MAX` headers (431) or any
 *   Sec-WebSocket-Protocol (400, meshkv uses none) are refused; header bytes are bounded by
 *   Node's `maxHeaderSize`;
 * - a link whose send queue passes `sendQueueBytesMax` is dropped (4429), and a peer silent for
 *   `peerTimeoutMs` is dropped (4408).
 *
 * TLS (test/transport/tls.test.ts): dialing a `wss://` peer verifies its certificate against
 * `tls.ca` and its host name against the URL's host (ws sends the host as SNI, none for an IP
 * address, and Node's `checkServerIdentity` matches DNS or IP SANs); `tls.cert`/`tls.key` are the
 * client certificate. With `tls.ca`, an upgrade to `/v1/peer` must arrive over TLS with a client
 * certificate the server verified (`socket.authorized`), else it is answered 403 and reported as a
 * `refused` event with `MESHKV_ERR_AUTH`. The chain check is the HTTPS server's (its `ca`,
 * `requestCert`): give the server and the transport the same CA.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { STATUS_CODES } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { ConnectionOptions } from 'node:tls'
import { TLSSocket } from 'node:tls'
import WebSocket, { WebSocketServer } from 'ws'
import type { RawData } from 'ws'
import type { TlsMaterial } from '../api/access.js'
import { FRAME_BYTES_MAX } from '../codec/peer.js'
import type { ErrorCode } from '../errors.js'
import { MeshError } from '../errors.js'
import type { Channel, Connection, ConnectionEnd, Link, SetTimer } from './connection.js'
import type { CoreTransportOptions } from './core.js'
import { TransportCore, positiveInteger } from './core.js'
import { CLOSE_CODES } from './transport.js'

/** The path peers dial on a node's HTTP port. */
export const PEER_PATH = '/v1/peer'
export const PENDING_SOCKETS_MAX_DEFAULT = 256
/** Unauthenticated sockets one remote address may hold at once (an honest peer needs one or two). */
export const PENDING_PER_ADDRESS_MAX_DEFAULT = 8
/** Raw bytes (frames, their headers, pongs) a socket may send before its handshake passes. */
export const PREAUTH_BYTES_MAX = 16 * 1024
/** An upgrade request to /v1/peer needs a dozen headers; more than this is refused (431). */
export const UPGRADE_HEADERS_MAX = 64
/** Fragments one message may arrive in (ws's own default is 16,384). */
export const FRAGMENTS_MAX = 1024
/** How long a polite close may wait for the peer's close frame before the socket is dropped. */
export const CLOSE_GRACE_MS = 1_000

export interface WebSocketTransportOptions extends CoreTransportOptions {
  /** Of the unauthenticated sockets (`pendingSocketsMax`), how many one remote address may hold; more are refused (429). */
  pendingPerAddressMax?: number
  /** The local address to dial from (tests dial from 127.0.0.2 while an attacker holds 127.0.0.1). */
  localAddress?: string
  /** Sockets that may be connected but not yet authenticated at once; more are refused. */
  pendingSocketsMax?: number
  /**
   * TLS settings for dialing `wss://` / `https://` peers (a private CA, client certificates). With
   * `ca`, accepted peer links must present a client certificate too (mutual TLS).
   */
  tls?: Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername'>
}

type UpgradeListener = (request: IncomingMessage, socket: Duplex, head: Buffer) => void

const realSetTimer: SetTimer = (callback, ms) => {
  const timer = setTimeout(callback, ms)
  return () => clearTimeout(timer)
}

/** ws options that its type definitions do not know yet (ws ≥ 8.18). */
const RECEIVE_LIMITS = { maxPayload: FRAME_BYTES_MAX, maxFragments: FRAGMENTS_MAX, perMessageDeflate: false } as const

/** The `ws(s)://host:port/…/v1/peer` a node URL (`http(s)://host:port`) is dialed at. */
export function peerUrlOf(url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (error) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `not a URL: ${JSON.stringify(url)}`, { cause: error })
  }
  const schemes: Record<string, string> = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }
  const scheme = schemes[parsed.protocol]
  if (scheme === undefined)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `a peer URL is http(s) or ws(s), got ${JSON.stringify(url)}`)
  parsed.protocol = scheme
  if (!parsed.pathname.endsWith(PEER_PATH)) parsed.pathname = parsed.pathname.replace(/\/+$/u, '') + PEER_PATH
  parsed.hash = ''
  return parsed.href
}

/** The remote address of an upgrade, IPv4-mapped IPv6 written as IPv4 (one host, one key). */
function remoteAddressOf(request: IncomingMessage): string {
  const address = request.socket.remoteAddress ?? ''
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address
}

function pathOf(requestUrl: string | undefined): string {
  const url = requestUrl ?? ''
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/** The transport's dial settings from a node's PEM material (`MeshNodeOptions.tls`). */
export function dialTlsOf(material: TlsMaterial): NonNullable<WebSocketTransportOptions['tls']> {
  const pem = (value: unknown, name: string): string | Buffer => {
    if (typeof value === 'string') return value
    if (value instanceof Uint8Array) return Buffer.from(value)
    throw new MeshError('MESHKV_ERR_CONFIG', `transport: tls.${name} must be PEM text or bytes`)
  }
  return {
    cert: pem(material.cert, 'cert'),
    key: pem(material.key, 'key'),
    ...(material.ca === undefined ? {} : { ca: pem(material.ca, 'ca') }),
  }
}

/**
 * Why a peer upgrade fails mutual TLS, or null when its client certificate was verified. The
 * server verified the chain already (`requestCert` with the CA); `rejectUnauthorized: false`
 * there lets HTTP clients in without one, so the peer path checks `authorized` itself.
 */
function certificateRefusal(request: IncomingMessage): string | null {
  const socket = request.socket
  if (!(socket instanceof TLSSocket)) return 'peer links need TLS with a client certificate'
  if (socket.authorized) return null
  const presented = Object.keys(socket.getPeerCertificate()).length > 0
  if (!presented) return 'no client certificate'
  return `client certificate not trusted (${String(socket.authorizationError)})`
}

/**
 * Marks an 'upgrade' listener that only watches (http/drain.ts forgets the socket), so it does not
 * count as one that serves a path: a symbol from the global registry, since http/ may not import
 * this room.
 */
export const WATCHING_UPGRADE_LISTENER = Symbol.for('meshkv.watching-upgrade-listener')

/**
 * How many 'upgrade' listeners serve paths (the peer transport, the Yjs rooms). One that finds
 * the path is not its own answers 404 when it is the only one; a listener that only watches is
 * not counted, or nobody would answer and the upgrade would hang.
 */
export function servingUpgradeListeners(server: HttpServer | HttpsServer): number {
  return server.listeners('upgrade').filter((listener) => !(WATCHING_UPGRADE_LISTENER in (listener as object))).length
}

/** Answers an upgrade request with a bare HTTP status and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number): void {
  socket.on('error', () => socket.destroy())
  if (!socket.writable) {
    socket.destroy()
    return
  }
  socket.once('finish', () => socket.destroy())
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

export function bytesOf(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data)
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return data
}

/** Codes ws may put in a close frame (1005, 1006 and 1015 are reserved for reporting). */
function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}

/** What ws's own receive errors mean, as a close code and a MeshError code. */
function failureOf(error: Error & { code?: unknown }): { code: number; errorCode: ErrorCode } {
  switch (error.code) {
    case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
      return { code: CLOSE_CODES.tooBig, errorCode: 'MESHKV_ERR_FRAME_TOO_LARGE' }
    case 'WS_ERR_TOO_MANY_BUFFERED_PARTS':
      return { code: CLOSE_CODES.policy, errorCode: 'MESHKV_ERR_FRAME_TOO_LARGE' }
    default:
      return typeof error.code === 'string' && error.code.startsWith('WS_ERR_')
        ? { code: 1002, errorCode: 'MESHKV_ERR_DECODE' }
        : { code: 1006, errorCode: 'MESHKV_ERR_UNREACHABLE' }
  }
}

/** A Channel over one open WebSocket. */
class SocketChannel implements Channel {
  private graceTimer: ReturnType<typeof setTimeout> | null = null

  constructor(private readonly socket: WebSocket) {}

  get bufferedBytes(): number {
    return this.socket.bufferedAmount
  }

  write(bytes: Uint8Array, written: () => void): void {
    if (this.socket.readyState !== WebSocket.OPEN) return
    this.socket.send(bytes, { binary: true }, () => written())
  }

  end(code: number, reason: string): void {
    const state = this.socket.readyState
    if (state === WebSocket.OPEN && isSendableCloseCode(code)) this.socket.close(code, reason)
    else if (state !== WebSocket.CLOSING) {
      this.socket.terminate()
      return
    }
    this.graceTimer ??= setTimeout(() => this.socket.terminate(), CLOSE_GRACE_MS)
  }

  destroy(): void {
    this.socket.terminate()
  }

  pauseReading(paused: boolean): void {
    if (paused) this.socket.pause()
    else this.socket.resume()
  }

  /** The socket closed: nothing left to wait for. */
  ended(): void {
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.graceTimer = null
  }
}

export class WebSocketTransport extends TransportCore {
  private readonly server: WebSocketServer
  private readonly pendingSocketsMax: number
  private readonly pendingPerAddressMax: number
  private readonly localAddress: string | undefined
  /** Unauthenticated sockets per remote address (entries at zero are deleted). */
  private readonly pendingByAddress = new Map<string, number>()
  private readonly tls: WebSocketTransportOptions['tls']
  private readonly attached = new Map<HttpServer | HttpsServer, UpgradeListener>()
  /** Every socket not yet closed, and a promise for its close. */
  private readonly sockets = new Map<WebSocket, Promise<void>>()
  private readonly releases = new WeakMap<Connection, () => void>()
  private pendingSockets = 0

  constructor(options: WebSocketTransportOptions) {
    super(options, realSetTimer)
    this.pendingSocketsMax = positiveInteger(
      'pendingSocketsMax',
      options.pendingSocketsMax,
      PENDING_SOCKETS_MAX_DEFAULT,
    )
    this.pendingPerAddressMax = positiveInteger(
      'pendingPerAddressMax',
      options.pendingPerAddressMax,
      PENDING_PER_ADDRESS_MAX_DEFAULT,
    )
    this.localAddress = options.localAddress
    this.tls = options.tls
    this.server = new WebSocketServer({ noServer: true, clientTracking: false, ...RECEIVE_LIMITS })
  }

  /** Unauthenticated sockets right now (for metrics and tests). */
  get pendingSocketCount(): number {
    return this.pendingSockets
  }

  /** Upgrades refused because one address held too many unauthenticated sockets. */
  perAddressRefusals = 0
  /** Sockets closed for sending too much before their handshake passed. */
  preAuthOverruns = 0

  /** Takes peer upgrades (`/v1/peer`) on `server`; other upgrade paths are left to others. */
  attach(server: HttpServer | HttpsServer): void {
    if (this.isClosed) throw new MeshError('MESHKV_ERR_CLOSED', 'transport: closed')
    if (this.attached.has(server)) return
    const listener: UpgradeListener = (request, socket, head) => this.onUpgrade(server, request, socket, head)
    this.attached.set(server, listener)
    server.on('upgrade', listener)
  }

  override async close(): Promise<void> {
    for (const [server, listener] of this.attached) server.off('upgrade', listener)
    this.attached.clear()
    await super.close()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  override opened(connection: Connection, link: Link): void {
    this.release(connection)
    super.opened(connection, link)
  }

  override ended(connection: Connection, end: ConnectionEnd): void {
    this.release(connection)
    super.ended(connection, end)
  }

  protected normalizeUrl(url: string): string {
    return peerUrlOf(url)
  }

  protected openChannel(key: string, connection: Connection): void {
    const socket = new WebSocket(key, {
      ...RECEIVE_LIMITS,
      ...this.tls,
      ...(this.localAddress === undefined ? {} : { localAddress: this.localAddress }),
      handshakeTimeout: this.settings.handshakeTimeoutMs,
      followRedirects: false,
    })
    connection.onAbort(() => socket.terminate())
    this.track(socket, connection, false)
    socket.once('open', () => this.bind(socket, connection))
  }

  protected async channelsEnded(): Promise<void> {
    await Promise.all(this.sockets.values())
  }

  private onUpgrade(server: HttpServer | HttpsServer, request: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (pathOf(request.url) !== PEER_PATH) {
      // Someone else may serve this path; when nobody does, say so rather than leave it hanging.
      if (servingUpgradeListeners(server) <= 1) refuseUpgrade(socket, 404)
      return
    }
    const status = this.upgradeRefusal(request)
    if (status !== null) {
      refuseUpgrade(socket, status)
      return
    }
    if (this.refusesCertificate(request, socket)) return
    this.pendingSockets += 1
    const address = remoteAddressOf(request)
    this.pendingByAddress.set(address, (this.pendingByAddress.get(address) ?? 0) + 1)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.pendingSockets -= 1
      const left = (this.pendingByAddress.get(address) ?? 1) - 1
      if (left > 0) this.pendingByAddress.set(address, left)
      else this.pendingByAddress.delete(address)
    }
    socket.once('close', release)
    this.server.handleUpgrade(request, socket, head, (webSocket) => {
      const connection = this.startConnection('acceptor', null)
      this.releases.set(connection, release)
      this.track(webSocket, connection, true)
      this.limitPreAuthBytes(socket, connection, () => released)
      this.bind(webSocket, connection)
    })
  }

  /**
   * Counts the raw bytes of `socket` until its handshake passes (`authenticated()`); past
   * PREAUTH_BYTES_MAX the connection closes (1008) and the socket is no longer read, so nothing
   * more of it is buffered (the close grace then drops it).
   */
  private limitPreAuthBytes(socket: Duplex, connection: Connection, authenticated: () => boolean): void {
    let bytes = 0
    const count = (chunk: Buffer): void => {
      if (authenticated()) {
        socket.off('data', count)
        return
      }
      bytes += chunk.length
      if (bytes <= PREAUTH_BYTES_MAX) return
      socket.off('data', count)
      socket.pause()
      this.preAuthOverruns += 1
      const message = `over ${PREAUTH_BYTES_MAX} bytes before the handshake`
      connection.protocolFailure(CLOSE_CODES.policy, 'MESHKV_ERR_FRAME_TOO_LARGE', message)
    }
    socket.on('data', count)
  }

  /** The HTTP status an upgrade request is refused with, or null to go on. */
  private upgradeRefusal(request: IncomingMessage): number | null {
    if (this.isClosed) return 503
    if (this.pendingSockets >= this.pendingSocketsMax) return 503
    if ((this.pendingByAddress.get(remoteAddressOf(request)) ?? 0) >= this.pendingPerAddressMax) {
      this.perAddressRefusals += 1
      return 429
    }
    if (request.rawHeaders.length / 2 > UPGRADE_HEADERS_MAX) return 431
    if (request.headers['sec-websocket-protocol'] !== undefined) return 400
    return null
  }

  /** With a CA, refuses (403, a `refused` event) an upgrade without a verified client certificate. */
  private refusesCertificate(request: IncomingMessage, socket: Duplex): boolean {
    if (this.tls?.ca === undefined) return false
    const why = certificateRefusal(request)
    if (why === null) return false
    refuseUpgrade(socket, 403)
    this.emitRefused(null, null, 'MESHKV_ERR_AUTH', `peer link from ${request.socket.remoteAddress ?? '?'}: ${why}`)
    return true
  }

  private release(connection: Connection): void {
    this.releases.get(connection)?.()
    this.releases.delete(connection)
  }

  /** Listens for errors and the close of `socket`, before and after it is open. */
  private track(socket: WebSocket, connection: Connection, open: boolean): void {
    let attached = open
    socket.once('open', () => {
      attached = true
    })
    socket.on('error', (error: Error & { code?: unknown }) => {
      if (!attached) {
        connection.fail('MESHKV_ERR_UNREACHABLE', `cannot reach ${connection.dialedUrl ?? 'peer'}: ${error.message}`)
        return
      }
      const failure = failureOf(error)
      connection.channelFailed(failure.code, failure.errorCode, error.message)
    })
    const closed = new Promise<void>((resolve) => {
      socket.once('close', (code: number, reason: Buffer) => {
        this.sockets.delete(socket)
        if (attached) connection.channelEnded(code, reason.toString('utf8'))
        else
          connection.fail(
            'MESHKV_ERR_UNREACHABLE',
            `cannot reach ${connection.dialedUrl ?? 'peer'}: closed before open (${code})`,
          )
        resolve()
      })
    })
    this.sockets.set(socket, closed)
  }

  /** The socket is open: heartbeat, frames in, and the handshake begins. */
  private bind(socket: WebSocket, connection: Connection): void {
    const channel = new SocketChannel(socket)
    const { pingIntervalMs, peerTimeoutMs } = this.settings
    let lastHeardMs = performance.now()
    const heard = (): void => {
      lastHeardMs = performance.now()
      connection.heard()
    }
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) connection.receive(bytesOf(data))
      else connection.receiveText()
    })
    // Only a pong proves the peer reads what this side sends: a peer that keeps talking but never
    // reads (its pongs never come) is dropped after the timeout like a silent one.
    socket.on('pong', heard)
    const heartbeat = setInterval(() => {
      if (performance.now() - lastHeardMs > peerTimeoutMs) {
        connection.close(CLOSE_CODES.timeout, `peer silent for over ${peerTimeoutMs} ms`, 'now')
        return
      }
      if (socket.readyState === WebSocket.OPEN) socket.ping()
      connection.poll()
    }, pingIntervalMs)
    socket.once('close', () => {
      clearInterval(heartbeat)
      channel.ended()
    })
    connection.attach(channel)
  }
}
