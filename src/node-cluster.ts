/**
 * The cluster side of a node, wired: a transport (WebSocket, or one passed in), the replicator,
 * the once-a-second tick, readiness, and write concern. Wiring only: the protocol is in
 * `replication/`, links and auth in `transport/`.
 */
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Dot, NodeId } from './clock/index.js'
import { vcGet } from './clock/index.js'
import type { SetState } from './crdt/index.js'
import { MeshError } from './errors.js'
import type { Member, Role } from './node-members.js'
import { FORGOTTEN_SET, MEMBERS_SET, claimIntents, forgetIntents, forgottenOf, membersOf } from './node-members.js'
import type { Logger, PeerStatus } from './replication/index.js'
import { Replicator, SILENT_LOGGER } from './replication/index.js'
import { type WriteConcern, requiredMembers } from './api/concern.js'
import type { PeerLink } from './codec/peer.js'
import type { LogEntry, Store } from './storage/index.js'
import type { Transport } from './transport/transport.js'
import { WebSocketTransport } from './transport/websocket.js'

const JOINED_META_KEY = 'joined'
export const TICK_INTERVAL_MS = 1000
export const WRITE_CONCERN_TIMEOUT_MS_DEFAULT = 5000

export interface ClusterOptions {
  store: Store
  /** URLs of the peers to keep links with. */
  peers: readonly string[]
  /** The cluster secret; without it the node takes no peer links at all. */
  secret: string | undefined
  clusterId: string
  /** The URL peers reach this node at (its own `/` base; links go to `/v1/peer`). */
  selfUrl: string | null
  transport?: Transport
  now: () => number
  randomBytes: (size: number) => Uint8Array
  logger?: Logger
  pingIntervalMs?: number
  peerTimeoutMs?: number
  role?: Role
  snapshotAfterChanges?: number
  logRetainEntries?: number
}

/** A member as `kvctl members` shows it. */
export interface MemberStatus extends Member {
  self: boolean
  state: 'self' | 'up' | 'catching-up' | 'down'
}

export class Cluster {
  readonly replicator: Replicator
  readonly transport: Transport | null
  readonly peerUrls: readonly string[]
  readonly role: Role
  readonly #store: Store
  readonly #logger: Logger
  readonly #timer: NodeJS.Timeout
  readonly #selfUrl: string | null
  #joined: boolean
  #members = new Map<NodeId, Member>()
  #forgotten = new Map<NodeId, number>()
  #membersState: SetState | null = null
  #refreshing: Promise<void> = Promise.resolve()
  #claiming = false
  readonly #admitting = new Set<NodeId>()
  #closed = false
  readonly #unsubscribe: () => void

  private constructor(options: ClusterOptions, joined: boolean) {
    this.#store = options.store
    const logger = options.logger ?? SILENT_LOGGER
    this.#logger = logger.child?.({ nodeId: options.store.nodeId }) ?? logger
    this.peerUrls = options.peers
    this.role = options.role ?? 'member'
    this.#selfUrl = options.selfUrl
    this.#joined = joined
    this.replicator = new Replicator({
      store: options.store,
      now: options.now,
      logger: this.#logger,
      members: () => [...this.#members.keys()],
      ...(options.snapshotAfterChanges === undefined ? {} : { snapshotAfterChanges: options.snapshotAfterChanges }),
      ...(options.logRetainEntries === undefined ? {} : { logRetainEntries: options.logRetainEntries }),
    })
    this.transport = options.secret === undefined ? null : (options.transport ?? makeTransport(options))
    this.transport?.on('link', (link) => void this.#onLink(link))
    this.#unsubscribe = options.store.onCommit((entries) => {
      if (entries.length === 0 || entries.some(touchesMembership)) this.#refresh()
    })
    // The other side's id goes under `peer`, as in the replicator's lines: the logger already
    // binds `nodeId` to this node, and a second `nodeId` key would make the line name the wrong node.
    this.transport?.on('refused', ({ nodeId, ...info }) =>
      this.#logger.warn({ ...info, peer: nodeId }, 'peer link refused'),
    )
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
    const cluster = new Cluster(options, joined)
    cluster.#refresh()
    await cluster.#refreshing
    return cluster
  }

