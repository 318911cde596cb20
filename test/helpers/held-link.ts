/**
 * A peer link end held by a test: `deliver` plays the peer, `sent` is what the replicator said.
 */
import type { NodeId } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import type { PeerLinkLike } from '../../src/replication/link.js'

/** A link end held by the test: `deliver` plays the peer, `sent` is what the replicator said. */
export class HeldLink implements PeerLinkLike {
  readonly url = null
  readonly direction = 'accepted' as const
  readonly sent: PeerMessage[] = []
  closed = false
  closeCode: number | null = null
  /** Each `pauseReading` call, in order (true: paused). */
  readonly pauses: boolean[] = []
  #onMessage: (message: PeerMessage) => void = () => undefined
  readonly #onClose: ((code: number, reason: string) => void)[] = []

  constructor(
    readonly nodeId: NodeId,
    /** The protocol version the link runs (absent: the current one). */
    readonly version?: number,
  ) {}

  send(message: PeerMessage): boolean {
    if (this.closed) return false
    this.sent.push(message)
    return true
  }
  async drained(): Promise<void> {}
  pauseReading(paused: boolean): void {
    this.pauses.push(paused)
  }
  onMessage(listener: (message: PeerMessage) => void): void {
    this.#onMessage = listener
  }
  onClose(listener: (code: number, reason: string) => void): void {
    this.#onClose.push(listener)
  }
  close(code = 1000, reason = ''): void {
    if (this.closed) return
    this.closed = true
    this.closeCode = code
    for (const listener of this.#onClose) listener(code, reason)
  }
  deliver(message: PeerMessage): void {
    this.#onMessage(message)
  }
  of<T extends PeerMessage['type']>(type: T): Extract<PeerMessage, { type: T }>[] {
    return this.sent.filter((message) => message.type === type) as Extract<PeerMessage, { type: T }>[]
  }
}
