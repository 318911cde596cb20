/**
 * The cluster side of a node, wired: a transport (WebSocket, or one passed in), the replicator,
 * the membership rules, the once-a-second tick, and write concern. Wiring only: the protocol and
 * the membership rules are in `replication/`, links and auth in `transport/`.
 */
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Role } from '../api/role.js'
import type { WriteConcern } from '../api/concern.js'
import { requiredMembers } from '../api/concern.js'
import { stageTrace } from '../api/trace.js'
import type { Dot, NodeId } from '../clock/index.js'
import { vcGet } from '../clock/index.js'
import type { Intent } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Logger, PeerStatus } from '../replication/index.js'
import { Replicator, SILENT_LOGGER } from '../replication/index.js'
import type { Member } from '../replication/membership.js'
import { FORGOTTEN_SET, MEMBERS_SET, Membership, touchesMembership } from '../replication/membership.js'
import type { PeerLink } from '../codec/peer.js'
import type { Store } from '../storage/index.js'
import type { Transport } from '../transport/transport.js'
import { WebSocketTransport, dialTlsOf } from '../transport/websocket.js'
import { TRANSPORT_DEFAULTS } from '../transport/core.js'
import type { ForgottenStatus, MeshNodeOptions } from './types.js'
import type { PeerFetch } from './peer-fetch.js'
import { peerFetch } from './peer-fetch.js'

const JOINED_META_KEY = 'joined'
export const TICK_INTERVAL_MS = 1000
export const WRITE_CONCERN_TIMEOUT_MS_DEFAULT = 5000
/**
 * `forget` takes a member for alive while it is linked, or was heard from within this many peer
 * timeouts (15 s by default). One timeout is when a silent link is dropped; a few more cover a
 * member that is restarting or redialling, which a forget would cut off for good.
 */
export const FORGET_ALIVE_PEER_TIMEOUTS = 3

/** The node's options the cluster passes on as they are (see types.ts for each). */
export type ClusterTuning = Pick<
  MeshNodeOptions,
  'transport' | 'logger' | 'pingIntervalMs' | 'peerTimeoutMs' | 'snapshotAfterChanges' | 'logRetainEntries' | 'tls'
>

export interface ClusterOptions extends ClusterTuning {
  store: Store
  /** URLs of the peers to keep links with. */
  peers: readonly string[]
  /** The cluster secret; without it the node takes no peer links at all. */
  secret: string | undefined
  clusterId: string
  /** The URL peers reach this node at (its own `/` base; links go to `/v1/peer`). */
  advertiseUrl: string | null
  now: () => number
  randomBytes: (size: number) => Uint8Array
  role?: Role
}

export class Cluster {
  readonly replicator: Replicator
  readonly transport: Transport | null
  readonly peerUrls: readonly string[]
  readonly role: Role
  readonly advertiseUrl: string | null
  readonly membership: Membership
  /** How this node's own HTTP requests reach other members (over TLS: its certificate, the cluster CA). */
  readonly peerFetch: PeerFetch
  /** Writes (data and tokens) that met `MESHKV_ERR_WRITE_CONCERN_TIMEOUT` since start, by their `w` (metrics). */
  readonly concernTimeouts: Record<string, number> = {}
  readonly #store: Store
  readonly #logger: Logger
  readonly #peerTimeoutMs: number
  readonly #now: () => number
  /** When each peer's last link ended, on this run: `forget` counts it as heard until then. */
  readonly #linkEndedMs = new Map<NodeId, number>()
  /** Every open peer link, for the awareness relay. */
  readonly #links = new Set<PeerLink>()
  readonly #timer: NodeJS.Timeout
  #refreshing: Promise<void> = Promise.resolve()
  #forgotten: ForgottenStatus | null = null
  /** The member set has been read once: the seq guard may count on it. */
  #membersRead = false
  #closed = false
  readonly #unsubscribe: () => void

