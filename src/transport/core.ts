/**
 * What every transport does the same way, whatever carries its bytes: option checks, events,
 * the URLs it keeps (dial, redial with jittered exponential backoff, stop), one link per peer,
 * and no link to itself. Subclasses say how to normalise a URL and how to open a channel.
 *
 * One link per peer (`keepsNewLink`): when two nodes dial each other at once, both sides keep the
 * link dialed by the node with the lower id (both compute the same answer) and close the other
 * with 4000. That tie-break only applies while the held link is young (both dials may still be in
 * their handshakes): otherwise a newcomer claiming a linked peer's id replaces the held link only
 * when that link is proven dead (no pong for two ping intervals), else the newcomer is refused
 * (4000, counted): knowing the secret is not enough to cut a live peer off. A newcomer from another
 * process (another `instance`) is judged by clones.ts: a restart replaces the dead link as above,
 * two live processes are both closed with 4009 (counted, and reported as `refused`). A transport
 * told 4009 on a proven link, or that sees its own id from another instance in a handshake, emits
 * `conflict`, and redials that URL at the slowest backoff. A kept URL whose node
 * already has a link is not redialed until that link ends. Authenticated links are capped
 * (`linksMax`: the node passes its member count plus a margin); one more is refused with 4503. The
 * rule lives here alone because the transport makes the links: the replicator is handed only the
 * winners, and asserts that it never holds two.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { NodeId } from '../clock/index.js'
import { isNodeId } from '../clock/index.js'
import type { PeerMessage } from '../codec/peer.js'
import { CLUSTER_ID_BYTES_MAX, INSTANCE_BYTES, NONCE_BYTES, URL_BYTES_MAX } from '../codec/peer.js'
import type { ErrorCode } from '../errors.js'
import { MeshError } from '../errors.js'
import type { Admission, Cancel, ConnectionEnd, ConnectionHost, Link, LinkSettings, SetTimer } from './connection.js'
import { Connection } from './connection.js'
import { CloneWatch, isOtherProcess } from './clones.js'
import type { HandshakeIdentity, PeerIdentity, Role } from './handshake.js'
import { ALIVE_REFUSAL_REASON } from './handshake.js'
import type { LinkTraffic, Transport, TransportEvents, TransportOptions } from './transport.js'
import { CLOSE_CODES } from './transport.js'
import { positiveIntegerSetting } from '../api/numbers.js'
import { stageTrace } from '../api/trace.js'

/**
 * Of a new link and a live one to the same peer, whether the new one is kept (and the live one
 * closed with 4000). Each argument is the id of the node that dialed that link; both ends of a
 * link compute the same answer, so both keep the same link.
 */
export function keepsNewLink(newDialer: NodeId, heldDialer: NodeId): boolean {
  return newDialer === heldDialer || newDialer < heldDialer
}

export const TRANSPORT_DEFAULTS = {
  pingIntervalMs: 1_000,
  peerTimeoutMs: 5_000,
  sendHighWaterBytes: 1024 * 1024,
  sendQueueBytesMax: 16 * 1024 * 1024,
  reconnectBaseMs: 200,
  reconnectMaxMs: 5_000,
  handshakeTimeoutMs: 5_000,
} as const

/** Options every transport takes: the interface's, plus the handshake deadline. */
export interface CoreTransportOptions extends TransportOptions {
  /** A connection that has not finished the handshake by then is closed (4408). */
  handshakeTimeoutMs?: number
  /** How many authenticated links may be up at once (read at each new link). Default: no cap. */
  linksMax?: () => number
  /** A monotonic clock in ms (when links last proved alive). Default: `performance.now`. */
  now?: () => number
}

/** Links refused by this transport's own rules, by reason (for metrics and tests). */
export interface TransportCounters {
  /** A new link past `linksMax`. */
  linksOverCap: number
  /** A newcomer claiming the id of a peer whose link is alive. */
  idAlreadyLinked: number
  /** Two live processes found running one peer's node id (both closed with 4009). */
  idConflicts: number
}

/** Backoff attempt for a URL whose node said 4009: the slowest redial (it keeps being told). */
const CONFLICT_ATTEMPT = 30

export interface TransportSettings extends LinkSettings {
  readonly pingIntervalMs: number
  readonly peerTimeoutMs: number
  readonly reconnectBaseMs: number
  readonly reconnectMaxMs: number
}

