/**
 * The public shapes of the embeddable node: what `MeshNode` takes and returns. The HTTP face and
 * apps build on these, never on storage or replication internals.
 */
import type { ReadConcern, WriteConcern } from '../api/concern.js'
import type { Role } from '../api/role.js'
import type { TlsMaterial } from '../api/access.js'
import type { Hlc, NodeId, VectorClock } from '../clock/index.js'
import type { Logger, PeerStatus, SeqGuardStatus, SnapshotStatus } from '../replication/index.js'
import type { LinkTraffic, Transport } from '../transport/transport.js'
import type { ParkingStatus } from './bounds.js'

export interface MeshNodeOptions {
  /** Data directory (LevelDB). Made if missing; locked while the node is open. */
  dir: string
  /** Longest key in bytes (UTF-8). Default 1024. */
  keyBytesMax?: number
  /** Largest value in bytes. Default 1 MiB. */
  valueBytesMax?: number
  /** Most operations in one batch. Default 1000. */
  batchOpsMax?: number
  /**
   * fsync every committed batch. Without it, a batch holding a change this node made is still
   * fsynced (a change lost to a power loss would have its dot reused: peers would drop the new
   * change as a duplicate), while changes from peers are not (peers send them again). Default false.
   */
  sync?: boolean
  /** Bound on how far ahead a remote clock may be, in ms. Default 60 000. */
  maxClockOffsetMs?: number
  /** Wall clock, injectable for tests and the simulator. Default `Date.now`. */
  now?: () => number
  /** Randomness, injectable for tests. Default `crypto.randomBytes`. */
  randomBytes?: (size: number) => Uint8Array
  /** Use an in-memory store instead of LevelDB (tests and the simulator only). */
  memory?: boolean
  /** Peer URLs (`http://host:port`) to replicate with. Needs `secret`. */
  peers?: readonly string[]
  /** The shared cluster secret. Without it the node takes no peer links. */
  secret?: string
  /** Nodes of different clusters refuse each other's links. Default `meshkv`. */
  clusterId?: string
  /** The URL peers reach this node at, told to peers in the handshake (`--advertise-url`). */
  advertiseUrl?: string
  /** A transport to use instead of WebSockets (the simulator's in-memory one). */
  transport?: Transport
  /** Where replication logs (a pino logger fits). */
  logger?: Logger
  pingIntervalMs?: number
  peerTimeoutMs?: number
  /** `replica`: serves reads and replicates everything, refuses client writes (`MESHKV_ERR_READ_ONLY`). Default `member`. */
  role?: Role
  /** A brand-new peer gets a snapshot rather than the log once this node holds more changes. Default 10 000. */
  snapshotAfterChanges?: number
  /**
   * Log entries kept after every member holds them, so a watch can resume from a recent cursor
   * (older cursors answer `MESHKV_ERR_CURSOR_EXPIRED`). Default 1000.
   */
  logRetainEntries?: number
  /**
   * TLS for peer links (PEM contents): dialing `https://` peers presents `cert`/`key` as a client
   * certificate and verifies the peer against `ca` (and its host name against the peer URL); with
   * `ca`, an accepted `/v1/peer` link must also present a certificate that chains to `ca`. The HTTPS
   * server itself is the app's (`buildApp(node, { tls })`). Default: plain `http://` peers.
   */
  tls?: TlsMaterial
  /** Causal reads (`after`) and quorum reads parked at once; more answer `MESHKV_ERR_BUSY`. Default 1000. */
  parkedReadsMax?: number
  /** Writes parked waiting for their write concern at once; more answer `MESHKV_ERR_BUSY`. Default 1000. */
  parkedWritesMax?: number
  /** Bytes of values one list page may hold; a page ends early (with `next`) past it. Default 8 MiB. */
  listPageBytesMax?: number
}

export type { ParkingStatus, ReadConcern, Role, WriteConcern }

/** A value as a person gives it: bytes, text, or any JSON value. */
export type ValueInput =
  Uint8Array | string | number | boolean | null | readonly unknown[] | { readonly [key: string]: unknown }

export interface WriteOptions {
  /** Stored content type; derived from the value when absent (bytes, text or JSON). */
  contentType?: string
  /** The version (ETag) the writer read: the write replaces exactly those siblings. */
  context?: string
  /** Refuse with `MESHKV_ERR_PRECONDITION_FAILED` unless the key is at this version. */
  ifMatch?: string
  /** Refuse with `MESHKV_ERR_PRECONDITION_FAILED` if the key has a live value. */
  ifNoneMatch?: boolean
  /** Acknowledge once this many members hold the write. Default 1 (async). */
  w?: WriteConcern
  /** How long `w` may wait, in ms. Default 5000. */
  timeoutMs?: number
  signal?: AbortSignal
}

/** Options of every write (puts, deletes, batches, counters, sets). */
export interface ConcernOptions {
  w?: WriteConcern
  timeoutMs?: number
  signal?: AbortSignal
}

export interface ReadOptions {
  /** Return every concurrent sibling, not only the last-write-wins one. */
  siblings?: boolean
  /** A causal token: wait until this node has seen at least what the token covers. */
  after?: string
  /** How long `after` (and a quorum read) may wait, in ms. Default 5000. */
  timeoutMs?: number
  signal?: AbortSignal
  /**
   * Read concern: join the state from this many members (this node included), `quorum` or
   * `all`, before answering. Default 1 (this node alone).
   */
  r?: ReadConcern
}

export interface SiblingView {
  value: Uint8Array | null
  contentType: string | null
  /** `true` for a delete concurrent with other writes. */
  deleted: boolean
  hlc: Hlc
  node: NodeId
}

