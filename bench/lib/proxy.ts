/**
 * A TCP forwarding proxy on 127.0.0.1 that counts the bytes it carries each way. The wire_bytes
 * benchmark puts one between every pair of nodes, so the count is what the peer links send on the
 * wire (WebSocket framing included; TCP/IP headers not).
 */
import type { Server, Socket } from 'node:net'
import { connect, createServer } from 'node:net'

export class CountingProxy {
  /** Bytes from the dialer to the target, and back. */
  bytesToTarget = 0
  bytesFromTarget = 0
  readonly #server: Server
  readonly #sockets = new Set<Socket>()

  private constructor(
    server: Server,
    readonly targetPort: number,
  ) {
    this.#server = server
  }

  static async start(targetPort: number): Promise<CountingProxy> {
    const server = createServer()
    const proxy = new CountingProxy(server, targetPort)
    server.on('connection', (socket) => proxy.#accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    return proxy
  }

  get port(): number {
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new Error('the proxy is not listening')
    return address.port
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get total(): number {
    return this.bytesToTarget + this.bytesFromTarget
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #accept(client: Socket): void {
    const upstream = connect({ host: '127.0.0.1', port: this.targetPort })
    this.#sockets.add(client)
    this.#sockets.add(upstream)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    const end = (): void => {
      client.destroy()
      upstream.destroy()
      this.#sockets.delete(client)
      this.#sockets.delete(upstream)
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
    client.on('data', (chunk: Buffer) => {
      this.bytesToTarget += chunk.length
      if (!upstream.write(chunk)) client.pause()
    })
    upstream.on('drain', () => client.resume())
    upstream.on('data', (chunk: Buffer) => {
      this.bytesFromTarget += chunk.length
      if (!client.write(chunk)) upstream.pause()
    })
    client.on('drain', () => upstream.resume())
  }
}
