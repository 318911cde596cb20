/**
 * A fake peer: a plain `ws` client on a node's peer endpoint that speaks (or abuses) the peer
 * protocol by hand. It runs the real dialer handshake (src/transport/handshake.ts), so it can
 * prove the secret or fail to, and then sends whatever frames or bytes a test likes. Also what a
 * test needs to make changes by hand: real change records and register ops.
 */
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import WebSocket from 'ws'
import type { Hlc, NodeId } from '../../src/clock/index.js'
import { toNodeId } from '../../src/clock/index.js'
import type { Frame, HelloMessage } from '../../src/codec/peer.js'
import { LinkCodec } from '../../src/codec/link-codec.js'
import { FRAME_BYTES_MAX, PROTOCOL_VERSION } from '../../src/codec/peer.js'
import type { Change, Op } from '../../src/crdt/index.js'
import type { HandshakeIdentity } from '../../src/transport/handshake.js'
import { DialerHandshake } from '../../src/transport/handshake.js'
import { waitFor } from './poll.js'

/** The cluster id a node uses unless told otherwise. */
export const CLUSTER_ID = 'meshkv'

export interface Closed {
  code: number
  reason: string
}

export function freshNodeId(): NodeId {
  return toNodeId(randomBytes(8).toString('hex'))
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

/** Forgets the seqs `changeOf` handed out (for a test that starts over with fresh nodes). */
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

export interface HandshakeOptions {
  /** False: send the hello and return without waiting for a welcome (a refused handshake). */
  expectWelcome?: boolean
  /** Changes the hello before it is sent (a forged or broken proof). */
  tamper?: (hello: HelloMessage) => HelloMessage
  /** The protocol version to speak (an older node's); the link then runs it. */
  version?: number
  /** Awaited just before the hello goes: many peers held at one barrier send their hellos at once. */
  beforeHello?: () => Promise<void>
}

export class FakePeer {
  /** Every frame received that decodes, in order. */
  readonly frames: Frame[] = []
  readonly closed: Promise<Closed>
  /** The TCP socket under the WebSocket (to stop reading from it). */
  tcp: net.Socket | null = null
  /** The protocol version frames are encoded and decoded in (`handshake`'s `version`). */
  version = PROTOCOL_VERSION
  /** Frames go through a link codec, as a node's do (codec/link-codec.ts: changes without their deps). */
  #codec = new LinkCodec(PROTOCOL_VERSION)
  #closed: Closed | null = null

  private constructor(readonly socket: WebSocket) {
    socket.on('error', () => undefined)
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return
      try {
        this.frames.push(this.#codec.decode(data))
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

  /** Opens a WebSocket to `ws://127.0.0.1:<port><path>`; rejects when the upgrade is refused. */
  static async connect(port: number, options: WebSocket.ClientOptions = {}, path = '/v1/peer'): Promise<FakePeer> {
    let tcp: net.Socket | null = null
    const socket = new WebSocket(`ws://127.0.0.1:${port}${path}`, {
      perMessageDeflate: false,
      maxPayload: 2 * FRAME_BYTES_MAX,
      // Keep a handle on the TCP socket (ws's own connector also clears `path`, an IPC path to net).
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

  /** The first frame of `type` received at or after index `after` of `frames`, waiting up to `ms`. */
  async frame(type: Frame['type'], ms = 3_000, after = 0): Promise<Frame> {
    return waitFor(
      `a ${type} frame from the node`,
      ms,
      () => this.frames.slice(after).find((frame) => frame.type === type),
      5,
    )
  }

  send(frame: Frame): void {
    this.socket.send(this.#codec.encode(frame), { binary: true })
  }

  sendBytes(bytes: Uint8Array, options: { binary?: boolean; fin?: boolean } = {}): void {
    this.socket.send(bytes, { binary: options.binary ?? true, fin: options.fin ?? true })
  }

  /**
   * Answers the node's challenge as `identity`; resolves once the welcome checks out (unless
   * `expectWelcome` is false). Returns the hello sent.
   */
  async handshake(identity: HandshakeIdentity, options: HandshakeOptions = {}): Promise<Frame> {
    const dialer = new DialerHandshake(identity, new Uint8Array(randomBytes(32)), null)
    const answer = dialer.receive(await this.frame('challenge'))
    if (answer.send === undefined || answer.send.type !== 'hello')
      throw new Error(`the handshake failed: ${answer.refusal?.message ?? 'no hello'}`)
    const spoken = options.version === undefined ? answer.send : { ...answer.send, version: options.version }
    const hello = options.tamper === undefined ? spoken : options.tamper(spoken)
    await options.beforeHello?.()
    this.send(hello)
    if (options.version !== undefined) {
      this.version = options.version
      this.#codec = new LinkCodec(options.version)
    }
    if (options.expectWelcome === false) return hello
    const done = dialer.receive(await this.frame('welcome'))
    if (done.peer === undefined) throw new Error('the welcome did not verify')
    return answer.send
  }

  /** How the node closed the socket; fails when it has not within `ms`. */
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

/** The identity a fake peer claims: `nodeId` holding `secret`, in `clusterId`. */
export function peerIdentity(nodeId: NodeId, secret: string, clusterId = CLUSTER_ID): HandshakeIdentity {
  return { nodeId, clusterId, secret, advertiseUrl: null }
}
