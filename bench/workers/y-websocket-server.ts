/**
 * The yjs_edit_latency baseline's server: one stock y-websocket server (`@y/websocket-server`'s
 * `setupWSConnection`, what its own `y-websocket-server` binary runs), in memory, in a process of
 * its own as a meshkv node is. Prints `{"port":N}`.
 */
import { setupWSConnection } from '@y/websocket-server/utils'
import { WebSocketServer } from 'ws'

const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
server.on('connection', (socket, request) => setupWSConnection(socket, request))
server.on('listening', () => {
  const address = server.address()
  process.stdout.write(
    `${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`,
  )
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
