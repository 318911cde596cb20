/**
 * Hostile input against a REAL node: a `meshkv node` process (bin/meshkv.js, from dist/) with a
 * cluster secret, so it takes peer links at /v1/peer on its HTTP port (the fake peer that abuses
 * them is test/support/fake-peer.ts); raw TCP for HTTP abuse; and the node's
 * footprint as the kernel sees it (VmRSS), so "memory bounded" is measured, not assumed.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hlc, NodeId } from '../../src/clock/index.js'
import type { RunningChild } from '../cli/helpers.js'
import { buildIfStale, killAll, startMeshkv } from '../cli/helpers.js'
import { request } from '../cluster/helpers.js'
import { expect, vi } from 'vitest'
import type { FakePeer } from '../support/fake-peer.js'
import { changeOf, putOp } from '../support/fake-peer.js'
import { waitFor } from '../support/poll.js'

export { request }
export { sleep, waitFor } from '../support/poll.js'

export interface RealNode {
  url: string
  port: number
  pid: number
  secret: string
  nodeId: NodeId
  run: RunningChild
  /** NDJSON log records written so far (warn and above). */
  logs(test?: (record: Record<string, unknown>) => boolean): Record<string, unknown>[]
  status(): Promise<NodeStatus>
  /** Resident memory of the process now, in bytes. */
  rssBytes(): Promise<number>
  stop(): Promise<void>
}

export interface NodeStatus {
  nodeId: NodeId
  lsn: number
  hlc: Hlc
  vc: Record<string, number>
  linked: string[]
  replication: Record<string, number>
  [field: string]: unknown
}

/** Starts one node process with a secret (peer links on), and waits until it is ready. */
export async function startRealNode(extraArgs: readonly string[] = []): Promise<RealNode> {
  buildIfStale()
  const dir = await mkdtemp(join(tmpdir(), 'meshkv-hostile-'))
  const secret = randomBytes(16).toString('hex')
  const running = await startMeshkv(join(dir, 'data'), ['--secret', secret, ...extraArgs])
  const pid = running.child.pid
  if (pid === undefined) throw new Error('the node has no pid')
  const status = async (): Promise<NodeStatus> => {
    const answer = await request(`${running.url}/v1/status`)
    if (answer.status !== 200 || answer.json === undefined) throw new Error(`/v1/status answered ${answer.status}`)
    return answer.json as unknown as NodeStatus
  }
  const { nodeId } = await status()
  // A node with a secret writes itself into the member set on its first tick: wait for that
  // write, so it does not land in the middle of a test that compares footprints.
  await waitFor('the node to write itself into the member set', 10_000, async () =>
    ((await status()).vc[nodeId] ?? 0) >= 1 ? true : undefined,
  )
  return {
    url: running.url,
    port: running.port,
    pid,
    secret,
    nodeId,
    run: running,
    logs(test = () => true) {
      const out: Record<string, unknown>[] = []
      for (const line of running.stdout().split('\n')) {
        try {
          const record = JSON.parse(line) as Record<string, unknown>
          if (test(record)) out.push(record)
        } catch {
          // Not a JSON line.
        }
      }
      return out
    },
    status,
    async rssBytes() {
      const text = await readFile(`/proc/${pid}/status`, 'utf8')
      const match = /^VmRSS:\s+(\d+) kB$/mu.exec(text)
      if (match === null) throw new Error('no VmRSS in /proc status')
      return Number(match[1]) * 1024
    },
    async stop() {
      running.child.kill('SIGKILL')
      await running.exited
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** For afterAll: ends any node process a failed test left running. */
export async function stopAllNodes(): Promise<void> {
  await killAll()
}

/** A standalone node's whole footprint: log position, clock and a digest of every state. */
export async function footprint(
  node: RealNode,
): Promise<{ lsn: number; hlc: Hlc; vc: Record<string, number>; digest: string }> {
  const status = await node.status()
  const digest = await request(`${node.url}/v1/digest`)
  return { lsn: status.lsn, hlc: status.hlc, vc: status.vc, digest: String(digest.json?.['digest']) }
}

/**
 * What peers' changes could have touched: the vector clock without the node's own entry (a node
 * writes its member set itself, e.g. when it admits a peer that passed the handshake) and every
 * key with its value and version.
 */
export async function peerFootprint(node: RealNode): Promise<{ foreignVc: Record<string, number>; keys: unknown }> {
  const status = await node.status()
  const { [status.nodeId]: _own, ...foreignVc } = status.vc
  const keys = (await request(`${node.url}/v1/kv?limit=1000`)).json?.['items']
  return { foreignVc, keys }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP.

/** Writes raw bytes on a fresh TCP connection and resolves with the status of the first answer (0 when the connection closed without one). */
export function rawStatus(
  port: number,
  chunks: readonly (string | Buffer)[],
  ms = 5_000,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no HTTP answer within ${ms} ms; got ${JSON.stringify(text.slice(0, 120))}`))
    }, ms)
    const finish = (): void => {
      clearTimeout(timer)
      socket.destroy()
      const match = /^HTTP\/1\.1 (\d{3})/u.exec(text)
      resolve({ status: match === null ? 0 : Number(match[1]), text })
    }
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1')
      // A whole answer: headers, and the body its Content-Length announces.
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return
      const length = /\r\ncontent-length: (\d+)/iu.exec(text.slice(0, end))
      if (length === null || text.length >= end + 4 + Number(length[1])) finish()
    })
    socket.on('error', () => undefined)
    socket.on('close', finish)
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk)
    })
  })
}

/** An honest write from `peer` (linked as `nodeId`) lands on the node: sent, then read back over HTTP. */
export async function honestWriteLands(node: RealNode, peer: FakePeer, nodeId: NodeId): Promise<void> {
  const key = `honest/${nodeId}`
  peer.send({ type: 'changes', changes: [changeOf(nodeId, [putOp(key, 'fine')])] })
  await vi.waitFor(async () => expect((await request(`${node.url}/v1/kv/${key}`)).text).toBe('fine'), {
    timeout: 5_000,
    interval: 100,
  })
  peer.destroy()
}
