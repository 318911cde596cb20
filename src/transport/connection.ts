/**
 * One connection between two nodes, whatever carries its bytes: it runs the handshake over a
 * `Channel` (a WebSocket, or an in-memory pipe), and once both proofs check out it becomes a
 * `PeerLink`. Both transports share this code, so the simulator exercises the same handshake,
 * frame checks and close handling as real sockets.
 *
 * Rules kept here:
 * - every frame is decoded by the connection's `LinkCodec` (`decodeFrame`: size, MessagePack,
 *   shape); a bad frame, a text frame, a handshake frame after the handshake or a peer message
 *   before it closes with 1008 (1009 when too big) and nothing of it is passed on;
 * - before the handshake is done a frame over HANDSHAKE_FRAME_BYTES_MAX closes with 1008 unread;
 * - the handshake must finish within `handshakeTimeoutMs` (else 4408);
 * - a link whose queue passes `sendQueueBytesMax` is dropped at once (4429): a peer that never
 *   reads cannot make this node hold its data;
 * - `onClose` listeners run exactly once, with the code of whoever closed first.
 */
import type { NodeId } from '../clock/index.js'
import type { Frame, PeerMessage } from '../codec/peer.js'
import { LinkCodec } from '../codec/link-codec.js'
import { HANDSHAKE_FRAME_BYTES_MAX, PROTOCOL_VERSION, isHandshakeMessage, isOutgoingMessage } from '../codec/peer.js'
import type { ErrorCode } from '../errors.js'
import { assert, isMeshError } from '../errors.js'
import type { HandshakeIdentity, HandshakeStep, PeerIdentity, Refusal, Role } from './handshake.js'
import { AcceptorHandshake, DialerHandshake, refusalOfCloseCode } from './handshake.js'
import type { PeerLink } from './transport.js'
import { CLOSE_CODES } from './transport.js'

/** Cancels a timer made by a `SetTimer`. */
export type Cancel = () => void
/** Timers are an input: real `setTimeout` for sockets, the simulator's clock in memory. */
export type SetTimer = (callback: () => void, ms: number) => Cancel

/** Messages that may wait for the first `onMessage` listener before the link is dropped. */
export const UNHEARD_MESSAGES_MAX = 1024
/** WebSocket close reasons are at most 123 bytes. */
const REASON_BYTES_MAX = 120

/** What carries a connection's bytes. */
export interface Channel {
  /** Writes one binary frame; `written` runs once it has left this process's queue (or failed). */
  write(bytes: Uint8Array, written: () => void): void
  /** Bytes queued and not yet handed to the network. */
  readonly bufferedBytes: number
  /** Ends politely: the code and reason reach the other side if it still reads. */
  end(code: number, reason: string): void
  /** Ends at once, dropping whatever is queued. */
  destroy(): void
  /** Stops (true) or resumes (false) reading from the network: the receiver's backpressure. */
  pauseReading?(paused: boolean): void
}

export interface LinkSettings {
  readonly handshakeTimeoutMs: number
  readonly sendHighWaterBytes: number
  readonly sendQueueBytesMax: number
}

/** Whether a connection that passed the handshake may open. */
export type Admission =
  | { readonly ok: true }
  | {
      readonly ok: false
      readonly closeCode: number
      readonly reason: string
      readonly refusal: Refusal | null
      /** Send this side's welcome first, so the refused peer can tell a proven refusal (4009). */
      readonly welcomeFirst?: boolean
    }

export interface ConnectionEnd {
  readonly code: number
  readonly reason: string
  /** The link, when the handshake had passed. */
  readonly link: Link | null
  /** Why the handshake failed, when it failed in a way worth reporting. */
  readonly refusal: Refusal | null
  /** The other side (or the network) ended it, not this one. */
  readonly remote: boolean
}

/** The transport side of a connection. */
export interface ConnectionHost {
  readonly identity: HandshakeIdentity
  readonly settings: LinkSettings
  readonly setTimer: SetTimer
  /** Milliseconds on a monotonic clock (when a link last proved it is alive). */
  now(): number
  nonce(): Uint8Array
  admit(connection: Connection, peer: PeerIdentity): Admission
  opened(connection: Connection, link: Link): void
  ended(connection: Connection, end: ConnectionEnd): void
  /** A message crossed an open link (after the handshake: only proven peers are counted), `bytes` encoded. */
  crossed(nodeId: NodeId, direction: 'Sent' | 'Received', message: PeerMessage, bytes: number): void
}

type State = 'connecting' | 'handshake' | 'open' | 'closed'
/** `polite` sends a close frame; `now` drops the channel; `gone` means the channel already ended. */
type Ending = 'polite' | 'now' | 'gone'