export interface Entry {
  key: string
  value: Uint8Array
  contentType: string
  /** Opaque version: pass it back as `context` or `ifMatch`. Also the HTTP `ETag`. */
  version: string
  hlc: Hlc
  /** How many concurrent siblings the key holds (1 when there is no conflict). */
  siblingCount: number
  /** Present when asked for with `siblings: true`. */
  siblings?: SiblingView[]
}

export interface WriteResult {
  /** The key's version after the write (for a delete: the version of the tombstone). */
  version: string
  /** A causal token covering this write. */
  token: string
  /** `false` when nothing changed (a delete of a missing key). */
  changed: boolean
}

export interface ListOptions {
  prefix?: string
  /** Inclusive lower bound. */
  start?: string
  /** Exclusive upper bound. */
  end?: string
  /** Default 100, at most 1000. */
  limit?: number
  reverse?: boolean
  /** The `next` of a previous page. */
  cursor?: string
  after?: string
  timeoutMs?: number
  signal?: AbortSignal
}

export interface ListPage {
  items: Entry[]
  /** Pass as `cursor` for the next page; `null` at the end. */
  next: string | null
}

export type BatchOp =
  | {
      type: 'put'
      key: string
      value: ValueInput
      contentType?: string
      context?: string
      ifMatch?: string
      ifNoneMatch?: boolean
    }
  | { type: 'del'; key: string; context?: string; ifMatch?: string }

export interface WatchOptions {
  prefix?: string
  /** Resume after this cursor (the `cursor` of the last event seen). Absent: from now on. */
  since?: string
  signal?: AbortSignal
}

export type WatchEvent =
  | {
      type: 'put'
      key: string
      value: Uint8Array
      contentType: string
      cursor: string
      origin: 'local' | 'remote'
      node: NodeId
      hlc: Hlc
    }
  | { type: 'del'; key: string; cursor: string; origin: 'local' | 'remote'; node: NodeId; hlc: Hlc }
  | { type: 'counter'; name: string; delta: number; cursor: string; origin: 'local' | 'remote'; node: NodeId; hlc: Hlc }
  | {
      /** A document update (a Yjs update, v1): what a sync room forwards to its clients. */
      type: 'doc'
      name: string
      update: Uint8Array
      cursor: string
      origin: 'local' | 'remote'
      node: NodeId
      hlc: Hlc
    }
  | {
      type: 'set.add' | 'set.remove'
      name: string
      member: string
      cursor: string
      origin: 'local' | 'remote'
      node: NodeId
      hlc: Hlc
    }

/** How a node learnt that the cluster forgot it (docs/architecture.md, "Membership"). */
export interface ForgottenStatus {
  /** The peer that closed a link with 4403, or null when the node saw itself in the forgotten set. */
  by: NodeId | null
  /** When this node learnt it (its clock, unix ms). */
  atMs: number
}

export interface NodeStatus {
  nodeId: NodeId
  ready: boolean
  /** Set once the cluster forgot this node: it is then read-only and never ready again. */
  forgotten: ForgottenStatus | null
  /**
   * Whether the node may make changes of its own (src/replication/seq-guard.ts): `writable`, or
   * `verifying` (just started), `recovering` (peers hold own changes it lost), `diverged` or
   * `conflict` (its id names two histories), with the reason in one line.
   */
  seqGuard: SeqGuardStatus
  /** The node's vector clock. */
  vc: VectorClock
  /** The same, as a causal token. */
  token: string
  /** Last log sequence number. */
  lsn: number
  hlc: Hlc
  version: string
  uptimeMs: number
  storage: 'level' | 'memory'
  limits: { keyBytesMax: number; valueBytesMax: number; batchOpsMax: number }
  /** Members of the cluster, this node included (1 for a single node). */
  members: number
  /** Peers with a live link now. */
  linked: NodeId[]
  /** Replication counters since start: changes received, applied, sent, duplicates, refusals, buffered. */
  replication: Readonly<Record<string, number>>
  /** Peer sockets and links refused by the transport's own rules (per-address cap, pre-auth bytes, link cap, an id already linked). */
  transport: Readonly<Record<string, number>>
  /** `member` or `replica` (read-only). */
  role: Role
  /** A snapshot being received (progress), and the last one joined. */
  snapshot: SnapshotStatus
  /** Reads (`after`, quorum) and writes (write concern) waiting now, their caps, and how many were refused. */
  parked: { reads: ParkingStatus; writes: ParkingStatus }
  /** Writes (data and tokens) answered `MESHKV_ERR_WRITE_CONCERN_TIMEOUT` since start, by their `w` (`2`, `quorum`, `all`…). */
  writeConcernTimeouts: Readonly<Record<string, number>>
  /**
   * Puts and deletes (local or a peer's) since start that left their key with siblings: each was
   * concurrent with a write of the key it did not replace.
   */
  siblingsCreated: { put: number; del: number }
  /** Encoded peer frames (bytes) and the changes in them, sent to and received from each peer since start. */
  peerTraffic: Readonly<Record<NodeId, LinkTraffic>>
}

export type { PeerStatus }

export interface CounterHandle {
  readonly name: string
  /** Adds `delta` (default 1); resolves to the value after the increment. */
  incr(delta?: number, options?: ConcernOptions): Promise<number>
  decr(delta?: number, options?: ConcernOptions): Promise<number>
  value(options?: ReadOptions): Promise<number>
}

export interface SetHandle {
  readonly name: string
  add(...members: string[]): Promise<WriteResult>
  remove(...members: string[]): Promise<WriteResult>
  /** Adds and removes in one atomic change. A member may not be in both lists. */
  update(
    changes: { add?: readonly string[]; remove?: readonly string[] },
    options?: ConcernOptions,
  ): Promise<WriteResult>
  members(options?: ReadOptions): Promise<string[]>
  has(member: string, options?: ReadOptions): Promise<boolean>
}
