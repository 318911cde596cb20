/**
 * The cluster side of a node, wired: a transport (WebSocket, or one passed in), the replicator,
 * the once-a-second tick, readiness, and write concern. Wiring only: the protocol is in
 * `replication/`, links and auth in `transport/`.
 */
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Dot, NodeId } from './clock/index.js'
import { vcGet } from './clock/index.js'
import { MeshError } from './errors.js'
import type { Logger, PeerStatus, WriteConcern } from './replication/index.js'
import { Replicator, SILENT_LOGGER, requiredHolders } from './replication/index.js'
import type { Store } from './storage/index.js'
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
}

export class Cluster {
  readonly replicator: Replicator
  readonly transport: Transport | null
  readonly peerUrls: readonly string[]
  readonly #store: Store
  readonly #logger: Logger
  readonly #timer: NodeJS.Timeout
  #joined: boolean

  private constructor(options: ClusterOptions, joined: boolean) {
    this.#store = options.store
    const logger = options.logger ?? SILENT_LOGGER
    this.#logger = logger.child?.({ nodeId: options.store.nodeId }) ?? logger
    this.peerUrls = options.peers
    this.#joined = joined
    this.replicator = new Replicator({ store: options.store, now: options.now, logger: this.#logger })
    this.transport = options.secret === undefined ? null : (options.transport ?? makeTransport(options))
    this.transport?.on('link', (link) => this.replicator.addLink(link))
    // The other side's id goes under `peer`, as in the replicator's lines: the logger already
    // binds `nodeId` to this node, and a second `nodeId` key would make the line name the wrong node.
    this.transport?.on('refused', ({ nodeId, ...info }) => this.#logger.warn({ ...info, peer: nodeId }, 'peer link refused'))
    for (const url of options.peers) this.transport?.keep(url)
    this.#timer = setInterval(() => this.#tick(), TICK_INTERVAL_MS)
    this.#timer.unref()
  }

  static async open(options: ClusterOptions): Promise<Cluster> {
    if (options.peers.length > 0 && (options.secret === undefined || options.secret.length === 0)) {
      throw new MeshError('MESHKV_ERR_CONFIG', 'a node started with peers needs the cluster secret (--secret or MESHKV_SECRET)')
    }
    // A node that has been a member (or has written changes of its own) is ready without any peer.
    const joined =
      (await options.store.getMeta(JOINED_META_KEY)) === 'true' || options.peers.length === 0 || vcGet(options.store.vc, options.store.nodeId) > 0
    if (joined && options.peers.length > 0) await options.store.setMeta(JOINED_META_KEY, 'true')
    return new Cluster(options, joined)
  }

  /** Ready to take writes: a member already, or caught up with a peer (DESIGN.md section 3). */
  get ready(): boolean {
    if (!this.#joined && this.replicator.caughtUp()) {
      this.#joined = true
      void this.#store.setMeta(JOINED_META_KEY, 'true').catch((error: unknown) => this.#logger.error({ err: String(error) }, 'could not record joining'))
      this.#logger.info({}, 'joined the cluster')
    }
    return this.#joined
  }

  /** Members, this node included: the configured peers, or more if more have linked. */
  members(): number {
    return 1 + Math.max(this.peerUrls.length, this.replicator.knownPeers())
  }

  /** Refuses, before anything is written, a concern this cluster cannot meet (w above its size). */
  checkConcern(concern: WriteConcern): void {
    requiredHolders(concern, this.members())
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
    const required = requiredHolders(concern, this.members())
    if (required <= 1) return
    const wait = this.replicator.waitForHolders(dot, required)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const holders = this.replicator.holders(dot)
        reject(
          new MeshError('MESHKV_ERR_WRITE_CONCERN_TIMEOUT', `the write is committed on ${holders} of ${required} members asked for within ${timeoutMs} ms; it stays committed and keeps replicating`, {
            details: { holders, required, timeoutMs },
          }),
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
    clearInterval(this.#timer)
    await this.transport?.close()
    await this.replicator.close()
  }

  #tick(): void {
    this.replicator.tick()
    void this.ready
  }
}

function makeTransport(options: ClusterOptions): Transport {
  return new WebSocketTransport({
    nodeId: options.store.nodeId,
    clusterId: options.clusterId,
    secret: options.secret as string,
    selfUrl: options.selfUrl,
    randomBytes: options.randomBytes,
    ...(options.pingIntervalMs === undefined ? {} : { pingIntervalMs: options.pingIntervalMs }),
    ...(options.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: options.peerTimeoutMs }),
  })
}
