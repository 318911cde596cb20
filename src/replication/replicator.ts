/**
 * The replicator: one per node, the facade over replication's parts. It runs a `PeerSession` per
 * authenticated peer link (the protocol of protocol.ts), keeps what it knows of each peer across
 * link drops (peers.ts), feeds received changes through one causal buffer into the store
 * (inbound.ts), receives snapshots (snapshot-receiver.ts), and answers write concern
 * (write-concern.ts), stability (stability.ts) and lag (status.ts) questions.
 *
 * It touches no socket, timer or LevelDB: links, the store and the clock are interfaces passed
 * in, and time moves only through `now()` and `tick()`, so the simulator can drive it.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { vcGet, vcHasDot } from '../clock/index.js'
import type { PeerMessage } from '../codec/peer.js'
import { assert } from '../errors.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import { CAUSAL_BUFFER_BYTES_MAX_DEFAULT, CAUSAL_BUFFER_CHANGES_MAX_DEFAULT } from './causal-buffer.js'
import type { ReplicationCounters } from './inbound.js'
import { Inbound, newCounters } from './inbound.js'
import type { PeerLinkLike } from './link.js'
import type { Logger } from './logger.js'
import { SILENT_LOGGER } from './logger.js'
import { PeerSession } from './peer-session.js'
import { PeerBook, caughtUpWith, forgetCut, heardAck, heardSync, knownTo, usableAck } from './peers.js'
import type { ClaimContext } from './claims.js'
import { promoteClaims, takeClaim } from './claims.js'
import { DurableAcks } from './acks.js'
import { ForgottenMembers } from './forgotten.js'
import { SeqGuard } from './seq-guard.js'
import type { SnapshotStatus } from './snapshot-receiver.js'
import { SnapshotReceiver } from './snapshot-receiver.js'
import type { GcStatus } from './stability.js'
import { meetOverMembers } from './stability.js'
import type { PeerStatus } from './status.js'
import { peerStatus } from './status.js'
import { HolderWaiters } from './write-concern.js'

export type { PeerState, PeerStatus } from './status.js'
export type { LastSnapshot, SnapshotProgress, SnapshotStatus } from './snapshot-receiver.js'
export type { SeqGuardState, SeqGuardStatus } from './seq-guard.js'

export interface ReplicatorOptions {
  store: ReplicaStore
  now: () => number
  logger?: Logger
  /** Most changes in one `changes` frame. */
  frameChangesMax?: number
  /**
   * Most change bytes (by `approximateChangeBytes`) batched into one `changes` frame: half the
   * frame limit `FRAME_BYTES_MAX` (4 MiB), so the estimate's error never takes a frame past it.
   */
  batchBytesMax?: number
  bufferChangesMax?: number
  /** Most bytes of early changes the causal buffer holds (default 64 MiB); past it, as past the count. */
  bufferBytesMax?: number
  /** A peer lacking changes older than this is `catching-up` rather than `up`. */
  catchingUpAfterMs?: number
  /** A brand-new peer gets a snapshot rather than the log when this node holds more changes than this. */
  snapshotAfterChanges?: number
  /**
   * Every member of the cluster (this node may include itself). With it, `tick()` collects
   * garbage: the stable cut is the minimum over these members' acknowledgements, so a member
   * never heard from holds everything back. Without it, nothing is purged.
   */
  members?: () => readonly NodeId[]
  /** Log entries kept past garbage collection (a watch resumes from a cursor among them). Default 1000. */
  logRetainEntries?: number
  /**
   * After start, how long own writes wait for members that do not sync before they are taken
   * anyway (seq-guard.ts). Default 10 s.
   */
  seqGuardGraceMs?: number
  /**
   * False while `members` is not known yet (the node has not read its member set): until then the
   * seq guard cannot take "every other member synced" from an empty list. Default: always known.
   */
  membersKnown?: () => boolean
  /** Runs `run` once after `ms` (acks.ts gathers acks with it); without it, on the next `tick()`. */
  later?: (run: () => void, ms: number) => void
}