/** A URL this transport keeps a link to. */
interface Kept {
  /** The normalised URL (the key of `kept`). */
  readonly key: string
  /** As the caller gave it (reported as the link's URL). */
  readonly url: string
  attempt: number
  timer: Cancel | null
  connection: Connection | null
  /** The node last seen behind this URL. */
  nodeId: NodeId | null
  /** The URL turned out to reach this very node: never dialed again. */
  self: boolean
}

function configError(message: string): MeshError {
  return new MeshError('MESHKV_ERR_CONFIG', `transport: ${message}`)
}

/** A positive integer setting of the transport (errors name the transport). */
export function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  return positiveIntegerSetting(`transport: ${name}`, value, fallback)
}

export function resolveSettings(options: CoreTransportOptions): TransportSettings {
  const settings: TransportSettings = {
    pingIntervalMs: positiveInteger('pingIntervalMs', options.pingIntervalMs, TRANSPORT_DEFAULTS.pingIntervalMs),
    peerTimeoutMs: positiveInteger('peerTimeoutMs', options.peerTimeoutMs, TRANSPORT_DEFAULTS.peerTimeoutMs),
    sendHighWaterBytes: positiveInteger(
      'sendHighWaterBytes',
      options.sendHighWaterBytes,
      TRANSPORT_DEFAULTS.sendHighWaterBytes,
    ),
    sendQueueBytesMax: positiveInteger(
      'sendQueueBytesMax',
      options.sendQueueBytesMax,
      TRANSPORT_DEFAULTS.sendQueueBytesMax,
    ),
    reconnectBaseMs: positiveInteger('reconnectBaseMs', options.reconnectBaseMs, TRANSPORT_DEFAULTS.reconnectBaseMs),
    reconnectMaxMs: positiveInteger('reconnectMaxMs', options.reconnectMaxMs, TRANSPORT_DEFAULTS.reconnectMaxMs),
    handshakeTimeoutMs: positiveInteger(
      'handshakeTimeoutMs',
      options.handshakeTimeoutMs,
      TRANSPORT_DEFAULTS.handshakeTimeoutMs,
    ),
  }
  if (settings.sendQueueBytesMax < settings.sendHighWaterBytes)
    throw configError('sendQueueBytesMax must be at least sendHighWaterBytes')
  if (settings.reconnectMaxMs < settings.reconnectBaseMs)
    throw configError('reconnectMaxMs must be at least reconnectBaseMs')
  return settings
}

function resolveIdentity(options: TransportOptions): HandshakeIdentity {
  const { nodeId, clusterId, secret, advertiseUrl } = options
  if (!isNodeId(nodeId)) throw configError(`nodeId must be 16 hex characters, got ${JSON.stringify(nodeId)}`)
  if (typeof clusterId !== 'string' || clusterId.length === 0 || Buffer.byteLength(clusterId) > CLUSTER_ID_BYTES_MAX) {
    throw configError(`clusterId must be 1 to ${CLUSTER_ID_BYTES_MAX} bytes`)
  }
  if (typeof secret !== 'string' || secret.length === 0) throw configError('a cluster secret is required')
  if (advertiseUrl !== null && (typeof advertiseUrl !== 'string' || Buffer.byteLength(advertiseUrl) > URL_BYTES_MAX)) {
    throw configError(`advertiseUrl must be null or a URL of at most ${URL_BYTES_MAX} bytes`)
  }
  return { nodeId, clusterId, secret, advertiseUrl }
}

/** A float in [0, 1) from four random bytes (randomness is an input). */
function randomFraction(randomBytes: (size: number) => Uint8Array): number {
  const bytes = randomBytes(4)
  return Buffer.from(bytes.buffer, bytes.byteOffset, 4).readUInt32BE(0) / 2 ** 32
}

/** Exponential backoff with "equal jitter": half the step fixed, half random. */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, fraction: number): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30))
  return Math.round(step / 2 + (step / 2) * fraction)
}

type Listeners = { [E in keyof TransportEvents]: TransportEvents[E][] }

export abstract class TransportCore implements Transport, ConnectionHost {
  readonly identity: HandshakeIdentity
  readonly settings: TransportSettings
  readonly setTimer: SetTimer
  protected isClosed = false
  private readonly randomBytes: (size: number) => Uint8Array
  private readonly listeners: Listeners = { link: [], refused: [], conflict: [] }
  private readonly kept = new Map<string, Kept>()
  /** The one live (or admitted) connection per peer node. */
  private readonly links = new Map<NodeId, Connection>()
  private readonly connections = new Set<Connection>()
  private readonly selfKey: string | null
  private readonly linksMax: () => number
  readonly now: () => number
  readonly counters: TransportCounters = { linksOverCap: 0, idAlreadyLinked: 0, idConflicts: 0 }
  /** This process's instance id in hex (sent in the handshake; fixed for the transport's life). */
  readonly instance: string
  private readonly clones: CloneWatch
  readonly traffic = new Map<NodeId, LinkTraffic>()

