/**
 * One peer link's sending side: a cursor into the log, streamed in LSN (causal) order. Catch-up
 * and live streaming are the same loop: read the log after the cursor; when there is nothing
 * more, wait for the next commit. It skips changes the peer is known to have and changes whose
 * origin the peer is directly linked to (it gets those from their origin), batches many changes
 * per frame, and waits for the link to drain before it reads on (backpressure).
 *
 * Every `sync` from the peer restarts the cursor from the peer's vector clock, so a peer that lost
 * a link (and now needs relayed changes) or dropped changes from a full buffer gets them again.
 *
 * A peer whose `sync` shows less of its own origin than this node holds lost changes of its own
 * (its data directory is an older copy: seq-guard.ts): those are echoed back to it, once, up to
 * what this node held then. Otherwise a peer's own changes never go back to it.
 *
 * When the peer needs log entries this node has purged (or is brand new and this node holds a long
 * history), the session offers a snapshot instead: every state, read from one store snapshot,
 * streamed in chunks with at most `SNAPSHOT_WINDOW` chunks not yet on the peer's disk. After the
 * last chunk it waits for the peer's next `sync` and streams the log from there.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { vcDistance, vcGet, vcHasDot, vcJoin, vcWithDot } from '../clock/index.js'
import { encodeChange } from '../codec/index.js'
import type { PeerMessage, SnapshotChunkEntry } from '../codec/peer.js'
import { SnapshotChunker } from '../codec/peer.js'
import type { Change } from '../crdt/index.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { LogEntry, StoreSnapshot } from '../storage/store.js'
import { SPACES } from '../crdt/index.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'

export interface PeerSessionOptions {
  link: PeerLinkLike
  store: ReplicaStore
  selfId: NodeId
  frameChangesMax: number
  /** Most change bytes (by `approximateChangeBytes`) batched into one `changes` frame. */
  batchBytesMax: number
  logger: Logger
  onMessage: (message: PeerMessage) => void
  /** A write here waits for acks: frames sent now ask the peer to ack at once (`ChangesMessage.ack`). */
  acksWanted?: () => boolean
  onSent: (changes: number) => void
  /** A brand-new peer gets a snapshot rather than the log when this node holds more changes than this. */
  snapshotAfterChanges: number
  onSnapshotSent?: (keys: number) => void
}

/** Committed entries a session keeps in memory ahead of its cursor. */
const TAIL_ENTRIES_MAX = 32768

/** Snapshot chunks in flight before the sender waits for the receiver's `snapshot-ack`. */
export const SNAPSHOT_WINDOW = 4
const SNAPSHOT_CHUNK_STATES = 1000
const SNAPSHOT_CHUNK_BYTES = 1024 * 1024

/**
 * The size of a change on the wire: its encoded length, `deps` included (a change carries its
 * origin's whole vector clock, about 13 bytes per node id ever seen, which with a few hundred
 * historical ids outweighs small values). A frame is its changes plus a few bytes each. The
 * bytes are the ones the change was encoded to once (codec/change.ts): sizing encodes nothing.
 */
export function approximateChangeBytes(change: Change): number {
  return encodeChange(change).length
}

export class PeerSession {
  readonly link: PeerLinkLike
  readonly #options: PeerSessionOptions
  #theirVc: VectorClock = {}
  /** What the peer's last `sync` and the acks after it said it holds on disk: acks are differences. */
  #acked: VectorClock = {}
  #sentVc: VectorClock = {}
  #theirPeers = new Set<NodeId>()
  #cursor = 0
  #synced = false
  #restart = false
  #stopped = false
  #wake: (() => void) | null = null
  /** The peer's answer to a snapshot offer (null while none is awaited). */
  #snapshotReply: boolean | null = null
  /** The peer consented to a snapshot (`snapshot-request`) since it was told it needs one. */
  #snapshotRequested = false
  #snapshotAcked = 0
  /** The peer's own changes it lacks go back to it up to this seq (0: none; see the header). */
  #echoUpTo = 0
  /**
   * Entries committed after the cursor, handed over by the store's commit news: a session that
   * keeps up streams them without reading them back from the log. Bounded; a session that falls
   * behind drops it and reads the log.
   */
  #tail: LogEntry[] = []