  private constructor(options: ClusterOptions, joined: boolean, peerFetch: PeerFetch) {
    this.peerFetch = peerFetch
    this.#store = options.store
    const logger = options.logger ?? SILENT_LOGGER
    this.#logger = logger.child?.({ nodeId: options.store.nodeId }) ?? logger
    this.#peerTimeoutMs = options.peerTimeoutMs ?? TRANSPORT_DEFAULTS.peerTimeoutMs
    this.#now = options.now
    this.peerUrls = options.peers
    this.role = options.role ?? 'member'
    this.advertiseUrl = options.advertiseUrl
    // Links past the members (or the configured peers, before the member set is known) plus a margin are refused.
    const linksMax = (): number => Math.max(this.membership.members.size, options.peers.length + 1) + LINKS_MARGIN
    this.transport = options.secret === undefined ? null : (options.transport ?? makeTransport(options, linksMax))
    this.membership = new Membership({
      self: options.store.nodeId,
      role: this.role,
      url: options.advertiseUrl,
      peers: options.peers,
      linking: this.transport !== null,
      joined,
    })
    this.replicator = new Replicator({
      store: options.store,
      now: options.now,
      logger: this.#logger,
      members: () => [...this.membership.members.keys()],
      ...(options.snapshotAfterChanges === undefined ? {} : { snapshotAfterChanges: options.snapshotAfterChanges }),
      ...(options.logRetainEntries === undefined ? {} : { logRetainEntries: options.logRetainEntries }),
      // A member silent for two peer timeouts after this node started is taken to be down. A node
      // without a transport (no secret) hears no member, ever: waiting would change nothing.
      seqGuardGraceMs: this.transport === null ? 0 : SEQ_GUARD_PEER_TIMEOUTS * this.#peerTimeoutMs,
      membersKnown: () => this.#membersRead,
      later: (run, ms) => void setTimeout(run, ms).unref(),
    })
    this.transport?.on('link', (link) => void this.#onLink(link))
    this.#unsubscribe = options.store.onCommit((entries) => {
      stageTrace?.committed(entries)
      if (entries.length === 0 || entries.some((entry) => touchesMembership(entry.change))) this.#refresh()
      // A node joins on the commit that brings it level with its peers, not a tick later.
      this.#checkJoined()
    })
    // The other side's id goes under `peer`, as in the replicator's lines: the logger already
    // binds `nodeId` to this node, and a second `nodeId` key would make the line name the wrong node.
    this.transport?.on('refused', ({ nodeId, ...info }) => {
      this.#logger.warn({ ...info, peer: nodeId }, 'peer link refused')
      // This node's dial (`url` set: the refusing side has none) met a live link from its own id.
      if (info.code === 'MESHKV_ERR_MEMBER_ALIVE' && info.url !== null) this.replicator.seqGuard.heldOff()
    })
    this.transport?.on('conflict', ({ peer, message }) => this.replicator.seqGuard.markConflict(peer, message))
    for (const url of options.peers) this.transport?.keep(url)
    this.#timer = setInterval(() => this.#tick(), TICK_INTERVAL_MS)
    this.#timer.unref()
  }

  static async open(options: ClusterOptions): Promise<Cluster> {
    if (options.peers.length > 0 && (options.secret === undefined || options.secret.length === 0)) {
      throw new MeshError(
        'MESHKV_ERR_CONFIG',
        'a node started with peers needs the cluster secret (--secret or MESHKV_SECRET)',
      )
    }
    // A node that has been a member (or has written changes of its own) is ready without any peer.
    const joined =
      (await options.store.getMeta(JOINED_META_KEY)) === 'true' ||
      options.peers.length === 0 ||
      vcGet(options.store.vc, options.store.nodeId) > 0
    if (joined && options.peers.length > 0) await options.store.setMeta(JOINED_META_KEY, 'true')
    const cluster = new Cluster(options, joined, await peerFetch(options.tls))
    cluster.#refresh()
    await cluster.#refreshing
    return cluster
  }

  /**
   * Ready to take writes: a member already, or caught up with a peer (docs/architecture.md,
   * "Membership"), not forgotten, and its own seqs are its alone (the seq guard: after a start
   * its peers said how much of it they hold, none holds more, and no other process runs its id).
   */
  get ready(): boolean {
    return this.membership.joined && this.forgotten === null && this.replicator.seqGuard.writable
  }

  /**
   * Throws what a write of `what` (a client's write, a token, a forget) meets on this node now, if
   * it may not write: a replica, a forgotten node, a node still joining, a node whose seq guard
   * holds writes back (`MESHKV_ERR_RECOVERING`, `MESHKV_ERR_NODE_ID_CONFLICT`).
   */
  checkWrites(what: string): void {
    if (this.role === 'replica')
      throw new MeshError(
        'MESHKV_ERR_READ_ONLY',
        `this node is a read-only replica (--role replica); ${what} through a member`,
      )
    if (this.forgotten !== null) {
      // Acknowledging it would promise what the survivors refuse: the write would never replicate.
      throw new MeshError(
        'MESHKV_ERR_FORGOTTEN',
        `the cluster forgot this node (kvctl forget): it takes no writes any more; ${what} through a member`,
      )
    }
    if (!this.membership.joined) {
      throw new MeshError(
        'MESHKV_ERR_NOT_READY',
        `this node is joining its cluster and takes writes once it has caught up with a peer; retry, or ${what} through another node`,
      )
    }
    const refusal = this.replicator.seqGuard.refusal()
    if (refusal !== null) throw refusal
  }

  /**
   * Set once this node learns the cluster forgot it: a peer closed a link with 4403, or it sees
   * itself in the forgotten set. From then on it takes no writes and is not ready: what it would
   * acknowledge, the survivors refuse.
   */
  get forgotten(): ForgottenStatus | null {
    return this.#learnForgotten()
  }

  /** Notices, once, that this node was forgotten: records it and says so in the log. */
  #learnForgotten(): ForgottenStatus | null {
    if (this.#forgotten !== null) return this.#forgotten
    const by = this.replicator.forgottenBy
    if (by === null && !this.membership.selfForgotten) return null
    this.#forgotten = { by: by?.peer ?? null, atMs: by?.atMs ?? this.#now() }
    this.#logger.warn(
      { by: this.#forgotten.by },
      'this node was forgotten by the cluster (kvctl forget): it is read-only and not ready from now on',
    )
    return this.#forgotten
  }

  /** The member set as last read, once any read under way has finished. */
  async memberSet(): Promise<ReadonlyMap<NodeId, Member>> {
    await this.#refreshing
    return this.membership.members
  }

  /** Members' URLs other than this node's (where quorum reads go). */
  memberUrls(): { nodeId: NodeId; url: string }[] {
    return this.membership.memberUrls()
  }

  /**
   * Forgets a member for good: it leaves the member set, and its changes after the cut are refused
   * everywhere unless a survivor relays them. The cut is the highest seq of it that this node or any
   * surviving peer is known to hold (acks, syncs, claims), so no survivor is left holding changes
   * the others refuse. A member that looks alive (linked, or heard from within
   * `FORGET_ALIVE_PEER_TIMEOUTS` peer timeouts) is refused unless `force`.
   */
  async forget(nodeId: NodeId, options: { force?: boolean } = {}): Promise<void> {
    await this.#refreshing
    const state = await this.#store.getState('set', MEMBERS_SET)
    const seq = this.replicator.forgetCut(nodeId)
    const intents = this.membership.forget(nodeId, seq, this.replicator.linkedPeers(), state)
    if (options.force !== true && !this.membership.isForgotten(nodeId)) await this.#refuseAlive(nodeId)
    await this.#store.commitLocal(intents)
    await this.#refreshing
  }

  /**
   * Throws `MESHKV_ERR_MEMBER_ALIVE` when `nodeId` is linked to this node or was heard from within
   * the alive window: forgetting a live member cuts off every change it makes from then on.
   */
  async #refuseAlive(nodeId: NodeId): Promise<void> {
    const windowMs = FORGET_ALIVE_PEER_TIMEOUTS * this.#peerTimeoutMs
    const linked = this.replicator.linkedPeers().includes(nodeId)
    const lastHeardMs = await this.#lastHeardMs(nodeId)
    if (!linked && (lastHeardMs === null || lastHeardMs >= windowMs)) return
    const why = linked ? 'is linked to this node' : `was heard from ${lastHeardMs} ms ago`
    throw new MeshError(
      'MESHKV_ERR_MEMBER_ALIVE',
      `member ${nodeId} ${why}; forget only a member that is gone, or force it (?force=true, kvctl forget --force)`,
      { details: { nodeId, linked, lastHeardMs, aliveWindowMs: windowMs } },
    )
  }

  /**
   * Milliseconds since `nodeId` was last heard on this run: its last message, or the end of its
   * last link (an idle link carries no messages, yet the peer was there until it closed). Null: never.
   */
  async #lastHeardMs(nodeId: NodeId): Promise<number | null> {
    const status = (await this.replicator.peerStatus([])).find((peer) => peer.nodeId === nodeId)
    const ended = this.#linkEndedMs.get(nodeId)
    const sinceEnd = ended === undefined ? null : Math.max(0, this.#now() - ended)
    const heard = [status?.lastSeenMs ?? null, sinceEnd].filter((ms): ms is number => ms !== null)
    return heard.length === 0 ? null : Math.min(...heard)
  }

  isForgotten(nodeId: NodeId): boolean {
    return this.membership.isForgotten(nodeId)
  }

  /** Members, this node included (see `Membership.count`). */
  members(): number {
    return this.membership.count(this.replicator.knownPeerIds(), this.transport?.keptUrls() ?? [])
  }

  /** Refuses, before anything is written, a concern this cluster cannot meet (w above its size). */
  checkConcern(concern: WriteConcern): void {
    // w=1 fits any cluster: no need to count the members (a set of ids) on every write.
    if (concern !== 1) requiredMembers(concern, this.members(), 'w')
  }

  /** Peer sockets and links the transport refused by its own rules, by reason (none without one). */
  transportCounters(): Record<string, number> {
    const transport = this.transport
    if (transport instanceof WebSocketTransport)
      return {
        ...transport.counters,
        perAddressRefusals: transport.perAddressRefusals,
        preAuthOverruns: transport.preAuthOverruns,
        pendingSockets: transport.pendingSocketCount,
      }
    return transport !== null && 'counters' in transport ? { ...(transport.counters as Record<string, number>) } : {}
  }

  /** Accepts peer links on this HTTP(S) server at `/v1/peer`. */
  attach(server: HttpServer | HttpsServer): void {
    if (this.transport instanceof WebSocketTransport) this.transport.attach(server)
  }

  /**
   * Waits until `concern` members hold the change `dot`. On timeout the change stays committed
   * and keeps replicating; the error says how many members hold it.
   */
  async awaitConcern(dot: Dot, concern: WriteConcern, timeoutMs = WRITE_CONCERN_TIMEOUT_MS_DEFAULT): Promise<void> {
    const required = requiredMembers(concern, this.members(), 'w')
    if (required <= 1) return
    const wait = this.replicator.waitForHolders(dot, required)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.concernTimeouts[concern] = (this.concernTimeouts[concern] ?? 0) + 1
        const holders = this.replicator.holders(dot)
        reject(
          new MeshError(
            'MESHKV_ERR_WRITE_CONCERN_TIMEOUT',
            `the write is committed on ${holders} of ${required} members asked for within ${timeoutMs} ms; it stays committed and keeps replicating`,
            { details: { holders, required, timeoutMs } },
          ),
        )
      }, timeoutMs)
    })
    try {
      await Promise.race([wait.promise, timeout])
    } finally {
      clearTimeout(timer)
      wait.cancel()
    }
  }

  peers(): Promise<PeerStatus[]> {
    const kept = this.transport?.keptUrls() ?? this.peerUrls.map((url) => ({ url, nodeId: null }))
    return this.replicator.peerStatus(kept)
  }

  /** Sends a Yjs awareness update to every open link (node/yjs-rooms.ts); a full link drops it. */
  relayAwareness(room: string, update: Uint8Array): void {
    for (const link of this.#links) link.send({ type: 'awareness', room, update })
  }

  linked(): NodeId[] {
    return this.replicator.linkedPeers()
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    this.#unsubscribe()
    await this.transport?.close()
    await this.replicator.close()
    await this.#refreshing.catch(() => undefined)
    await this.peerFetch.close()
  }

  #tick(): void {
    this.replicator.tick()
    this.#checkJoined()
    this.#learnForgotten()
    if (!this.ready || this.#closed) return
    const claim = this.membership.claim()
    if (claim !== null)
      void this.#write(claim, 'could not write this node into the member set').finally(() => this.membership.claimed())
    // Peers that linked before this node was ready (a whole cluster starting at once) are admitted now.
    for (const { nodeId, url } of this.replicator.linkedPeerUrls()) void this.#admit(nodeId, url)
  }

  /** The joining transition, recorded once: on disk (a restart stays joined) and in the log. */
  #checkJoined(): void {
    if (this.#closed || !this.membership.tick(this.replicator.caughtUp())) return
    void this.#store
      .setMeta(JOINED_META_KEY, 'true')
      .catch((error: unknown) => this.#logger.error({ err: String(error) }, 'could not record joining'))
    this.#logger.info({}, 'joined the cluster')
  }

  /**
   * A new link. A ready node admits a peer it does not know yet by writing it into the member
   * set BEFORE replication (and so a snapshot) starts on the link: from then on the new member
   * holds back garbage collection until it acknowledges (docs/architecture.md, "Membership").
   */
  async #onLink(link: PeerLink): Promise<void> {
    this.#links.add(link)
    link.onClose(() => {
      this.#links.delete(link)
      this.#linkEndedMs.set(link.nodeId, this.#now())
    })
    await this.#admit(link.nodeId, link.url)
    this.replicator.addLink(link)
  }

  async #admit(nodeId: NodeId, url: string | null): Promise<void> {
    // A node that may not write yet admits the peer on a later tick (`#tick`), once it is ready.
    if (this.#closed || !this.replicator.seqGuard.writable) return
    const intents = this.membership.admit(nodeId, url)
    if (intents === null) return
    try {
      await this.#store.commitLocal(intents)
      this.#logger.info({ peer: nodeId, url }, 'member admitted')
      await this.#refreshing
    } catch (error) {
      this.#logger.warn({ peer: nodeId, err: String(error) }, 'could not write the new member; linking anyway')
    } finally {
      this.membership.admitted(nodeId)
    }
  }

  async #write(intents: Intent[], failure: string): Promise<void> {
    await this.#store.commitLocal(intents).then(
      () => undefined,
      (error: unknown) => this.#logger.warn({ err: String(error) }, failure),
    )
  }

  /** Reads the member sets again, and follows them: links to keep, nodes to refuse. */
  #refresh(): void {
    this.#refreshing = this.#refreshing
      .then(async () => {
        if (this.#closed) return
        const members = await this.#store.getState('set', MEMBERS_SET)
        const forgotten = await this.#store.getState('set', FORGOTTEN_SET)
        this.membership.update(members, forgotten)
        this.#membersRead = true
        this.replicator.setForgotten(this.membership.forgotten, this.membership.forgetDots)
        this.#learnForgotten()
        this.#followMembers()
      })
      .catch((error: unknown) => this.#logger.warn({ err: String(error) }, 'could not read the member set'))
  }

  #followMembers(): void {
    const transport = this.transport
    if (transport === null || this.#closed) return
    const { drop, dial } = this.membership.follow(transport.keptUrls())
    for (const url of drop) transport.forget(url)
    for (const member of dial) {
      try {
        transport.keep(member.url)
      } catch (error) {
        this.#logger.warn(
          { peer: member.nodeId, url: member.url, err: String(error) },
          'cannot dial a member at its URL',
        )
      }
    }
  }
}

/** After a start, own writes wait this many peer timeouts for members that do not sync (seq-guard.ts). */
const SEQ_GUARD_PEER_TIMEOUTS = 2

/** Links a node takes beyond one per member: newcomers joining, a link being replaced. */
const LINKS_MARGIN = 4

function makeTransport(options: ClusterOptions, linksMax: () => number): Transport {
  return new WebSocketTransport({
    nodeId: options.store.nodeId,
    clusterId: options.clusterId,
    secret: options.secret as string,
    advertiseUrl: options.advertiseUrl,
    randomBytes: options.randomBytes,
    linksMax,
    ...(options.pingIntervalMs === undefined ? {} : { pingIntervalMs: options.pingIntervalMs }),
    ...(options.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: options.peerTimeoutMs }),
    ...(options.tls === undefined ? {} : { tls: dialTlsOf(options.tls) }),
  })
}
