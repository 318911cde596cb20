/**
 * Hostile input against a REAL node: a `meshkv node` process (bin/meshkv.js, from dist/) with a
 * cluster secret, so it takes peer links at /v1/peer on its HTTP port; a fake peer built from the
 * real handshake (src/transport/handshake.ts) and a plain `ws` client, which can prove the secret
 * or fail to, and then send whatever frames it likes; raw TCP for HTTP abuse; and the node's
 * footprint as the kernel sees it (VmRSS), so "memory bounded" is measured, not assumed.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import type { Hlc, NodeId } from '../../src/clock/index.js'
import { toNodeId } from '../../src/clock/index.js'
import type { Frame, HelloMessage } from '../../src/codec/peer.js'
import { FRAME_BYTES_MAX, decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import type { Change, Op } from '../../src/crdt/index.js'
import { DialerHandshake } from '../../src/transport/handshake.js'
import type { RunningChild } from '../cli/helpers.js'
import { buildIfStale, killAll, startMeshkv } from '../cli/helpers.js'
import { request, sleep, waitFor } from '../cluster/helpers.js'

export { request, sleep, waitFor }

export const CLUSTER_ID = 'meshkv'

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

export function freshNodeId(): NodeId {
  return toNodeId(randomBytes(8).toString('hex'))
}

/** The HTTP answer time of a plain request, and its status. */
export async function timed(
  url: string,
  init: RequestInit & { timeoutMs?: number } = {},
): Promise<{ status: number; ms: number; text: string }> {
  const started = performance.now()
  const answer = await request(url, init)
  return { status: answer.status, ms: Math.round(performance.now() - started), text: answer.text }
}

/** What a node holds that the checks compare before and after an attack. */
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
// A fake peer.

export interface Closed {
  code: number
  reason: string
}

let seqOf = new Map<NodeId, number>()

/** A real change from `node` (next seq of that node unless given), stamped now unless told otherwise. */
export function changeOf(
  node: NodeId,
  ops: Op[],
  options: { seq?: number; hlc?: Hlc; deps?: Record<string, number> } = {},
): Change {
  const seq = options.seq ?? (seqOf.get(node) ?? 0) + 1
  seqOf.set(node, Math.max(seqOf.get(node) ?? 0, seq))
  return {
    dot: { node, seq },
    deps: (options.deps ?? (seq > 1 ? { [node]: seq - 1 } : {})) as Change['deps'],
    hlc: options.hlc ?? { wallMs: Date.now(), logical: 0 },
    ops,
  }
}

export function resetSeqs(): void {
  seqOf = new Map()
}

export function putOp(key: string, value: string): Op {
  return {
    type: 'kv.put',
    key,
    value: new TextEncoder().encode(value),
    contentType: 'text/plain; charset=utf-8',
    context: [],
  }
}

/** A plain `ws` client on /v1/peer that speaks (or abuses) the peer protocol by hand. */
export class FakePeer {
  readonly frames: Frame[] = []
  readonly closed: Promise<Closed>
  /** The TCP socket under the WebSocket (to stop reading from it). */
  tcp: net.Socket | null = null
  #closed: Closed | null = null

  private constructor(readonly socket: WebSocket) {
    socket.on('error', () => undefined)
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return
      try {
        this.frames.push(decodeFrame(data))
      } catch {
        // A fake peer keeps what it can decode.
      }
    })
    this.closed = new Promise((resolve) => {
      socket.on('close', (code: number, reason: Buffer) => {
        this.#closed = { code, reason: reason.toString() }
        resolve(this.#closed)
      })
    })
  }

  static async connect(port: number, options: WebSocket.ClientOptions = {}): Promise<FakePeer> {
    let tcp: net.Socket | null = null
    const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/peer`, {
      perMessageDeflate: false,
      maxPayload: 2 * FRAME_BYTES_MAX,
      createConnection: ((connectOptions: net.NetConnectOpts) => {
        tcp = net.connect({ ...connectOptions, path: undefined } as net.NetConnectOpts)
        return tcp
      }) as typeof net.createConnection,
      ...options,
    })
    const peer = new FakePeer(socket)
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
      socket.once('unexpected-response', (_request, response) =>
        reject(new Error(`upgrade refused with HTTP ${response.statusCode}`)),
      )
    })
    peer.tcp = tcp
    return peer
  }

  get isClosed(): boolean {
    return this.#closed !== null
  }

  async frame(type: Frame['type'], ms = 3_000, after = 0): Promise<Frame> {
    return waitFor(
      `a ${type} frame from the node`,
      ms,
      () => this.frames.slice(after).find((frame) => frame.type === type),
      5,
    )
  }

  send(frame: Frame): void {
    this.socket.send(encodeFrame(frame), { binary: true })
  }

  sendBytes(bytes: Uint8Array, options: { binary?: boolean; fin?: boolean } = {}): void {
    this.socket.send(bytes, { binary: options.binary ?? true, fin: options.fin ?? true })
  }

  /** Answers the node's challenge as `nodeId` holding `secret`; resolves once the welcome checks out. Returns the hello sent. */
  async handshake(
    nodeId: NodeId,
    secret: string,
    options: { expectWelcome?: boolean; tamper?: (hello: HelloMessage) => HelloMessage } = {},
  ): Promise<Frame> {
    const dialer = new DialerHandshake(
      { nodeId, clusterId: CLUSTER_ID, secret, advertiseUrl: null },
      new Uint8Array(randomBytes(32)),
      null,
    )
    const answer = dialer.receive(await this.frame('challenge'))
    if (answer.send === undefined || answer.send.type !== 'hello')
      throw new Error(`the handshake failed: ${answer.refusal?.message ?? 'no hello'}`)
    const hello = options.tamper === undefined ? answer.send : options.tamper(answer.send)
    this.send(hello)
    if (options.expectWelcome === false) return hello
    const done = dialer.receive(await this.frame('welcome'))
    if (done.peer === undefined) throw new Error('the welcome did not verify')
    return answer.send
  }

  async closedWithin(ms: number): Promise<Closed> {
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      return await Promise.race([
        this.closed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the node did not close the link within ${ms} ms`)), ms)
        }),
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  destroy(): void {
    this.socket.terminate()
  }
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