  constructor(options: PeerSessionOptions) {
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

  /**
   * This node's store took changes its log does not hold (it joined a snapshot): the cursor no
   * longer says what the peer lacks. Starts again from what the peer is known to hold, so what only
   * the snapshot brought goes to it as a snapshot; a peer whose clock does not move never syncs
   * again, and would never get them (a joiner holding a departed member's changes, seed 91000881).
   */
  rescan(): void {
    if (!this.#synced) return
    this.#restart = true
    this.wake()
  }

  wake(): void {
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  /** A commit's entries, in LSN order (the store's news); then wakes the sender. */
  offer(entries: readonly LogEntry[]): void {
    const first = entries[0]
    if (first !== undefined) {
      const last = this.#tail[this.#tail.length - 1]
      if ((last !== undefined && first.lsn !== last.lsn + 1) || this.#tail.length + entries.length > TAIL_ENTRIES_MAX)
        this.#tail = []
      else this.#tail.push(...entries)
    }
    this.wake()
  }

  /**
   * The whole clock an `ack` stands for: an ack carries only the entries that moved since the
   * last ack or sync its sender sent (acks.ts), so it joins what the link said before.
   */
  ackedBy(ack: VectorClock): VectorClock {
    this.#acked = vcJoin(this.#acked, ack)
    return this.#acked
  }

  onSync(vc: VectorClock, peers: readonly NodeId[]): void {
    this.#acked = vc
    this.#theirVc = vc
    this.#theirPeers = new Set(peers)
    const held = vcGet(this.#options.store.vc, this.link.nodeId)
    this.#echoUpTo = vcGet(vc, this.link.nodeId) < held ? held : 0
    this.#synced = true
    this.#restart = true
    this.wake()
  }

  onAck(vc: VectorClock): void {
    this.#theirVc = vcJoin(this.#theirVc, vc)
  }

  onSnapshotReply(accept: boolean): void {
    this.#snapshotReply = accept
    this.wake()
  }

  onSnapshotRequest(): void {
    this.#snapshotRequested = true
    this.wake()
  }

  onSnapshotAck(seq: number): void {
    this.#snapshotAcked = Math.max(this.#snapshotAcked, seq)
    this.wake()
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
          const start = await this.#startCursor()
          if (typeof start !== 'number') {
            await this.#sendSnapshot(start.lacks)
            continue
          }
          this.#cursor = start
        }
        const sent = await this.#sendFrom()
        if (!sent) await woken
      }
    } catch (error) {
      if (this.#stopped || this.link.closed) return
      this.#options.logger.error(
        { peer: this.link.nodeId, err: String(error) },
        'replication to peer failed; closing the link',
      )
      this.link.close(1011, 'replication error')
    }
  }

  /** Reads one page of the log after the cursor and sends what the peer lacks. False at the end of the log. */
  async #sendFrom(): Promise<boolean> {
    while (this.#tail.length > 0 && (this.#tail[0] as LogEntry).lsn <= this.#cursor) this.#tail.shift()
    const fromTail = this.#tail.length > 0 && (this.#tail[0] as LogEntry).lsn === this.#cursor + 1
    // Caught up: nothing to read (opening a LevelDB iterator on every wake to find that out was
    // about 2% of a node's CPU under load).
    if (!fromTail && this.#cursor >= this.#options.store.lsn) return false
    // Otherwise read about two frames' worth at a time: memory per catching-up peer stays bounded by bytes.
    const readBytesMax = this.#options.batchBytesMax * 2
    const entries = fromTail
      ? this.#tail.splice(0, this.#options.frameChangesMax)
      : await this.#options.store.readLog(this.#cursor, this.#options.frameChangesMax, readBytesMax)
    if (entries.length === 0) return false
    let batch: Change[] = []
    let bytes = 0
    for (const entry of entries) {
      if (this.#restart || this.#stopped) return true
      this.#cursor = entry.lsn
      if (!this.#shouldSend(entry.change)) continue
      const changeBytes = approximateChangeBytes(entry.change)
      // Send what is batched before a change that would take the batch past its limit: a large
      // change joins no batch that is already near it, so no frame grows past FRAME_BYTES_MAX.
      if (batch.length > 0 && bytes + changeBytes > this.#options.batchBytesMax) {
        await this.#sendBatch(batch)
        batch = []
        bytes = 0
      }
      batch.push(entry.change)
      bytes += changeBytes
      this.#sentVc = vcWithDot(this.#sentVc, entry.change.dot)
      if (bytes >= this.#options.batchBytesMax) {
        await this.#sendBatch(batch)
        batch = []
        bytes = 0
      }
    }
    if (batch.length > 0) await this.#sendBatch(batch)
    return true
  }

  async #sendBatch(changes: Change[]): Promise<void> {
    const message =
      this.#options.acksWanted?.() === true
        ? { type: 'changes' as const, changes, ack: true }
        : { type: 'changes' as const, changes }
    if (!this.link.send(message)) return
    this.#options.onSent(changes.length)
    await this.link.drained()
  }

  #shouldSend(change: Change): boolean {
    if (vcHasDot(this.#theirVc, change.dot) || vcHasDot(this.#sentVc, change.dot)) return false
    const origin = change.dot.node
    // A peer's own changes go back to it only when it lost them; a third node's are relayed only
    // when the peer has no link to it.
    if (origin === this.link.nodeId) return change.dot.seq <= this.#echoUpTo
    return origin === this.#options.selfId || !this.#theirPeers.has(origin)
  }

  /**
   * The LSN just before the oldest change the peer lacks (and will not get from its origin), or
   * a snapshot (with the first change the peer lacks that the log no longer holds, or null when
   * the peer is brand new and the history is long).
   */
  async #startCursor(): Promise<number | { lacks: Dot | null }> {
    const store = this.#options.store
    const end = store.lsn
    if (Object.keys(this.#theirVc).length === 0 && vcDistance(store.vc, {}) > this.#options.snapshotAfterChanges)
      return { lacks: null }
    let start = Infinity
    for (const [origin, seq] of Object.entries(store.vc) as [NodeId, number][]) {
      const from = vcGet(this.#theirVc, origin) + 1
      if (from > seq) continue
      const lsn = await store.lsnOfDot({ node: origin, seq: from })
      // Purged (or never in this log: this node joined a snapshot holding it): the peer needs a
      // snapshot, even for an origin it links to, which may have purged it as well.
      if (lsn === undefined) return { lacks: { node: origin, seq: from } }
      const skip =
        origin === this.link.nodeId
          ? this.#echoUpTo === 0
          : origin !== this.#options.selfId && this.#theirPeers.has(origin)
      if (skip) continue
      start = Math.min(start, lsn)
    }
    return start === Infinity ? end : start - 1
  }

  /**
   * Tells the peer it needs a snapshot and, once it consents (`snapshot-request`: the receiver
   * decides, docs/protocol.md "Snapshots"), offers one; if taken, streams it, then waits for the
   * peer's next `sync`. A peer that does not consent closes the link or syncs again.
   */
  async #sendSnapshot(lacks: Dot | null): Promise<void> {
    this.#snapshotRequested = false
    if (!this.link.send({ type: 'snapshot-needed', lacks })) return
    if (!(await this.#until(() => this.#snapshotRequested || this.#restart))) return
    if (!this.#snapshotRequested) return
    this.#snapshotRequested = false
    const snapshot = await this.#options.store.snapshot()
    try {
      this.#snapshotReply = null
      this.#snapshotAcked = 0
      // The offer does not wait for a count of the keys (a pass over every state: about a second
      // of a 100k-key join with three peers offering at once): it carries an estimate, one key
      // per change, and the last chunk the count (docs/protocol.md, "Snapshots").
      const estimate = vcDistance(snapshot.vc, {})
      if (!this.link.send({ type: 'snapshot-offer', vc: snapshot.vc, keys: estimate })) return
      this.#options.logger.info({ peer: this.link.nodeId, keys: estimate }, 'offering a snapshot')
      if (!(await this.#until(() => this.#snapshotReply !== null)) || this.#snapshotReply !== true) {
        // Refused (it is taking another one): its next `sync` says what it still lacks.
        this.#awaitSync()
        return
      }
      const sent = await this.#streamSnapshot(snapshot)
      if (sent === null) return
      this.link.send({ type: 'snapshot-end', chunks: sent.chunks })
      this.#options.onSnapshotSent?.(sent.keys)
      this.#awaitSync()
    } finally {
      await snapshot.close()
    }
  }

  /**
   * Sends every state in chunks, a window at a time. The last chunk carries the number of keys
   * (`keys`: the offer had an estimate; an empty chunk if the states ended on a full one). The
   * chunks and keys sent, or null if cut off.
   */
  async #streamSnapshot(snapshot: StoreSnapshot): Promise<{ chunks: number; keys: number } | null> {
    let seq = 0
    let keys = 0
    // A state larger than a chunk goes as parts (codec/peer.ts), so every chunk fits a frame.
    const chunker = new SnapshotChunker({ statesMax: SNAPSHOT_CHUNK_STATES, bytesMax: SNAPSHOT_CHUNK_BYTES })
    const flush = async (states: SnapshotChunkEntry[], counted?: number): Promise<boolean> => {
      seq++
      const total = counted === undefined ? {} : { keys: counted }
      if (!this.link.send({ type: 'snapshot-chunk', seq, states, ...total })) return false
      await this.link.drained()
      return this.#until(() => seq - this.#snapshotAcked < SNAPSHOT_WINDOW)
    }
    for (const space of SPACES) {
      for await (const [key, value] of snapshot.iterateRaw(space, {})) {
        keys++
        for (const chunk of chunker.push(space, key, value)) if (!(await flush(chunk))) return null
      }
    }
    if (!(await flush(chunker.finish() ?? [], keys))) return null
    return { chunks: seq, keys }
  }

  /**
   * Waits until `ready()` holds; false if the link ended or the session stopped. A `sync` does not
   * cut a snapshot off (a new node's link set changes while it receives one): the peer sends
   * another once it has joined the snapshot, and the cursor restarts from that.
   */
  async #until(ready: () => boolean): Promise<boolean> {
    while (!ready()) {
      if (this.#stopped || this.link.closed) return false
      await new Promise<void>((resolve) => (this.#wake = resolve))
    }
    return !(this.#stopped || this.link.closed)
  }

  /** After a snapshot was sent or refused: stream nothing until the peer's next `sync`. */
  #awaitSync(): void {
    this.#synced = false
    this.#restart = false
  }
}