export class Replicator {
  readonly store: ReplicaStore
  readonly #options: Required<Omit<ReplicatorOptions, 'logger' | 'store' | 'seqGuardGraceMs' | 'later'>>
  readonly #logger: Logger
  readonly #sessions = new Map<NodeId, PeerSession>()
  readonly #peers = new PeerBook()
  readonly #inbound: Inbound
  readonly #snapshots: SnapshotReceiver
  readonly #waiters = new HolderWaiters((dot) => this.holders(dot))
  #closed = false
  /** Hears the Yjs awareness updates peers relay (node/yjs-rooms.ts): not replication, just passed up. */
  onAwareness: ((room: string, update: Uint8Array, from: NodeId) => void) | undefined
  readonly #forgotten = new ForgottenMembers()
  #gc: GcStatus = { stableCut: {}, heldByAll: {}, logPurged: 0, tombstonesPurged: 0, passes: 0 }
  #gcRunning = false
  readonly #gcEnabled: boolean
  readonly #counters: ReplicationCounters = newCounters()
  readonly #unsubscribe: () => void
  readonly #guard: SeqGuard
  readonly #claims: ClaimContext
  readonly #acks: DurableAcks

  constructor(options: ReplicatorOptions) {
    this.store = options.store
    this.#logger = options.logger ?? SILENT_LOGGER
    this.#options = {
      now: options.now,
      frameChangesMax: options.frameChangesMax ?? 512,
      batchBytesMax: options.batchBytesMax ?? 2 * 1024 * 1024,
      bufferChangesMax: options.bufferChangesMax ?? CAUSAL_BUFFER_CHANGES_MAX_DEFAULT,
      bufferBytesMax: options.bufferBytesMax ?? CAUSAL_BUFFER_BYTES_MAX_DEFAULT,
      catchingUpAfterMs: options.catchingUpAfterMs ?? 1000,
      snapshotAfterChanges: options.snapshotAfterChanges ?? 10_000,
      members: options.members ?? (() => []),
      logRetainEntries: options.logRetainEntries ?? 1000,
      membersKnown: options.membersKnown ?? (() => true),
    }
    this.#gcEnabled = options.members !== undefined
    this.#guard = new SeqGuard({
      self: this.store.nodeId,
      startSeq: vcGet(this.store.vc, this.store.nodeId),
      now: options.now,
      logger: this.#logger,
      ...(options.seqGuardGraceMs === undefined ? {} : { graceMs: options.seqGuardGraceMs }),
      input: () => this.#guardInput(),
    })
    this.#acks = new DurableAcks({
      ...options, // its store, now() and later()
      logger: this.#logger,
      links: () => [...this.#sessions.values()].map((session) => session.link),
      closed: () => this.#closed,
    })
    this.#claims = {
      store: this.store,
      peers: this.#peers,
      counters: this.#counters,
      logger: this.#logger,
      guard: this.#guard,
    }
    this.store.guardOwnWrites(() => this.#guard.checkWrite())
    this.#inbound = new Inbound({
      store: this.store,
      logger: this.#logger,
      awaited: (change) => this.#acks.awaited(change),
      bufferChangesMax: this.#options.bufferChangesMax,
      bufferBytesMax: this.#options.bufferBytesMax,
      counters: this.#counters,
      forgottenAfter: (node) => this.#forgotten.cuts.get(node),
      takesOwn: () => this.#guard.state === 'recovering',
      links: () => [...this.#sessions.values()].map((session) => session.link),
      onApplied: () => {
        this.#guard.refresh()
        promoteClaims(this.#claims)
        this.#acks.whenDurable()
        this.#waiters.check()
      },
    })
    this.#snapshots = new SnapshotReceiver({
      store: this.store,
      logger: this.#logger,
      now: this.#options.now,
      onJoined: () => this.#counters.snapshotsReceived++,
      onRefused: () => this.#counters.snapshotsRefused++,
      recovering: () => this.#guard.state === 'recovering',
      split: () => this.#guard.state === 'diverged' || this.#guard.state === 'conflict',
    })
    this.#unsubscribe = options.store.onCommit((entries) => {
      for (const session of this.#sessions.values()) session.offer(entries)
    })
  }

  get counters(): Readonly<Record<string, number>> {
    return { ...this.#counters, buffered: this.#inbound.buffered, bufferedBytes: this.#inbound.bufferedBytes }
  }

  /**
   * The seqs of `origin`'s changes waiting in the causal buffer, ascending: what `counters.buffered`
   * counts, by origin (a forgotten member's changes past its cut leave when it is forgotten).
   */
  readonly bufferedOf = (origin: NodeId): number[] => this.#inbound.bufferedOf(origin)

  /** Node ids with a live, authenticated link. */
  linkedPeers(): NodeId[] {
    return [...this.#sessions.keys()].sort()
  }

  /** Peers this node has ever linked with on this run (forgotten ones excepted). */
  readonly knownPeerIds = (): NodeId[] => this.#peers.ids()

  /** Linked peers with the URL each said it is reached at. */
  linkedPeerUrls(): { nodeId: NodeId; url: string | null }[] {
    return [...this.#sessions.values()].map((session) => ({ nodeId: session.link.nodeId, url: session.link.url }))
  }

  /**
   * Takes a new authenticated link. One link per peer is the transport's rule, not this one's: the
   * transport makes the links, so it alone can pick which of two to keep so that both sides keep
   * the same one (src/transport/core.ts, `keepsNewLink`). It closes the loser before it hands the
   * winner over, and a link's close listeners run at once, so a live session for this peer here
   * means a transport broke the rule: a bug, not an operating error.
   */
  addLink(link: PeerLinkLike): void {
    // Admission is written before a link reaches the replicator, and the transport may close the
    // link (for a newer one of the same peer) meanwhile: a link that ended on the way goes nowhere.
    if (link.closed) return
    if (this.#closed) {
      link.close(1001, 'node closing')
      return
    }
    if (this.#forgotten.has(link.nodeId)) {
      this.#logger.warn({ peer: link.nodeId }, 'a forgotten node tried to link; refused')
      link.close(4403, 'this node was forgotten by the cluster')
      return
    }
    const existing = this.#sessions.get(link.nodeId)
    assert(
      existing === undefined || existing.link.closed,
      `two live links to ${link.nodeId}: the transport keeps one link per peer`,
    )
    const session = this.#newSession(link)
    this.#sessions.set(link.nodeId, session)
    this.#peers.info(link.nodeId, link.url).lastSeenMs = this.#options.now()
    link.onClose((code, reason) => this.#linkClosed(session, code, reason))
    this.#inbound.linked(link)
    this.#logger.info({ peer: link.nodeId, url: link.url, direction: link.direction }, 'peer link up')
    session.start()
    this.#broadcastSync()
  }

  /**
   * The seq guard, brought up to date: whether this node may make changes of its own now, and why
   * not (seq-guard.ts): not after a start until its peers said how much of it they hold, nor while
   * they send back changes of its own it lost, nor ever once its id names two histories.
   */
  get seqGuard(): SeqGuard {
    this.#guard.refresh()
    return this.#guard
  }

  /** Called about once a second: resends state where a resend is due, refreshes acks, collects garbage. */
  tick(): void {
    this.#guard.refresh()
    if (this.#inbound.resyncNeeded) {
      this.#inbound.resyncNeeded = false
      this.#broadcastSync()
    }
    this.#acks.tick()
    if (this.#gcEnabled && !this.#gcRunning && !this.#closed) {
      this.#gcRunning = true
      void this.collectGarbage()
        .catch((error: unknown) =>
          this.#logger.warn({ err: String(error) }, 'garbage collection failed; it is tried again'),
        )
        .finally(() => (this.#gcRunning = false))
    }
  }

  /** The forget cut of `nodeId`: the highest seq of it this node or a surviving peer is known to hold. */
  forgetCut(nodeId: NodeId): number {
    return forgetCut(this.store.vc, nodeId, this.#peers.values())
  }

  /** The first peer that closed a link with 4403 ("this node was forgotten"), or null. */
  get forgottenBy(): { peer: NodeId; atMs: number } | null {
    return this.#forgotten.by
  }

  /**
   * Forgets members for good: their links are refused (4403), their changes after `seq` (the last
   * one this node had when they were forgotten) are refused and counted, and they no longer count
   * for write concern or hold back garbage collection.
   */
  setForgotten(
    forgotten: ReadonlyMap<NodeId, number>,
    forgetDots: ReadonlyMap<NodeId, readonly Dot[]> = new Map(),
  ): void {
    this.#forgotten.dots = forgetDots
    for (const [nodeId, seq] of forgotten) {
      const info = this.#peers.get(nodeId)
      if (!this.#forgotten.record(nodeId, seq, info === undefined ? undefined : usableAck(info, this.store.vc)))
        continue
      this.#inbound.forget(nodeId, seq)
      this.#peers.delete(nodeId)
      const session = this.#sessions.get(nodeId)
      if (session !== undefined) session.link.close(4403, 'this node was forgotten by the cluster')
      this.#logger.warn({ peer: nodeId, seq }, 'member forgotten')
    }
    this.#waiters.check()
  }

  /**
   * The stable cut (docs/protocol.md, "Garbage collection"): per member X, the newest VC X
   * acknowledged whose X entry this node has applied; the meet of those and this node's own VC.
   */
  stableCut(): VectorClock {
    const own = this.store.vc
    return meetOverMembers(own, this.#stabilityMembers(true), (id) => {
      const info = this.#peers.get(id)
      return info === undefined ? this.#forgotten.lastAcks.get(id) : usableAck(info, own)
    })
  }

  /** What every member holds: the meet of what each is known to have. */
  heldByAll(): VectorClock {
    const own = this.store.vc
    return meetOverMembers(own, this.#stabilityMembers(false), (id) => {
      const info = this.#peers.get(id)
      return info === undefined ? undefined : knownTo(info, own)
    })
  }

  /** One garbage collection pass: purges log entries every member holds and stable tombstones. */
  async collectGarbage(): Promise<GcStatus> {
    const stableCut = this.stableCut()
    const heldByAll = this.heldByAll()
    const result = await this.store.purge(heldByAll, stableCut, this.#options.logRetainEntries)
    this.#gc = {
      stableCut,
      heldByAll,
      logPurged: this.#gc.logPurged + result.logPurged,
      tombstonesPurged: this.#gc.tombstonesPurged + result.tombstonesPurged,
      passes: this.#gc.passes + 1,
    }
    return this.#gc
  }

  get gcStatus(): GcStatus {
    return this.#gc
  }

  /** The snapshot being received, and the last one joined. */
  snapshotStatus(): SnapshotStatus {
    return this.#snapshots.status()
  }

  /** How many members (this node included) hold the change `dot`. */
  holders(dot: Dot): number {
    const own = this.store.vc
    let count = vcHasDot(this.store.durableVc, dot) ? 1 : 0
    for (const info of this.#peers.values()) if (vcHasDot(knownTo(info, own), dot)) count++
    return count
  }

  /**
   * Before a commit that will wait for acks (`w` past 1): until the returned release, frames this
   * node sends ask to be acked at once, not gathered (acks.ts), the one carrying that write included.
   */
  readonly expectAcks = (): (() => void) => this.#acks.expect()

  /** Resolves once `required` members hold `dot`. `cancel` drops the wait (the caller's timeout). */
  waitForHolders(dot: Dot, required: number): { promise: Promise<void>; cancel: () => void } {
    return this.#waiters.wait(dot, required)
  }

  /**
   * True once this node has caught up with what every peer it has synced with had at that
   * moment, and at least one peer has synced. A brand-new node waits for this before it writes.
   */
  caughtUp(): boolean {
    return caughtUpWith(this.#peers.values(), this.store.vc)
  }

  /** Each known peer's lag and state, and each configured URL no known peer is behind (status.ts). */
  peerStatus(configured: readonly { url: string; nodeId: NodeId | null }[]): Promise<PeerStatus[]> {
    const input = {
      store: this.store,
      peers: this.#peers,
      now: this.#options.now,
      isLinked: (nodeId: NodeId) => this.#sessions.has(nodeId),
      catchingUpAfterMs: this.#options.catchingUpAfterMs,
    }
    return peerStatus(input, configured)
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#unsubscribe()
    for (const session of this.#sessions.values()) {
      session.stop()
      session.link.close(1001, 'node closing')
    }
    this.#sessions.clear()
    await this.#inbound.settled()
    this.#waiters.releaseAll()
  }

  /** What the seq guard needs to move on: the node's own seq, and whether every other member synced. */
  #guardInput(): { held: number; allSynced: boolean } {
    const others = this.#options.members().filter((id) => id !== this.store.nodeId && !this.#forgotten.has(id))
    const synced = (id: NodeId): boolean => (this.#peers.get(id)?.firstSyncVc ?? null) !== null
    return {
      held: vcGet(this.store.vc, this.store.nodeId),
      allSynced: this.#options.membersKnown() && others.every(synced),
    }
  }

  #newSession(link: PeerLinkLike): PeerSession {
    const session: PeerSession = new PeerSession({
      link,
      store: this.store,
      selfId: this.store.nodeId,
      frameChangesMax: this.#options.frameChangesMax,
      batchBytesMax: this.#options.batchBytesMax,
      logger: this.#logger,
      onMessage: (message) => this.#onMessage(session, message),
      acksWanted: () => this.#acks.expected,
      onSent: (changes) => {
        this.#counters.framesSent++
        this.#counters.changesSent += changes
      },
      snapshotAfterChanges: this.#options.snapshotAfterChanges,
      onSnapshotSent: (keys) => {
        this.#counters.snapshotsSent++
        this.#logger.info({ peer: link.nodeId, keys }, 'snapshot sent')
      },
    })
    return session
  }

  #linkClosed(session: PeerSession, code: number, reason: string): void {
    const link = session.link
    // A 4403 this node sent itself (it forgot the peer) says nothing about this node.
    // Said once: every redial meets the same refusal (the node's wiring turns read-only on it).
    if (code === 4403 && !this.#forgotten.has(link.nodeId) && this.#forgotten.by === null) {
      this.#forgotten.by = { peer: link.nodeId, atMs: this.#options.now() }
      this.#logger.warn(
        { peer: link.nodeId, reason },
        'a peer closed the link with 4403: the cluster forgot this node, and refuses its links and changes',
      )
    }
    if (this.#sessions.get(link.nodeId) === session) {
      this.#sessions.delete(link.nodeId)
      this.#logger.info({ peer: link.nodeId, code, reason }, 'peer link closed')
      this.#broadcastSync()
    }
    if (this.#snapshots.from === link.nodeId) this.#snapshots.abandon('the link ended')
    if (!this.#sessions.has(link.nodeId)) this.#snapshots.forgetLink(link.nodeId)
    session.stop()
  }

  #onMessage(session: PeerSession, message: PeerMessage): void {
    const info = this.#peers.info(session.link.nodeId, null)
    info.lastSeenMs = this.#options.now()
    switch (message.type) {
      case 'sync':
      case 'ack': {
        // An ack names only what moved since the last ack or sync on this link (acks.ts).
        const vc = message.type === 'ack' ? session.ackedBy(message.vc) : message.vc
        const claim = takeClaim(this.#claims, session.link.nodeId, message.type, vc)
        if (message.type === 'ack') heardAck(info, claim)
        else heardSync(info, claim, vc)
        if (message.type === 'ack') session.onAck(vc)
        else session.onSync(vc, message.peers)
        this.#waiters.check()
        return
      }
      case 'snapshot-needed':
        if (!this.#snapshots.needed(session.link, message.lacks)) this.#syncTo(session)
        return
      case 'snapshot-request':
        session.onSnapshotRequest()
        return
      case 'changes':
        if (message.ack === true) this.#acks.want(session.link, message.changes)
        this.#inbound.receive(message.changes, session.link)
        return
      case 'snapshot-reply':
        session.onSnapshotReply(message.accept)
        return
      case 'snapshot-ack':
        session.onSnapshotAck(message.seq)
        return
      case 'snapshot-offer':
        this.#snapshots.offer(session.link, message.vc, message.keys)
        return
      case 'snapshot-chunk':
        this.#snapshots.chunk(session.link, message)
        return
      case 'snapshot-end':
        this.#onSnapshotEnd(session)
        return
      case 'awareness':
        return this.onAwareness?.(message.room, message.update, session.link.nodeId)
    }
  }

  /** Joins the snapshot in turn with the changes being applied, then restarts every peer's cursor. */
  #onSnapshotEnd(session: PeerSession): void {
    const join = this.#snapshots.end(session.link)
    if (join === null) return
    this.#inbound.after(() =>
      join().finally(() => {
        this.#inbound.catchUp()
        promoteClaims(this.#claims)
        // Every peer's cursor restarts from what this node has now (the sender waits for this),
        // and so does every cursor of this node's: the log does not hold what the snapshot brought.
        this.#broadcastSync()
        for (const each of this.#sessions.values()) each.rescan()
        this.#inbound.drain()
        this.#waiters.check()
      }),
    )
  }

  /** The members stability waits for; for the stable cut (`unsettled`), forgotten ones not yet settled too. */
  #stabilityMembers(unsettled: boolean): Set<NodeId> {
    const own = this.store.vc
    const cluster = { own, members: this.#options.members(), peers: this.#peers, self: this.store.nodeId }
    return this.#forgotten.stabilityMembers(unsettled, cluster)
  }

  #broadcastSync(): void {
    for (const session of this.#sessions.values()) this.#syncTo(session)
  }

  /** A sync claims what is durable, as an ack does: it may count for write concern and GC too. */
  #syncTo(session: PeerSession): void {
    const vc = this.store.durableVc
    this.#snapshots.said(session.link.nodeId, vc)
    this.#acks.synced(session.link, vc)
    session.link.send({ type: 'sync', vc, peers: this.linkedPeers() })
  }
}