export function shortReason(reason: string): string {
  if (Buffer.byteLength(reason) <= REASON_BYTES_MAX) return reason
  return Buffer.from(reason)
    .subarray(0, REASON_BYTES_MAX)
    .toString('utf8')
    .replace(/\uFFFD+$/u, '')
}

export class Connection {
  private state: State = 'connecting'
  private channel: Channel | null = null
  private readonly handshake: AcceptorHandshake | DialerHandshake
  private cancelHandshakeTimer: Cancel | null = null
  private link: Link | null = null
  /**
   * The frame codec: one memory per direction (codec/link-codec.ts), made anew for the link's
   * version once the handshake passed; the handshake's own frames are the same in every version.
   */
  private codec = new LinkCodec(PROTOCOL_VERSION)
  private readonly drainWaiters: (() => void)[] = []
  private abortDial: (() => void) | null = null
  private heardAtMs = Number.NEGATIVE_INFINITY
  private openedAtMs = Number.NEGATIVE_INFINITY
  private peerInstance: string | null = null

  constructor(
    private readonly host: ConnectionHost,
    readonly role: Role,
    /** For a dialed connection, the URL as the caller of `keep()` gave it. */
    readonly dialedUrl: string | null,
  ) {
    const nonce = host.nonce()
    this.handshake =
      role === 'acceptor'
        ? new AcceptorHandshake(host.identity, nonce)
        : new DialerHandshake(host.identity, nonce, dialedUrl)
  }

  get closed(): boolean {
    return this.state === 'closed'
  }

  get isOpen(): boolean {
    return this.state === 'open'
  }

  /** The node id the other side claimed so far (proven only once the connection is open). */
  get claimedNodeId(): string | null {
    if (this.link !== null) return this.link.nodeId
    return this.handshake instanceof DialerHandshake ? this.handshake.claimedNodeId : null
  }

  get bufferedBytes(): number {
    return this.channel?.bufferedBytes ?? 0
  }

  /** The other process's instance id (hex), once its proof checked out; null if it sent none. */
  get instance(): string | null {
    return this.peerInstance
  }

  /** When the peer last proved it reads (a pong, or the link opening), on the host's clock. */
  get heardAt(): number {
    return this.heardAtMs
  }

  /** When the handshake passed, on the host's clock. */
  get openedAt(): number {
    return this.openedAtMs
  }

  /** The peer answered a ping. */
  heard(): void {
    this.heardAtMs = this.host.now()
  }

  /** Stops or resumes reading from the channel (`PeerLink.pauseReading`). */
  pauseReading(paused: boolean): void {
    if (this.state === 'open') this.channel?.pauseReading?.(paused)
  }

  /** The channel is up: the handshake clock starts and the acceptor sends its challenge. */
  attach(channel: Channel): void {
    if (this.state === 'closed') {
      channel.destroy()
      return
    }
    assert(this.state === 'connecting', 'a connection is attached to one channel')
    this.channel = channel
    this.state = 'handshake'
    this.cancelHandshakeTimer = this.host.setTimer(
      () => this.handshakeTimedOut(),
      this.host.settings.handshakeTimeoutMs,
    )
    if (this.handshake instanceof AcceptorHandshake) this.write(this.codec.encode(this.handshake.start()))
  }

  /** How to abandon the dial if this connection closes before its channel is up. */
  onAbort(abort: () => void): void {
    this.abortDial = abort
  }

  /** A dial failed before any channel existed. */
  fail(errorCode: ErrorCode, message: string): void {
    this.finish(
      CLOSE_CODES.goingAway,
      message,
      { closeCode: CLOSE_CODES.goingAway, errorCode, message, nodeId: null },
      'gone',
    )
  }

  /** One binary frame arrived. */
  receive(bytes: Uint8Array): void {
    if (this.state !== 'handshake' && this.state !== 'open') return
    if (this.state === 'handshake' && bytes.length > HANDSHAKE_FRAME_BYTES_MAX) {
      const message = `a frame of ${bytes.length} bytes before the handshake (at most ${HANDSHAKE_FRAME_BYTES_MAX})`
      this.protocolError(CLOSE_CODES.policy, 'MESHKV_ERR_FRAME_TOO_LARGE', message)
      return
    }
    let frame: Frame
    try {
      frame = this.codec.decode(bytes)
    } catch (error) {
      if (!isMeshError(error)) throw error
      const tooBig = error.code === 'MESHKV_ERR_FRAME_TOO_LARGE'
      this.protocolError(tooBig ? CLOSE_CODES.tooBig : CLOSE_CODES.policy, error.code, error.message)
      return
    }
    if (this.state === 'handshake') {
      this.step(this.handshake.receive(frame))
    } else if (isHandshakeMessage(frame)) {
      this.protocolError(CLOSE_CODES.policy, 'MESHKV_ERR_DECODE', `a ${frame.type} frame after the handshake`)
    } else if (this.link !== null) {
      this.host.crossed(this.link.nodeId, 'Received', frame, bytes.length)
      this.link.deliver(frame)
    }
  }

