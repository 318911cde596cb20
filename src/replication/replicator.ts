/**
 * The replicator: one per node. It runs a session per authenticated peer link (the protocol of
 * protocol.ts), keeps what it knows of each peer across link drops (its acknowledged vector
 * clock, whom it is linked to, when it was last heard), feeds received changes through one
 * causal buffer into the store in causal order, and answers write concern and lag questions.
 *
 * It touches no socket, timer or LevelDB: links, the store and the clock are interfaces passed
 * in, and time moves only through `now()` and `tick()`, so the simulator can drive it.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { vcCovers, vcDistance, vcGet, vcHasDot, vcJoin, vcMeet } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import type { PeerMessage, SnapshotChunkMessage } from '../codec/peer.js'
import type { Space } from '../crdt/index.js'
import type { ReplicaStore } from '../storage/replica-store.js'
import type { LogEntry } from '../storage/store.js'
import type { PeerLinkLike } from './link.js'
import { CausalBuffer } from './causal-buffer.js'
import { Session } from './session.js'
import type { Logger } from './logger.js'
import { SILENT_LOGGER } from './logger.js'

export type PeerState = 'up' | 'catching-up' | 'down'

export interface PeerStatus {
  nodeId: NodeId | null
  url: string | null
  state: PeerState
  /** Changes this node has that the peer has not acknowledged. */
  lagChanges: number
  /** Age of the oldest change the peer lacks (0 when it lacks none). */
  lagMs: number
  /** Milliseconds since the peer was last heard from, or null if never. */
  lastSeenMs: number | null
}

export interface ReplicatorOptions {
  store: ReplicaStore
  now: () => number
  logger?: Logger
  /** Most changes in one `changes` frame. */
  frameChangesMax?: number
  /** Most value bytes in one `changes` frame (the frame limit is 4 MiB). */
  frameBytesMax?: number
  bufferChangesMax?: number
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
}

/** A snapshot this node is receiving. */
export interface SnapshotProgress {
  from: NodeId
  keysTotal: number
  keysReceived: number
  startedMs: number
}

/** What the last garbage collection pass found and did. */
export interface GcStatus {
  /** Dots at or below it are stable: no change concurrent with them can arrive. */
  stableCut: VectorClock
  /** Every member holds the changes at or below it: their log entries may go. */
  heldByAll: VectorClock
  logPurged: number
  tombstonesPurged: number
  passes: number
}

/** What this node knows of a peer, kept across link drops. */
interface PeerInfo {
  nodeId: NodeId
  url: string | null
  acked: VectorClock
  /** Recent acknowledged VCs, oldest first: the stable cut takes the newest usable one. */
  ackHistory: VectorClock[]
  lastSeenMs: number | null
  /** The peer's VC when it first synced with us on this run; joining waits to cover it. */
  firstSyncVc: VectorClock | null
}

interface HolderWaiter {
  dot: Dot
  required: number
  resolve: () => void
}

