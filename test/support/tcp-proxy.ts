/**
 * A small TCP forwarding proxy on 127.0.0.1, for the cluster and chaos tests and the benchmarks:
 * every connection it accepts is piped to the target port, and the bytes it carries each way are
 * counted (WebSocket framing included, TCP/IP headers not: what the wire_bytes benchmark reports). `pause()` destroys the connections it carries and, while paused,
 * drops every new one at once (the dialer sees its connection end before the WebSocket opens);
 * `resume()` forwards again; `dropResponses()` lets requests through and resets the connection
 * when the answer begins. A node dials a peer through the proxy of that pair, so pausing the
 * proxies of a pair cuts their replication link while both keep serving clients on their own
 * HTTP ports.
 */
import type { Server, Socket } from 'node:net'
import { connect, createServer } from 'node:net'

export class TcpProxy {
  readonly #server: Server
  readonly #targetPort: number
  /** Each forwarded connection: the accepted socket and its upstream. */
  readonly #pairs = new Set<[Socket, Socket]>()
  #paused = false
  #dropResponses = false
  #closed = false
  /** Connections accepted so far (forwarded or dropped), for the tests' own checks. */
  accepted = 0
  /** Bytes from the dialer to the target, and back. */
  bytesToTarget = 0
  bytesFromTarget = 0

  private constructor(server: Server, targetPort: number) {
    this.#server = server
    this.#targetPort = targetPort
  }

  /** Listens on a free loopback port and forwards to `targetPort` on 127.0.0.1. */
  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer()
    const proxy = new TcpProxy(server, targetPort)
    server.on('connection', (socket) => proxy.#accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    return proxy
  }

  get port(): number {
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new Error('the proxy is not listening')
    return address.port
  }

  /** The base URL a node dials (`--peers`) or advertises (`--advertise-url`). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** Bytes carried both ways. */
  get total(): number {
    return this.bytesToTarget + this.bytesFromTarget
  }

  get paused(): boolean {
    return this.#paused
  }

  /** Connections it forwards right now. */
  get open(): number {
    return this.#pairs.size
  }

  /** Cuts: ends every forwarded connection, and drops new ones until `resume()`. */
  pause(): void {
    this.#paused = true
    for (const [client, upstream] of this.#pairs) {
      client.destroy()
      upstream.destroy()
    }
    this.#pairs.clear()
  }

  resume(): void {
    this.#paused = false
  }

  /**
   * While on, requests still reach the target, but the first bytes of an answer reset the
   * client's connection instead (RST): as if the target died after doing the work and before
   * answering.
   */
  dropResponses(on = true): void {
    this.#dropResponses = on
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.pause()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #accept(client: Socket): void {
    this.accepted++
    client.on('error', () => undefined)
    if (this.#paused || this.#closed) {
      client.destroy()
      return
    }
    const upstream = connect({ host: '127.0.0.1', port: this.#targetPort })
    upstream.on('error', () => undefined)
    const pair: [Socket, Socket] = [client, upstream]
    this.#pairs.add(pair)
    const end = (): void => {
      this.#pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.once('close', end)
    upstream.once('close', end)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    // Runs before the pipe's own listener: a dropped answer never reaches the client.
    upstream.prependListener('data', () => {
      if (!this.#dropResponses) return
      client.resetAndDestroy()
      upstream.destroy()
    })
    client.on('data', (chunk: Buffer) => (this.bytesToTarget += chunk.length))
    upstream.on('data', (chunk: Buffer) => (this.bytesFromTarget += chunk.length))
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