  /** Every member (this node included), and each one's state as this node sees it. */
  async memberList(): Promise<MemberStatus[]> {
    await this.#refreshing
    const peers = new Map(
      (await this.peers()).filter((peer) => peer.nodeId !== null).map((peer) => [peer.nodeId as NodeId, peer]),
    )
    const self = this.#store.nodeId
    const members = new Map(this.#members)
    if (!members.has(self)) members.set(self, { nodeId: self, role: this.role, url: this.#selfUrl })
    return [...members.values()]
      .sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
      .map((member) => ({
        ...member,
        self: member.nodeId === self,
        state: member.nodeId === self ? 'self' : (peers.get(member.nodeId)?.state ?? 'down'),
      }))
  }

  /** Members' URLs other than this node's (where quorum reads go). */
  memberUrls(): { nodeId: NodeId; url: string }[] {
    const out: { nodeId: NodeId; url: string }[] = []
    for (const member of this.#members.values())
      if (member.nodeId !== this.#store.nodeId && member.url !== null)
        out.push({ nodeId: member.nodeId, url: member.url })
    return out
  }

  /**
   * Forgets a member for good: it leaves the member set, and its changes after the last one this
   * node has are refused everywhere. Its changes so far stay.
   */
  async forget(nodeId: NodeId): Promise<void> {
    if (nodeId === this.#store.nodeId)
      throw new MeshError(
        'MESHKV_ERR_INVALID_ARGUMENT',
        'a node cannot forget itself; run kvctl forget on another member',
      )
    await this.#refreshing
    if (!this.#members.has(nodeId) && !this.replicator.linkedPeers().includes(nodeId) && !this.#forgotten.has(nodeId)) {
      throw new MeshError('MESHKV_ERR_UNKNOWN_MEMBER', `no member ${nodeId} is known here`)
    }
    const state = await this.#store.getState('set', MEMBERS_SET)
    await this.#store.commitLocal(forgetIntents(state, nodeId, vcGet(this.#store.vc, nodeId)))
    await this.#refreshing
  }

  isForgotten(nodeId: NodeId): boolean {
    return this.#forgotten.has(nodeId)
  }

  /** Ready to take writes: a member already, or caught up with a peer (docs/architecture.md, "Membership"). */
  get ready(): boolean {
    if (!this.#joined && this.replicator.caughtUp()) {
      this.#joined = true
      void this.#store
        .setMeta(JOINED_META_KEY, 'true')
        .catch((error: unknown) => this.#logger.error({ err: String(error) }, 'could not record joining'))
      this.#logger.info({}, 'joined the cluster')
    }
    return this.#joined
  }

  /**
   * Members, this node included: the member set and every peer heard from on this run, or the
   * configured peers if they are more (a node not reached yet still counts); forgotten nodes
   * never count.
   */
  members(): number {
    const ids = new Set<NodeId>([this.#store.nodeId, ...this.#members.keys(), ...this.replicator.knownPeerIds()])
    for (const id of this.#forgotten.keys()) ids.delete(id)
    const kept = this.transport?.keptUrls() ?? []
    const forgottenConfigured = kept.filter(
      (entry) => entry.nodeId !== null && this.#forgotten.has(entry.nodeId) && this.peerUrls.includes(entry.url),
    ).length
    return Math.max(ids.size, 1 + this.peerUrls.length - forgottenConfigured)
  }

  /** Refuses, before anything is written, a concern this cluster cannot meet (w above its size). */
  checkConcern(concern: WriteConcern): void {
    requiredMembers(concern, this.members(), 'w')
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
        const holders = this.replicator.holders(dot)
        reject(
          new MeshError(
            'MESHKV_ERR_WRITE_CONCERN_TIMEOUT',
            `the write is committed on ${holders} of ${required} members asked for within ${timeoutMs} ms; it stays committed and keeps replicating`,
            {
              details: { holders, required, timeoutMs },
            },
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
  }

  #tick(): void {
    this.replicator.tick()
    if (!this.ready) return
    this.#claimSelf()
    // Peers that linked before this node was ready (a whole cluster starting at once) are admitted now.
    for (const { nodeId, url } of this.replicator.linkedPeerUrls()) void this.#admit(nodeId, url)
  }

  /**
   * A new link. A ready node admits a peer it does not know yet by writing it into the member
   * set BEFORE replication (and so a snapshot) starts on the link: from then on the new member
   * holds back garbage collection until it acknowledges (docs/architecture.md, "Membership").
   */
  async #onLink(link: PeerLink): Promise<void> {
    if (this.ready) await this.#admit(link.nodeId, link.url)
    this.replicator.addLink(link)
  }

  async #admit(nodeId: NodeId, url: string | null): Promise<void> {
    if (
      this.transport === null ||
      this.#members.has(nodeId) ||
      this.#forgotten.has(nodeId) ||
      this.#admitting.has(nodeId) ||
      this.#closed
    )
      return
    this.#admitting.add(nodeId)
    try {
      await this.#store.commitLocal([{ type: 'set.add', name: MEMBERS_SET, member: `${nodeId} member ${url ?? '-'}` }])
      this.#logger.info({ peer: nodeId, url }, 'member admitted')
      await this.#refreshing
    } catch (error) {
      this.#logger.warn({ peer: nodeId, err: String(error) }, 'could not write the new member; linking anyway')
    } finally {
      this.#admitting.delete(nodeId)
    }
  }

  /** Makes this node's own entry (id, role, URL) the only one for it, once it is ready. */
  #claimSelf(): void {
    const state = this.#membersState
    // A node without peer links (no secret) keeps no member set.
    if (
      state === null ||
      this.transport === null ||
      this.#claiming ||
      this.#closed ||
      this.#forgotten.has(this.#store.nodeId)
    )
      return
    const intents = claimIntents(state, { nodeId: this.#store.nodeId, role: this.role, url: this.#selfUrl })
    if (intents.length === 0) return
    this.#claiming = true
    this.#store
      .commitLocal(intents)
      .catch((error: unknown) =>
        this.#logger.warn({ err: String(error) }, 'could not write this node into the member set'),
      )
      .finally(() => (this.#claiming = false))
  }

  /** Reads the member sets again, and follows them: links to keep, nodes to refuse. */
  #refresh(): void {
    this.#refreshing = this.#refreshing
      .then(async () => {
        if (this.#closed) return
        const state = await this.#store.getState('set', MEMBERS_SET)
        const forgotten = forgottenOf(await this.#store.getState('set', FORGOTTEN_SET))
        this.#membersState = state
        this.#members = membersOf(state)
        for (const id of forgotten.keys()) this.#members.delete(id)
        this.#forgotten = forgotten
        this.replicator.setForgotten(forgotten)
        this.#followMembers()
      })
      .catch((error: unknown) => this.#logger.warn({ err: String(error) }, 'could not read the member set'))
  }

  /**
   * Configured peers are the links; the member set fills in what they miss. A member's URL is
   * kept only while the configured list is shorter than the other members, and only for a member
   * no configured URL has reached. Forgotten members' URLs are dropped.
   */
  #followMembers(): void {
    const transport = this.transport
    if (transport === null || this.#closed) return
    const kept = transport.keptUrls()
    for (const entry of kept) {
      if (entry.nodeId !== null && this.#forgotten.has(entry.nodeId)) transport.forget(entry.url)
    }
    const others = [...this.#members.values()].filter((member) => member.nodeId !== this.#store.nodeId)
    if (this.peerUrls.length >= others.length) return
    const reached = new Set(
      kept.filter((entry) => entry.nodeId !== null && this.peerUrls.includes(entry.url)).map((entry) => entry.nodeId),
    )
    for (const member of others) {
      if (member.url === null || reached.has(member.nodeId) || member.url === this.#selfUrl) continue
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

function touchesMembership(entry: LogEntry): boolean {
  return entry.change.ops.some(
    (op) => op.type.startsWith('set.') && 'name' in op && (op.name === MEMBERS_SET || op.name === FORGOTTEN_SET),
  )
}

function makeTransport(options: ClusterOptions): Transport {
  return new WebSocketTransport({
    nodeId: options.store.nodeId,
    clusterId: options.clusterId,
    secret: options.secret as string,
    advertiseUrl: options.selfUrl,
    randomBytes: options.randomBytes,
    ...(options.pingIntervalMs === undefined ? {} : { pingIntervalMs: options.pingIntervalMs }),
    ...(options.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: options.peerTimeoutMs }),
  })
}