  constructor(options: CoreTransportOptions, setTimer: SetTimer) {
    this.settings = resolveSettings(options)
    this.randomBytes = options.randomBytes ?? ((size) => new Uint8Array(cryptoRandomBytes(size)))
    const instance = this.randomBytes(INSTANCE_BYTES)
    this.identity = { ...resolveIdentity(options), instance }
    this.instance = Buffer.from(instance).toString('hex')
    this.setTimer = setTimer
    this.linksMax = options.linksMax ?? (() => Number.POSITIVE_INFINITY)
    this.now = options.now ?? (() => performance.now())
    this.selfKey = this.selfKeyOf(options.advertiseUrl)
    this.clones = new CloneWatch(2 * this.settings.pingIntervalMs)
  }

  /** The canonical form of a peer URL (the key `keep` and `forget` match on); throws on bad URLs. */
  protected abstract normalizeUrl(url: string): string

  /** Opens a channel to `key` and attaches it to `connection` (or calls `connection.fail`). */
  protected abstract openChannel(key: string, connection: Connection): void

  /** Waits until every channel has ended (after the connections were told to close). */
  protected abstract channelsEnded(): Promise<void>

  /** Each kept URL (as given) and the node last seen behind it, if any. */
  keptUrls(): { url: string; nodeId: NodeId | null }[] {
    return [...this.kept.values()].filter((kept) => !kept.self).map((kept) => ({ url: kept.url, nodeId: kept.nodeId }))
  }

  keep(url: string): void {
    if (this.isClosed) throw new MeshError('MESHKV_ERR_CLOSED', 'transport: closed')
    const key = this.keyOf(url)
    if (this.kept.has(key)) return
    const kept: Kept = { key, url, attempt: 0, timer: null, connection: null, nodeId: null, self: key === this.selfKey }
    this.kept.set(key, kept)
    if (!kept.self) this.dial(kept)
  }

  forget(url: string): void {
    const key = this.keyOf(url)
    const kept = this.kept.get(key)
    if (kept === undefined) return
    this.kept.delete(key)
    kept.timer?.()
    kept.timer = null
    kept.connection?.close(CLOSE_CODES.normal, 'forgotten')
    if (kept.nodeId !== null) this.links.get(kept.nodeId)?.close(CLOSE_CODES.normal, 'forgotten')
  }

  on<E extends keyof TransportEvents>(event: E, listener: TransportEvents[E]): void {
    this.listeners[event].push(listener)
  }

  async close(): Promise<void> {
    if (this.isClosed) return this.channelsEnded()
    this.isClosed = true
    for (const kept of this.kept.values()) kept.timer?.()
    this.kept.clear()
    for (const connection of [...this.connections]) connection.close(CLOSE_CODES.goingAway, 'node closing')
    await this.channelsEnded()
  }

  // --- ConnectionHost -------------------------------------------------------------------------

  nonce(): Uint8Array {
    return this.randomBytes(NONCE_BYTES)
  }

  admit(connection: Connection, peer: PeerIdentity): Admission {
    if (this.isClosed) return { ok: false, closeCode: CLOSE_CODES.goingAway, reason: 'node closing', refusal: null }
    if (this.clones.isConflicted(peer.nodeId, peer.instance)) return this.conflictRefusal(peer.nodeId)
    const existing = this.links.get(peer.nodeId)
    if (existing !== undefined && !existing.closed && existing !== connection) {
      const keep = this.keepsHeld(connection, existing, peer.nodeId)
      if (keep !== null) return keep
      // Register the winner before closing the loser, so the loser's end does not redial.
      this.links.set(peer.nodeId, connection)
      existing.close(CLOSE_CODES.duplicate, 'replaced by a newer link')
    } else if (this.links.size >= this.linksMax()) {
      this.counters.linksOverCap += 1
      const message = `already ${this.links.size} links, the most this node takes`
      const refusal = {
        closeCode: CLOSE_CODES.linksFull,
        errorCode: 'MESHKV_ERR_BUSY' as const,
        message,
        nodeId: peer.nodeId,
      }
      return { ok: false, closeCode: CLOSE_CODES.linksFull, reason: 'too many links', refusal }
    }
    this.links.set(peer.nodeId, connection)
    return { ok: true }
  }