  /** A text frame arrived: peers speak binary frames only. */
  receiveText(): void {
    this.protocolError(CLOSE_CODES.policy, 'MESHKV_ERR_DECODE', 'a text frame (peer frames are binary)')
  }

  /** The channel broke on its own terms (e.g. WebSocket framing errors, `maxPayload` → 1009). */
  channelFailed(code: number, errorCode: ErrorCode, message: string): void {
    const refusal = this.state === 'handshake' ? { closeCode: code, errorCode, message, nodeId: null } : null
    this.finish(code, message, refusal, 'polite')
  }

  /** The channel ended: the other side closed, or the connection dropped. */
  channelEnded(code: number, reason: string): void {
    if (this.state === 'closed') return
    let refusal: Refusal | null = null
    if (this.state === 'handshake') {
      const claimed = this.handshake instanceof DialerHandshake ? this.handshake.claimedNodeId : null
      const mapped = refusalOfCloseCode(code, reason, claimed)
      // An acceptor only reports what says something about the dialer's credentials.
      const worthReporting = this.role === 'dialer' || code === CLOSE_CODES.auth || code === CLOSE_CODES.otherCluster
      refusal = worthReporting ? mapped : null
    }
    this.finish(code, reason, refusal, 'gone')
  }

  /** Closes locally; `now` drops queued data (slow or silent peers). */
  close(code: number = CLOSE_CODES.normal, reason = '', ending: 'polite' | 'now' = 'polite'): void {
    this.finish(code, reason, null, ending)
  }

  /** Re-checks the send queue (after writes, and periodically from the transport). */
  poll(): void {
    if (this.state !== 'open' || this.channel === null) return
    const buffered = this.channel.bufferedBytes
    if (buffered > this.host.settings.sendQueueBytesMax) {
      this.close(CLOSE_CODES.slowReader, `peer reads too slowly (${buffered} bytes queued)`, 'now')
    } else if (buffered < this.host.settings.sendHighWaterBytes) {
      this.releaseDrainWaiters()
    }
  }

  sendMessage(message: PeerMessage): boolean {
    if (this.state !== 'open') return false
    // The peer would close the link over a malformed message; the sender's bug shows here instead.
    assert(isOutgoingMessage(message), `a well-formed peer message (type ${String(message.type)})`)
    // A frame over FRAME_BYTES_MAX throws MESHKV_ERR_FRAME_TOO_LARGE: senders batch below it.
    const bytes = this.codec.encode(message)
    if (this.link !== null) this.host.crossed(this.link.nodeId, 'Sent', message, bytes.length)
    this.write(bytes)
    this.poll()
    return this.state === 'open'
  }

  drained(): Promise<void> {
    if (this.state !== 'open' || this.bufferedBytes < this.host.settings.sendHighWaterBytes) return Promise.resolve()
    return new Promise((resolve) => this.drainWaiters.push(resolve))
  }

  private write(bytes: Uint8Array): void {
    assert(this.channel !== null, 'writes go to an attached channel')
    this.channel.write(bytes, () => this.poll())
  }

  private step(step: HandshakeStep): void {
    if (step.refusal !== undefined) {
      if (step.send !== undefined) this.write(this.codec.encode(step.send))
      this.finish(step.refusal.closeCode, step.refusal.message, step.refusal, 'polite')
      return
    }
    if (step.peer !== undefined) {
      this.peerInstance = step.peer.instance
      const admission = this.host.admit(this, step.peer)
      if (!admission.ok) {
        if (admission.welcomeFirst === true && step.send !== undefined) this.write(this.codec.encode(step.send))
        this.finish(admission.closeCode, admission.reason, admission.refusal, 'polite')
        return
      }
    }
    if (step.send !== undefined) this.write(this.codec.encode(step.send))
    if (step.peer !== undefined && this.state === 'handshake') this.open(step.peer)
  }

