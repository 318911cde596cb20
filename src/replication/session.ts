/**
 * One peer link's sending side: a cursor into the log, streamed in LSN (causal) order. Catch-up
 * and live streaming are the same loop: read the log after the cursor; when there is nothing
 * more, wait for the next commit. It skips changes the peer is known to have and changes whose
 * origin the peer is directly linked to (it gets those from their origin), batches many changes
 * per frame, and waits for the link to drain before it reads on (backpressure).
 *
 * Every `sync` from the peer restarts the cursor from the peer's vector clock, so a peer that lost
 * a link (and now needs relayed changes) or dropped changes from a full buffer gets them again.
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcGet, vcHasDot, vcJoin } from '../clock/index.js'
import type { PeerMessage } from '../codec/peer.js'
import type { Change } from '../crdt/index.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'

export interface SessionOptions {
  link: PeerLinkLike
  store: ReplicaStore
  selfId: NodeId
  frameChangesMax: number
  frameBytesMax: number
  logger: Logger
  onMessage: (message: PeerMessage) => void
  onSent: (changes: number) => void
}

/** Rough size of a change on the wire: its values and keys plus a fixed overhead. */
export function approximateChangeBytes(change: Change): number {
  let bytes = 128
  for (const op of change.ops) {
    bytes += 64
    if (op.type === 'kv.put') bytes += op.value.length + op.key.length + op.contentType.length
    else if (op.type === 'kv.del') bytes += op.key.length
    else bytes += op.name.length + ('member' in op ? op.member.length : 0)
    if ('context' in op) bytes += op.context.length * 24
  }
  return bytes
}

export class Session {
  readonly link: PeerLinkLike
  readonly #options: SessionOptions
  #theirVc: VectorClock = {}
  #sentVc: VectorClock = {}
  #theirPeers = new Set<NodeId>()
  #cursor = 0
  #synced = false
  #restart = false
  #stopped = false
  #wake: (() => void) | null = null

  constructor(options: SessionOptions) {
    this.link = options.link
    this.#options = options
  }

  start(): void {
    this.link.onMessage((message) => this.#options.onMessage(message))
    void this.#run()
  }

  stop(): void {
    this.#stopped = true
    this.wake()
  }

  wake(): void {
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  onSync(vc: VectorClock, peers: readonly NodeId[]): void {
    this.#theirVc = vc
    this.#theirPeers = new Set(peers)
    this.#synced = true
    this.#restart = true
    this.wake()
  }

  onAck(vc: VectorClock): void {
    this.#theirVc = vcJoin(this.#theirVc, vc)
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopped && !this.link.closed) {
        const woken = new Promise<void>((resolve) => (this.#wake = resolve))
        if (!this.#synced) {
          await woken
          continue
        }
        if (this.#restart) {
          this.#restart = false
          this.#sentVc = {}
          this.#cursor = await this.#startCursor()
        }
        const sent = await this.#sendFrom()
        if (!sent) await woken
      }
    } catch (error) {
      if (this.#stopped || this.link.closed) return
      this.#options.logger.error({ peer: this.link.nodeId, err: String(error) }, 'replication to peer failed; closing the link')
      this.link.close(1011, 'replication error')
    }
  }

  /** Reads one page of the log after the cursor and sends what the peer lacks. False at the end of the log. */
  async #sendFrom(): Promise<boolean> {
    // Read about two frames' worth at a time: memory per catching-up peer stays bounded by bytes.
    const entries = await this.#options.store.readLog(this.#cursor, this.#options.frameChangesMax, this.#options.frameBytesMax * 2)
    if (entries.length === 0) return false
    let batch: Change[] = []
    let bytes = 0
    for (const entry of entries) {
      if (this.#restart || this.#stopped) return true
      this.#cursor = entry.lsn
      if (!this.#shouldSend(entry.change)) continue
      const changeBytes = approximateChangeBytes(entry.change)
      // Send what is batched before a change that would take the frame past the limit: a large
      // change joins no batch that is already near it, so no frame grows past FRAME_BYTES_MAX.
      if (batch.length > 0 && bytes + changeBytes > this.#options.frameBytesMax) {
        await this.#sendBatch(batch)
        batch = []
        bytes = 0
      }
      batch.push(entry.change)
      bytes += changeBytes
      this.#sentVc = vcJoin(this.#sentVc, { [entry.change.dot.node]: entry.change.dot.seq })
      if (bytes >= this.#options.frameBytesMax) {
        await this.#sendBatch(batch)
        batch = []
        bytes = 0
      }
    }
    if (batch.length > 0) await this.#sendBatch(batch)
    return true
  }

  async #sendBatch(changes: Change[]): Promise<void> {
    if (!this.link.send({ type: 'changes', changes })) return
    this.#options.onSent(changes.length)
    await this.link.drained()
  }

  #shouldSend(change: Change): boolean {
    if (vcHasDot(this.#theirVc, change.dot) || vcHasDot(this.#sentVc, change.dot)) return false
    const origin = change.dot.node
    // Never echo a peer's own changes back to it; relay a third node's only when the peer has no link to it.
    if (origin === this.link.nodeId) return false
    return origin === this.#options.selfId || !this.#theirPeers.has(origin)
  }

  /** The LSN just before the oldest change the peer lacks (and will not get from its origin). */
  async #startCursor(): Promise<number> {
    const store = this.#options.store
    const end = store.lsn
    let start = Infinity
    for (const [origin, seq] of Object.entries(store.vc) as [NodeId, number][]) {
      const from = vcGet(this.#theirVc, origin) + 1
      if (from > seq) continue
      if (origin === this.link.nodeId || (origin !== this.#options.selfId && this.#theirPeers.has(origin))) continue
      const lsn = await store.lsnOfDot({ node: origin, seq: from })
      // Purged entries need a snapshot (cluster life); until then, stream what the log holds.
      start = Math.min(start, lsn ?? (await store.firstLsn()))
    }
    return start === Infinity ? end : start - 1
  }
}
