/**
 * Two embedded nodes linked over real WebSockets on loopback, for the test/node files that need a
 * cluster (tokens, documents): each on its own LevelDB directory, each serving peer links on its
 * own port. What must be undone after the test goes to the caller's `cleanups` (run in reverse).
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import { expect, vi } from 'vitest'
import { MeshNode } from '../../src/node/index.js'
import { tempDir } from '../helpers/async.js'
import { freePort } from '../support/ports.js'

export type Cleanups = (() => Promise<void>)[]

/** A node serving peer links on `port`. */
async function linkedNode(name: string, secret: string, peers: string[], port: number, cleanups: Cleanups) {
  const { dir, remove } = await tempDir(name)
  cleanups.push(remove)
  const url = `http://127.0.0.1:${port}`
  const node = await MeshNode.open({ dir, secret, peers, advertiseUrl: url })
  const server = createServer((_request, response) => response.end())
  node.attach(server)
  // The node first: its links hold upgraded sockets the server would wait for.
  cleanups.push(async () => {
    await node.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return node
}

/** Node a (ready at once) and node b (joins through a), linked both ways. */
export async function twoLinkedNodes(name: string, secret: string, cleanups: Cleanups): Promise<[MeshNode, MeshNode]> {
  const [portA, portB] = [await freePort(), await freePort()]
  const a = await linkedNode(name, secret, [], portA, cleanups)
  const b = await linkedNode(name, secret, [`http://127.0.0.1:${portA}`], portB, cleanups)
  await vi.waitFor(() => expect(b.ready).toBe(true), { timeout: 10_000, interval: 50 })
  await vi.waitFor(async () => expect((await a.peers()).map((peer) => peer.state)).toContain('up'), {
    timeout: 10_000,
    interval: 50,
  })
  return [a, b]
}