  opened(connection: Connection, link: Link): void {
    const kept = this.keptOf(connection)
    if (kept !== undefined) {
      kept.attempt = 0
      kept.nodeId = link.nodeId
    }
    for (const listener of this.listeners.link) listener(link)
  }

  crossed(nodeId: NodeId, direction: 'Sent' | 'Received', message: PeerMessage, bytes: number): void {
    let traffic = this.traffic.get(nodeId)
    if (traffic === undefined)
      this.traffic.set(nodeId, (traffic = { bytesSent: 0, bytesReceived: 0, changesSent: 0, changesReceived: 0 }))
    traffic[`bytes${direction}`] += bytes
    if (message.type === 'changes') traffic[`changes${direction}`] += message.changes.length
    if (stageTrace !== null && message.type === 'changes') stageTrace.frame(direction, nodeId, message.changes)
  }

  ended(connection: Connection, end: ConnectionEnd): void {
    this.connections.delete(connection)
    const kept = this.keptOf(connection)
    if (kept !== undefined) kept.connection = null
    if (end.refusal !== null && !this.isClosed) {
      const { errorCode, message, nodeId } = end.refusal
      this.emitRefused(connection.dialedUrl, nodeId, errorCode, message)
      if (kept !== undefined && errorCode === 'MESHKV_ERR_CONFIG' && connection.role === 'dialer') kept.self = true
    }
    const conflict = this.isClosed ? null : this.conflictOf(end)
    if (conflict !== null) for (const listener of this.listeners.conflict) listener(conflict)
    if (kept !== undefined && kept.nodeId === null && connection.claimedNodeId !== null)
      kept.nodeId = connection.claimedNodeId as NodeId
    const nodeId = end.link?.nodeId ?? null
    if (nodeId !== null && this.links.get(nodeId) === connection) this.links.delete(nodeId)
    if (this.isClosed) return
    if (kept !== undefined && end.code === CLOSE_CODES.idConflict) kept.attempt = CONFLICT_ATTEMPT
    if (kept !== undefined) this.scheduleDial(kept, end.link !== null && end.code !== CLOSE_CODES.idConflict)
    // Kept URLs that waited because their node was linked another way dial again now.
    if (nodeId !== null && !this.links.has(nodeId)) {
      for (const other of this.kept.values()) {
        if (other !== kept && other.nodeId === nodeId) this.scheduleDial(other, true)
      }
    }
  }

  // --- internals ------------------------------------------------------------------------------

  /** Starts a connection in `role`; subclasses call this for accepted channels. */
  protected startConnection(role: Role, dialedUrl: string | null): Connection {
    const connection = new Connection(this, role, dialedUrl)
    this.connections.add(connection)
    return connection
  }

  /** When `connection`'s peer last proved it reads; memory.ts overrides (its links cannot go silent). */
  protected heardAtOf(connection: Connection): number {
    return connection.heardAt
  }

  protected emitRefused(url: string | null, nodeId: NodeId | null, code: ErrorCode, message: string): void {
    for (const listener of this.listeners.refused) listener({ url, nodeId, code, message })
  }

  private keyOf(url: string): string {
    if (typeof url !== 'string' || url.length === 0 || Buffer.byteLength(url) > URL_BYTES_MAX) {
      throw new MeshError(
        'MESHKV_ERR_INVALID_ARGUMENT',
        `transport: a peer URL is a string of 1 to ${URL_BYTES_MAX} bytes`,
      )
    }
    return this.normalizeUrl(url)
  }

  /** Runs in the constructor: `normalizeUrl` implementations must not use instance fields. */
  private selfKeyOf(advertiseUrl: string | null): string | null {
    if (advertiseUrl === null) return null
    try {
      return this.normalizeUrl(advertiseUrl)
    } catch {
      return null
    }
  }

  private keptOf(connection: Connection): Kept | undefined {
    if (connection.role !== 'dialer') return undefined
    for (const kept of this.kept.values()) if (kept.connection === connection) return kept
    return undefined
  }

