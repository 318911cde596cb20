/**
 * The first step of a graceful close (`closeApp`): clients leave the node before its server
 * closes, so that no request is lost on the wire.
 *
 * Why. A connection kept alive after an answer may carry the client's next request at any moment.
 * Node's `server.close()` closes every idle connection at once; a request already on its way on
 * one is then lost with the connection, and the client cannot tell whether it ran (a reset before
 * any answer looks the same as a node that died mid-request). The failover client must then fail
 * a write with `maybeApplied` instead of sending it to another node. A rolling restart under load
 * hit this on about one SIGTERM in three (test/cluster/rolling.test.ts).
 *
 * How. While the app closes it answers every request with 503 `MESHKV_ERR_NOT_READY` and
 * `Connection: close` (app.ts), which a client knows was not run and retries elsewhere. The drain
 * first stops accepting connections (a refused connection was not delivered either), then waits
 * until every open connection is busy (its answer will close it) or has been idle for
 * `DRAIN_IDLE_MS`: a client that has sent nothing for that long is not in the middle of sending.
 * It waits at most `DRAIN_MS_MAX`, then the server closes as before. Upgraded connections (peer
 * links, Yjs rooms) are not HTTP connections any more and have their own close.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { Server as NetServer } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'

/** How long a connection must have been idle before the drain counts its client as gone. */
export const DRAIN_IDLE_MS = 500
/** The longest a drain waits before the server closes anyway. */
export const DRAIN_MS_MAX = 5_000
const DRAIN_POLL_MS = 20

interface Connection {
  /** Requests on it not answered yet. */
  busy: number
  idleSinceMs: number
}

export class ConnectionDrain {
  readonly #server: Server
  readonly #connections = new Map<Socket, Connection>()

  constructor(server: Server) {
    this.#server = server
    // Over HTTPS a request's socket is the TLS socket, not the TCP one 'connection' hands over.
    const opened = server instanceof TlsServer ? 'secureConnection' : 'connection'
    server.on(opened, (socket: Socket) => {
      this.#connections.set(socket, { busy: 0, idleSinceMs: Date.now() })
      socket.once('close', () => this.#connections.delete(socket))
    })
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const connection = this.#connections.get(request.socket)
      if (connection === undefined) return
      connection.busy++
      response.once('close', () => {
        connection.busy--
        connection.idleSinceMs = Date.now()
      })
    })
    // Only watches: marked so the peer transport and the Yjs rooms, which answer 404 to a path no
    // other listener serves, do not count it as one (transport/websocket.ts, servingUpgradeListeners).
    const forget = (request: IncomingMessage): boolean => this.#connections.delete(request.socket)
    server.on('upgrade', Object.assign(forget, { [Symbol.for('meshkv.watching-upgrade-listener')]: true }))
  }

  /** Stops accepting connections and waits until the open ones are busy or quiet (module comment). */
  async drain(): Promise<void> {
    if (!this.#server.listening) return
    // net's close stops the listener only; http's would also close the idle connections now.
    NetServer.prototype.close.call(this.#server)
    const deadline = Date.now() + DRAIN_MS_MAX
    while (Date.now() < deadline && !this.#quiet(Date.now())) await sleep(DRAIN_POLL_MS)
  }

  #quiet(nowMs: number): boolean {
    for (const connection of this.#connections.values())
      if (connection.busy === 0 && nowMs - connection.idleSinceMs < DRAIN_IDLE_MS) return false
    return true
  }
}
