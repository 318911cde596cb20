/**
 * Real nodes for the client tests: `MeshNode.open` + `buildApp` + `listen` on a free loopback
 * port, each on its own temp directory; and endpoints that fail in known ways (a closed port, a
 * server that takes a request and never answers).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { freePort } from '../support/ports.js'
import type { Server, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { AppOptions } from '../../src/http/app.js'
import { buildApp, closeApp } from '../../src/http/app.js'
import { MeshNode } from '../../src/node/index.js'

export interface LiveNode {
  node: MeshNode
  app: FastifyInstance
  url: string
  close(): Promise<void>
}

export async function startNode(options: AppOptions = {}): Promise<LiveNode> {
  const dir = await mkdtemp(join(tmpdir(), 'meshkv-client-'))
  const node = await MeshNode.open({ dir })
  const app = await buildApp(node, options)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  let closed = false
  return {
    node,
    app,
    url,
    async close() {
      if (closed) return
      closed = true
      await closeApp(app)
      await node.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A loopback port nothing listens on (it was free a moment ago): connections are refused. */
export async function closedPortUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`
}

/** A server that reads requests and never answers: the request arrived, its outcome is unknown. */
export async function silentServer(): Promise<{ url: string; requests: () => number; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  let requests = 0
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('data', () => requests++)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests: () => requests,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