  /**
   * Of a new connection and a held one to the same peer: the refusal of the new one, or null when
   * it replaces the held one. A young held link goes by the tie-break (`keepsNewLink`) when the
   * two were dialed from opposite ends; otherwise the held link stays unless it is proven dead.
   */
  private keepsHeld(candidate: Connection, existing: Connection, peer: NodeId): Admission | null {
    const dialerOf = (connection: Connection): NodeId => (connection.role === 'dialer' ? this.identity.nodeId : peer)
    const [newDialer, heldDialer] = [dialerOf(candidate), dialerOf(existing)]
    const { handshakeTimeoutMs, pingIntervalMs, peerTimeoutMs } = this.settings
    const now = this.now()
    const heardAt = this.heardAtOf(existing)
    const silentMs = now - heardAt
    const dead = silentMs > Math.min(peerTimeoutMs, 2 * pingIntervalMs)
    // The tie-break is for two links of one process; another process is a restart or a clone.
    const otherProcess = candidate.instance !== null && isOtherProcess(existing.instance, candidate.instance)
    if (otherProcess && dead) this.clones.replaced(peer)
    else if (otherProcess && this.clones.bothAlive(peer, candidate.instance, heardAt, now)) {
      return this.twoLiveProcesses(peer, existing, candidate.instance)
    } else if (!otherProcess && newDialer !== heldDialer && now - existing.openedAt < handshakeTimeoutMs) {
      return keepsNewLink(newDialer, heldDialer)
        ? null
        : { ok: false, closeCode: CLOSE_CODES.duplicate, reason: 'already linked', refusal: null }
    }
    if (dead) return null
    this.counters.idAlreadyLinked += 1
    const message = `node ${peer} is already linked, and that link is alive (heard ${Math.round(silentMs)} ms ago)`
    const refusal = {
      closeCode: CLOSE_CODES.duplicate,
      errorCode: 'MESHKV_ERR_MEMBER_ALIVE' as const,
      message,
      nodeId: peer,
    }
    return { ok: false, closeCode: CLOSE_CODES.duplicate, reason: ALIVE_REFUSAL_REASON, refusal }
  }

  /** Both instances of `peer` are alive: each is closed (or refused) with 4009, now and later. */
  private twoLiveProcesses(peer: NodeId, held: Connection, candidate: string): Admission {
    this.counters.idConflicts += 1
    this.clones.mark(peer, held.instance === null ? [candidate] : [held.instance, candidate])
    held.close(CLOSE_CODES.idConflict, `another live process runs node id ${peer}`)
    return this.conflictRefusal(peer)
  }

  /** A refusal with 4009, sent after the welcome so that the refused process can trust it. */
  private conflictRefusal(peer: NodeId): Admission {
    const message = `two live processes run node id ${peer} (a cloned data directory?): both refused`
    const refusal = {
      closeCode: CLOSE_CODES.idConflict,
      errorCode: 'MESHKV_ERR_NODE_ID_CONFLICT' as const,
      message,
      nodeId: peer,
    }
    return { ok: false, closeCode: CLOSE_CODES.idConflict, reason: message, refusal, welcomeFirst: true }
  }

  /**
   * The conflict an ended connection shows, if any: this node's own id from another process in a
   * handshake (seen here), or a proven link the peer closed with 4009 (said by the peer).
   */
  private conflictOf(end: ConnectionEnd): { peer: NodeId | null; message: string } | null {
    const { refusal, link } = end
    if (refusal?.errorCode === 'MESHKV_ERR_NODE_ID_CONFLICT' && !end.remote && refusal.nodeId === this.identity.nodeId)
      return { peer: null, message: refusal.message }
    if (link !== null && end.remote && end.code === CLOSE_CODES.idConflict)
      return { peer: link.nodeId, message: end.reason }
    return null
  }

  private dial(kept: Kept): void {
    kept.timer = null
    if (this.isClosed || kept.self || kept.connection !== null || this.kept.get(kept.key) !== kept) return
    const linked = kept.nodeId === null ? undefined : this.links.get(kept.nodeId)
    // Its node is linked already (perhaps it dialed us): wait until that link ends.
    if (linked !== undefined && !linked.closed) return
    const connection = this.startConnection('dialer', kept.url)
    kept.connection = connection
    this.openChannel(kept.key, connection)
  }

  private scheduleDial(kept: Kept, wasLinked: boolean): void {
    if (kept.self || kept.timer !== null || kept.connection !== null || this.kept.get(kept.key) !== kept) return
    if (wasLinked) kept.attempt = 0
    const delayMs = backoffDelayMs(
      kept.attempt,
      this.settings.reconnectBaseMs,
      this.settings.reconnectMaxMs,
      randomFraction(this.randomBytes),
    )
    kept.attempt += 1
    kept.timer = this.setTimer(() => this.dial(kept), delayMs)
  }
}