  private open(peer: PeerIdentity): void {
    this.state = 'open'
    this.heard()
    this.openedAtMs = this.heardAtMs
    this.cancelHandshakeTimer?.()
    this.cancelHandshakeTimer = null
    this.link = new Link(this, peer, this.role === 'dialer' ? 'dialed' : 'accepted')
    this.codec = new LinkCodec(this.link.version)
    this.host.opened(this, this.link)
  }

  private handshakeTimedOut(): void {
    this.cancelHandshakeTimer = null
    if (this.state !== 'handshake') return
    const message = `the handshake did not finish within ${this.host.settings.handshakeTimeoutMs} ms`
    this.finish(
      CLOSE_CODES.timeout,
      message,
      { closeCode: CLOSE_CODES.timeout, errorCode: 'MESHKV_ERR_UNREACHABLE', message, nodeId: null },
      'polite',
    )
  }

  /** The channel saw the peer break a rule (e.g. too many bytes before the handshake). */
  protocolFailure(code: number, errorCode: ErrorCode, message: string): void {
    this.protocolError(code, errorCode, message)
  }

  private protocolError(code: number, errorCode: ErrorCode, message: string): void {
    const refusal = this.state === 'handshake' ? { closeCode: code, errorCode, message, nodeId: null } : null
    this.finish(code, message, refusal, 'polite')
  }

  private finish(code: number, reason: string, refusal: Refusal | null, ending: Ending): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.cancelHandshakeTimer?.()
    this.cancelHandshakeTimer = null
    const short = shortReason(reason)
    if (this.channel !== null) {
      if (ending === 'polite') this.channel.end(code, short)
      else if (ending === 'now') this.channel.destroy()
    } else if (ending !== 'gone') {
      this.abortDial?.()
    }
    this.abortDial = null
    this.releaseDrainWaiters()
    this.link?.ended(code, short)
    this.host.ended(this, { code, reason: short, link: this.link, refusal, remote: ending === 'gone' })
  }

  private releaseDrainWaiters(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve()
  }
}

/** The `PeerLink` handed to the node once the handshake passed. */
export class Link implements PeerLink {
  readonly nodeId
  readonly url
  readonly id
  /** The protocol version this link runs (docs/protocol.md, "Handshake"). */
  readonly version: number
  private readonly messageListeners: ((message: PeerMessage) => void)[] = []
  private readonly closeListeners: ((code: number, reason: string) => void)[] = []
  /** Messages that arrived before anyone listened (the node registers listeners on 'link'). */
  private unheard: PeerMessage[] = []
  private end: { code: number; reason: string } | null = null

  constructor(
    private readonly connection: Connection,
    peer: PeerIdentity,
    readonly direction: 'dialed' | 'accepted',
  ) {
    this.nodeId = peer.nodeId
    this.url = peer.url
    this.id = peer.linkId
    this.version = peer.version
  }

  get closed(): boolean {
    return this.end !== null
  }

  /** Bytes queued for this link and not yet handed to the network. */
  get bufferedBytes(): number {
    return this.connection.bufferedBytes
  }

  send(message: PeerMessage): boolean {
    if (this.end !== null) return false
    return this.connection.sendMessage(message)
  }

  drained(): Promise<void> {
    return this.connection.drained()
  }

  pauseReading(paused: boolean): void {
    if (this.end === null) this.connection.pauseReading(paused)
  }

  onMessage(listener: (message: PeerMessage) => void): void {
    this.messageListeners.push(listener)
    if (this.messageListeners.length === 1 && this.unheard.length > 0) {
      const waiting = this.unheard
      this.unheard = []
      for (const message of waiting) this.deliver(message)
    }
  }

  onClose(listener: (code: number, reason: string) => void): void {
    const end = this.end
    if (end === null) this.closeListeners.push(listener)
    else queueMicrotask(() => listener(end.code, end.reason))
  }

  close(code: number = CLOSE_CODES.normal, reason = ''): void {
    this.connection.close(code, reason)
  }

  /** @internal A decoded, shape-checked message from the peer. */
  deliver(message: PeerMessage): void {
    if (this.end !== null) return
    if (this.messageListeners.length === 0) {
      if (this.unheard.length >= UNHEARD_MESSAGES_MAX) {
        this.connection.close(CLOSE_CODES.slowReader, 'nobody reads this link')
        return
      }
      this.unheard.push(message)
      return
    }
    for (const listener of this.messageListeners) {
      if (this.end !== null) return
      listener(message)
    }
  }

  /** @internal The connection ended: listeners hear it once. */
  ended(code: number, reason: string): void {
    if (this.end !== null) return
    this.end = { code, reason }
    this.unheard = []
    for (const listener of this.closeListeners.splice(0)) listener(code, reason)
  }
}