export class Replicator {
  readonly store: ReplicaStore
  readonly #options: Required<Omit<ReplicatorOptions, 'logger' | 'store'>>
  readonly #logger: Logger
  readonly #sessions = new Map<NodeId, Session>()
  readonly #peers = new Map<NodeId, PeerInfo>()
  readonly #buffer: CausalBuffer
  /** The store's VC plus changes handed to the store and not yet durable. */
  #pendingVc: VectorClock
  #applying: Promise<void> = Promise.resolve()
  #resyncNeeded = false
  #lastAckedVc: VectorClock = {}
  #waiters = new Set<HolderWaiter>()
  #closed = false
  /** Forgotten members, with the last of their changes that stays (later ones are refused). */
  #forgotten = new Map<NodeId, number>()
  #receiving: (SnapshotProgress & { vc: VectorClock; failed: boolean }) | null = null
  /** Every write to the snapshot stage, in order: a dropped snapshot's writes end before the next one clears the stage. */
  #stageWork: Promise<void> = Promise.resolve()
  #lastSnapshot: { from: NodeId; keys: number; ms: number } | null = null
  #gc: GcStatus = { stableCut: {}, heldByAll: {}, logPurged: 0, tombstonesPurged: 0, passes: 0 }
  #gcRunning = false
  readonly #gcEnabled: boolean
  readonly #counters = {
    changesReceived: 0,
    changesApplied: 0,
    duplicates: 0,
    bufferFull: 0,
    refused: 0,
    refusedForgotten: 0,
    framesSent: 0,
    changesSent: 0,
    snapshotsSent: 0,
    snapshotsReceived: 0,
  }
  readonly #unsubscribe: () => void

  constructor(options: ReplicatorOptions) {
    this.store = options.store
    this.#logger = options.logger ?? SILENT_LOGGER
    this.#options = {
      now: options.now,
      frameChangesMax: options.frameChangesMax ?? 512,
      frameBytesMax: options.frameBytesMax ?? 2 * 1024 * 1024,
      bufferChangesMax: options.bufferChangesMax ?? 20_000,
      catchingUpAfterMs: options.catchingUpAfterMs ?? 1000,
      snapshotAfterChanges: options.snapshotAfterChanges ?? 10_000,
      members: options.members ?? (() => []),
      logRetainEntries: options.logRetainEntries ?? 1000,
    }
    this.#gcEnabled = options.members !== undefined
    this.#buffer = new CausalBuffer(this.#options.bufferChangesMax)
    this.#pendingVc = options.store.vc
    this.#unsubscribe = options.store.onCommit((entries) => {
      for (const session of this.#sessions.values()) session.offer(entries)
    })
  }

  get counters(): Readonly<Record<string, number>> {
    return { ...this.#counters, buffered: this.#buffer.size }
  }

  /** Node ids with a live, authenticated link. */
  linkedPeers(): NodeId[] {
    return [...this.#sessions.keys()].sort()
  }

  /** Peers this node has ever linked with on this run. */
  knownPeers(): number {
    return this.#peers.size
  }

  knownPeerIds(): NodeId[] {
    return [...this.#peers.keys()]
  }

  /** Linked peers with the URL each said it is reached at. */
  linkedPeerUrls(): { nodeId: NodeId; url: string | null }[] {
    return [...this.#sessions.values()].map((session) => ({ nodeId: session.link.nodeId, url: session.link.url }))
  }

  /** Takes a new authenticated link. Of two links with one peer, both sides keep the same one. */
  addLink(link: PeerLinkLike): void {
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
    if (existing !== undefined) {
      if (dialerOf(existing.link, this.store.nodeId) <= dialerOf(link, this.store.nodeId)) {
        link.close(4000, 'duplicate link')
        return
      }
      existing.link.close(4000, 'duplicate link')
      this.#sessions.delete(link.nodeId)
    }
    const info = this.#peerInfo(link.nodeId, link.url)
    const session = new Session({
      link,
      store: this.store,
      selfId: this.store.nodeId,
      frameChangesMax: this.#options.frameChangesMax,
      frameBytesMax: this.#options.frameBytesMax,
      logger: this.#logger,
      onMessage: (message) => this.#onMessage(session, message),
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
    this.#sessions.set(link.nodeId, session)
    info.lastSeenMs = this.#options.now()
    link.onClose((code, reason) => {
      if (code === 4403)
        this.#logger.error(
          { peer: link.nodeId, reason },
          'this node was forgotten by the cluster: the peer refuses its links and changes',
        )
      if (this.#sessions.get(link.nodeId) === session) {
        this.#sessions.delete(link.nodeId)
        this.#logger.info({ peer: link.nodeId, code, reason }, 'peer link closed')
        this.#broadcastSync()
      }
      if (this.#receiving?.from === link.nodeId) this.#abandonSnapshot('the link ended')
      session.stop()
    })
    this.#logger.info({ peer: link.nodeId, url: link.url, direction: link.direction }, 'peer link up')
    session.start()
    this.#broadcastSync()
  }

  /** Called about once a second: resends state where a resend is due, refreshes acks, collects garbage. */
  tick(): void {
    if (this.#resyncNeeded) {
      this.#resyncNeeded = false
      this.#broadcastSync()
    }
    this.#sendAcksIfChanged()
    if (this.#gcEnabled && !this.#gcRunning && !this.#closed) {
      this.#gcRunning = true
      void this.collectGarbage()
        .catch((error: unknown) =>
          this.#logger.warn({ err: String(error) }, 'garbage collection failed; it is tried again'),
        )
        .finally(() => (this.#gcRunning = false))
    }
  }

  /**
   * Forgets members for good: their links are refused (4403), their changes after `seq` (the last
   * one this node had when they were forgotten) are refused and counted, and they no longer count
   * for write concern or hold back garbage collection.
   */
  setForgotten(forgotten: ReadonlyMap<NodeId, number>): void {
    for (const [nodeId, seq] of forgotten) {
      if (this.#forgotten.get(nodeId) === seq) continue
      this.#forgotten.set(nodeId, seq)
      this.#peers.delete(nodeId)
      const session = this.#sessions.get(nodeId)
      if (session !== undefined) session.link.close(4403, 'this node was forgotten by the cluster')
      this.#logger.warn({ peer: nodeId, seq }, 'member forgotten')
    }
    this.#checkWaiters()
  }

  isForgotten(nodeId: NodeId): boolean {
    return this.#forgotten.has(nodeId)
  }

  /**
   * The stable cut (docs/protocol.md, "Garbage collection"): per member X, the newest VC X acknowledged whose X entry
   * this node has applied; the pointwise minimum of those and this node's own VC. A member never
   * heard from on this run gives `{}`: nothing is stable until every member has answered.
   */
  stableCut(): VectorClock {
    let cut = this.store.vc
    for (const id of this.#gcMembers()) {
      const info = this.#peers.get(id)
      cut = vcMeet(cut, info === undefined ? {} : this.#usableAck(info))
    }
    return cut
  }

  /** What every member holds: the minimum of what each is known to have. */
  heldByAll(): VectorClock {
    let held = this.store.vc
    for (const id of this.#gcMembers()) {
      const info = this.#peers.get(id)
      held = vcMeet(held, info === undefined ? {} : this.#knownTo(info))
    }
    return held
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
  snapshotStatus(): { receiving: SnapshotProgress | null; last: { from: NodeId; keys: number; ms: number } | null } {
    const receiving = this.#receiving
    return {
      receiving:
        receiving === null
          ? null
          : {
              from: receiving.from,
              keysTotal: receiving.keysTotal,
              keysReceived: receiving.keysReceived,
              startedMs: receiving.startedMs,
            },
      last: this.#lastSnapshot,
    }
  }

  /** How many members (this node included) hold the change `dot`. */
  holders(dot: Dot): number {
    let count = vcHasDot(this.store.vc, dot) ? 1 : 0
    for (const info of this.#peers.values()) if (vcHasDot(this.#knownTo(info), dot)) count++
    return count
  }

  /** Resolves once `required` members hold `dot`. `cancel` drops the wait (the caller's timeout). */
  waitForHolders(dot: Dot, required: number): { promise: Promise<void>; cancel: () => void } {
    let waiter: HolderWaiter | undefined
    const promise = new Promise<void>((resolve) => {
      if (this.holders(dot) >= required) {
        resolve()
        return
      }
      waiter = { dot, required, resolve }
      this.#waiters.add(waiter)
    })
    return { promise, cancel: () => (waiter === undefined ? undefined : void this.#waiters.delete(waiter)) }
  }

  /**
   * True once this node has caught up with what every peer it has synced with had at that
   * moment, and at least one peer has synced. A brand-new node waits for this before it writes.
   */
  caughtUp(): boolean {
    let synced = 0
    for (const info of this.#peers.values()) {
      if (info.firstSyncVc === null) continue
      synced++
      if (!vcCovers(this.store.vc, info.firstSyncVc)) return false
    }
    return synced > 0
  }

  /**
   * Each peer this node has linked with, and each configured URL behind which no such peer has
   * been seen yet (`nodeId: null`, down). `configured` pairs each URL with the node last seen
   * behind it, so a peer reached at another URL than the one it advertises is listed once.
   */
  async peerStatus(configured: readonly { url: string; nodeId: NodeId | null }[]): Promise<PeerStatus[]> {
    const out: PeerStatus[] = []
    const seenUrls = new Set<string>()
    for (const info of [...this.#peers.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))) {
      if (info.url !== null) seenUrls.add(info.url)
      const known = this.#knownTo(info)
      const lagChanges = vcDistance(this.store.vc, known)
      const lagMs = lagChanges === 0 ? 0 : await this.#oldestMissingAgeMs(known, this.#options.now())
      // Read the clock after the lookups above: a message may have been heard meanwhile.
      const now = this.#options.now()
      const linked = this.#sessions.has(info.nodeId)
      const state: PeerState = !linked ? 'down' : lagMs > this.#options.catchingUpAfterMs ? 'catching-up' : 'up'
      const lastSeenMs = info.lastSeenMs === null ? null : Math.max(0, now - info.lastSeenMs)
      out.push({ nodeId: info.nodeId, url: info.url, state, lagChanges, lagMs, lastSeenMs })
    }
    for (const { url, nodeId } of configured) {
      if (seenUrls.has(url) || (nodeId !== null && this.#peers.has(nodeId))) continue
      out.push({
        nodeId: null,
        url,
        state: 'down',
        lagChanges: vcDistance(this.store.vc, {}),
        lagMs: 0,
        lastSeenMs: null,
      })
    }
    return out
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#unsubscribe()
    for (const session of this.#sessions.values()) {
      session.stop()
      session.link.close(1001, 'node closing')
    }
    this.#sessions.clear()
    await this.#applying
    for (const waiter of this.#waiters) waiter.resolve()
    this.#waiters.clear()
  }

  /** What a peer is known to hold: what it acknowledged, and every change it made itself. */
  #knownTo(info: PeerInfo): VectorClock {
    const own = vcGet(this.store.vc, info.nodeId)
    return own > vcGet(info.acked, info.nodeId) ? vcJoin(info.acked, { [info.nodeId]: own }) : info.acked
  }

  #peerInfo(nodeId: NodeId, url: string | null): PeerInfo {
    let info = this.#peers.get(nodeId)
    if (info === undefined) {
      info = { nodeId, url, acked: {}, ackHistory: [], lastSeenMs: null, firstSyncVc: null }
      this.#peers.set(nodeId, info)
    }
    if (url !== null) info.url = url
    return info
  }

  #onMessage(session: Session, message: PeerMessage): void {
    const info = this.#peerInfo(session.link.nodeId, null)
    info.lastSeenMs = this.#options.now()
    switch (message.type) {
      case 'sync':
        // A sync is the peer's whole VC now: it replaces what this node believed (a peer that lost
        // unsynced changes in a power loss holds less than it once acknowledged).
        info.acked = message.vc
        info.ackHistory = [message.vc]
        if (info.firstSyncVc === null) info.firstSyncVc = message.vc
        session.onSync(message.vc, message.peers)
        this.#checkWaiters()
        return
      case 'ack':
        info.acked = vcJoin(info.acked, message.vc)
        info.ackHistory.push(message.vc)
        if (info.ackHistory.length > ACK_HISTORY_MAX) info.ackHistory.shift()
        session.onAck(message.vc)
        this.#checkWaiters()
        return
      case 'changes':
        this.#receive(message.changes)
        return
      case 'snapshot-reply':
        session.onSnapshotReply(message.accept)
        return
      case 'snapshot-ack':
        session.onSnapshotAck(message.seq)
        return
      case 'snapshot-offer':
        this.#onSnapshotOffer(session, message.vc, message.keys)
        return
      case 'snapshot-chunk':
        this.#onSnapshotChunk(session, message)
        return
      case 'snapshot-end':
        this.#onSnapshotEnd(session)
        return
    }
  }

  #onSnapshotOffer(session: Session, vc: VectorClock, keys: number): void {
    const from = session.link.nodeId
    if (this.#receiving !== null && this.#receiving.from !== from) {
      session.link.send({ type: 'snapshot-reply', accept: false })
      return
    }
    if (this.#receiving !== null) this.#abandonSnapshot('the sender offered a new one')
    this.#stageWork = this.#stageWork
      .then(() => this.store.clearStage())
      .catch((error: unknown) => this.#logger.warn({ err: String(error) }, 'could not clear the snapshot stage'))
    this.#receiving = { from, vc, keysTotal: keys, keysReceived: 0, startedMs: this.#options.now(), failed: false }
    this.#logger.info({ peer: from, keys }, 'receiving a snapshot')
    session.link.send({ type: 'snapshot-reply', accept: true })
  }

  #onSnapshotChunk(session: Session, message: SnapshotChunkMessage): void {
    const receiving = this.#receiving
    if (receiving === null || receiving.from !== session.link.nodeId) return
    this.#stageWork = this.#stageWork.then(async () => {
      if (receiving.failed) return
      try {
        await this.store.stageSnapshot(message.states as readonly (readonly [Space, string, Uint8Array])[])
        // Progress counts states on this node's disk, not merely received.
        receiving.keysReceived += message.states.length
        session.link.send({ type: 'snapshot-ack', seq: message.seq })
      } catch (error) {
        receiving.failed = true
        this.#logger.warn(
          { peer: receiving.from, err: String(error), code: (error as { code?: string }).code },
          'a snapshot chunk was refused; the snapshot is dropped',
        )
        this.#abandonSnapshot('a chunk was refused')
        session.link.close(1008, 'bad snapshot chunk')
      }
    })
  }

  #onSnapshotEnd(session: Session): void {
    const receiving = this.#receiving
    if (receiving === null || receiving.from !== session.link.nodeId) return
    const done = this.#stageWork.then(async () => {
      if (receiving.failed || this.#receiving !== receiving) return
      await this.store.applyStagedSnapshot(receiving.vc)
      const ms = this.#options.now() - receiving.startedMs
      this.#lastSnapshot = { from: receiving.from, keys: receiving.keysReceived, ms }
      this.#counters.snapshotsReceived++
      this.#logger.info({ peer: receiving.from, keys: receiving.keysReceived, ms, vc: receiving.vc }, 'snapshot joined')
    })
    this.#stageWork = done.catch(() => undefined)
    this.#applying = this.#applying.then(() =>
      done
        .catch((error: unknown) =>
          this.#logger.error({ peer: receiving.from, err: String(error) }, 'joining a snapshot failed'),
        )
        .finally(() => {
          if (this.#receiving === receiving) this.#receiving = null
          this.#pendingVc = vcJoin(this.#pendingVc, this.store.vc)
          // Every peer's cursor restarts from what this node has now (the sender waits for this).
          this.#broadcastSync()
          this.#drain()
          this.#checkWaiters()
        }),
    )
  }

  #abandonSnapshot(why: string): void {
    const receiving = this.#receiving
    if (receiving === null) return
    receiving.failed = true
    this.#receiving = null
    this.#logger.warn({ peer: receiving.from, why }, 'snapshot dropped')
    this.#stageWork = this.#stageWork.then(() => this.store.clearStage()).catch(() => undefined)
  }

  /** Members that count for garbage collection: the configured set and every peer heard on this run. */
  #gcMembers(): Set<NodeId> {
    const ids = new Set<NodeId>(this.#options.members())
    for (const id of this.#peers.keys()) ids.add(id)
    ids.delete(this.store.nodeId)
    for (const id of this.#forgotten.keys()) ids.delete(id)
    return ids
  }

  /** The newest acknowledgement of `info`'s node whose own entry this node has applied. */
  #usableAck(info: PeerInfo): VectorClock {
    const applied = vcGet(this.store.vc, info.nodeId)
    for (let index = info.ackHistory.length - 1; index >= 0; index--) {
      const ack = info.ackHistory[index] as VectorClock
      if (vcGet(ack, info.nodeId) <= applied) {
        // Older ones are never needed again: this one (or a newer one) will do from now on.
        info.ackHistory.splice(0, index)
        return ack
      }
    }
    return {}
  }

  #receive(changes: readonly Change[]): void {
    // The store's VC moves with local commits too: what this node wrote is applied.
    this.#pendingVc = vcJoin(this.#pendingVc, this.store.vc)
    for (const change of changes) {
      this.#counters.changesReceived++
      const forgottenAfter = this.#forgotten.get(change.dot.node)
      if (forgottenAfter !== undefined && change.dot.seq > forgottenAfter) {
        if (this.#counters.refusedForgotten++ === 0 || this.#counters.refusedForgotten % 1000 === 0) {
          this.#logger.warn(
            {
              origin: change.dot.node,
              seq: change.dot.seq,
              code: 'MESHKV_ERR_FORGOTTEN',
              refused: this.#counters.refusedForgotten,
            },
            'a change from a forgotten member was refused',
          )
        }
        continue
      }
      let result = this.#buffer.add(change, this.#pendingVc)
      if (result === 'full') {
        // Hand what is deliverable to the store first: that moves `pendingVc` on, so the rest of a
        // frame that continues one origin is taken now rather than one change per resync.
        this.#drain()
        result = this.#buffer.add(change, this.#pendingVc)
      }
      if (result === 'duplicate') this.#counters.duplicates++
      if (result === 'full') {
        this.#counters.bufferFull++
        this.#resyncNeeded = true
      }
    }
    this.#drain()
  }

  /** Hands every deliverable change to the store, in causal order; the store group-commits them. */
  #drain(): void {
    const deliverable = this.#buffer.takeDeliverable(this.#pendingVc)
    if (deliverable.length === 0) return
    for (const change of deliverable) this.#pendingVc = vcJoin(this.#pendingVc, { [change.dot.node]: change.dot.seq })
    const applied = Promise.allSettled(deliverable.map((change) => this.store.applyRemote(change)))
    this.#applying = this.#applying.then(async () => {
      const results = await applied
      let failed = 0
      for (const [index, result] of results.entries()) {
        if (result.status === 'fulfilled') {
          // The store answers a change it already had with `change: null`.
          if (result.value.change !== null) this.#counters.changesApplied++
          else this.#counters.duplicates++
        } else {
          failed++
          const change = deliverable[index] as Change
          this.#logger.warn(
            {
              origin: change.dot.node,
              seq: change.dot.seq,
              err: String(result.reason),
              code: (result.reason as { code?: string }).code,
            },
            'change refused',
          )
        }
      }
      if (failed > 0) {
        // What was refused (a clock too far ahead, a storage failure) and what followed it from
        // the same origin is asked for again on the next tick.
        this.#counters.refused += failed
        this.#pendingVc = this.store.vc
        this.#resyncNeeded = true
      }
      this.#sendAcksIfChanged()
      this.#checkWaiters()
    })
  }

  #sendAcksIfChanged(): void {
    const vc = this.store.vc
    if (vcCovers(this.#lastAckedVc, vc)) return
    this.#lastAckedVc = vc
    for (const session of this.#sessions.values()) session.link.send({ type: 'ack', vc })
  }

  #broadcastSync(): void {
    const peers = this.linkedPeers()
    for (const session of this.#sessions.values()) session.link.send({ type: 'sync', vc: this.store.vc, peers })
  }

  #checkWaiters(): void {
    for (const waiter of this.#waiters) {
      if (this.holders(waiter.dot) >= waiter.required) {
        this.#waiters.delete(waiter)
        waiter.resolve()
      }
    }
  }

  async #oldestMissingAgeMs(acked: VectorClock, now: number): Promise<number> {
    let oldest = Infinity
    for (const [origin, seq] of Object.entries(this.store.vc) as [NodeId, number][]) {
      const from = vcGet(acked, origin) + 1
      if (from > seq) continue
      const lsn = await this.store.lsnOfDot({ node: origin, seq: from })
      if (lsn === undefined) continue
      const [entry] = await this.store.readLog(lsn - 1, 1)
      if (entry !== undefined) oldest = Math.min(oldest, entry.change.hlc.wallMs)
    }
    return oldest === Infinity ? 0 : Math.max(0, now - oldest)
  }
}

/** Acknowledged VCs kept per peer for the stable cut. */
const ACK_HISTORY_MAX = 32

function dialerOf(link: PeerLinkLike, selfId: NodeId): NodeId {
  return link.direction === 'dialed' ? selfId : link.nodeId
}

export type { LogEntry }
