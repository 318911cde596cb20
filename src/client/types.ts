/**
 * The shapes `MeshClient` takes and returns. They follow the embeddable node's (`Entry`,
 * `ListPage`, `NodeStatus`) so code moves between the two faces with few changes.
 */
import type { AccessRole, CreatedToken, ExportType, ReadConcern, Role, TokenInfo, WriteConcern } from '../api/index.js'
import type { RoutingPolicy } from './endpoints.js'

export type { AccessRole, CreatedToken, ReadConcern, TokenInfo, WriteConcern }

export type FetchFunction = (input: string | URL, init?: RequestInit) => Promise<Response>

export interface MeshClientOptions {
  /** Node URLs, as a list or comma-separated (`http://a:7700,http://b:7700`). */
  nodes: readonly string[] | string
  /** `sticky` (default): stay on one node until it fails. `round-robin`: spread requests. */
  policy?: RoutingPolicy
  /** How long one attempt on one node may take before it counts as failed, in ms. Default 10 000. */
  timeoutMs?: number
  /** A `fetch` to use instead of the global one (tests, proxies). */
  fetch?: FetchFunction
  /**
   * Resolves a host name to its addresses; a name with several addresses counts as several
   * endpoints (a DNS round-robin name for a cluster). Default: the system resolver
   * (`dns.lookup` with `all: true`).
   */
  lookup?: (hostname: string) => Promise<readonly string[]>
  /**
   * An access token, sent as `Authorization: Bearer <token>` with every request (watch streams
   * too). A node that checks tokens answers a request without one `MESHKV_ERR_UNAUTHENTICATED`.
   * (Not the client's `token` getter: that is the session's causal token.)
   */
  token?: string
  /**
   * The CA (PEM, as text or bytes) that https nodes' certificates chain to, trusted in place of
   * the system's CAs: for a cluster with its own private CA.
   */
  ca?: string | Uint8Array
}

export interface ClientCreateTokenOptions {
  role: AccessRole
  /** Only keys (and counter and set names) starting with this. */
  prefix?: string
  /** A label for people (`kvctl token ls` shows it). */
  name?: string
  signal?: AbortSignal
}

export interface ClientForgetOptions {
  /**
   * Forget the member even though the node still sees it alive (by default the node refuses,
   * `MESHKV_ERR_MEMBER_ALIVE`): for a member known to be gone for good.
   */
  force?: boolean
  signal?: AbortSignal
}

export interface ClientReadOptions {
  /** Also return every concurrent sibling. */
  siblings?: boolean
  /** A causal token to read after, joined with the session's own token. */
  after?: string
  /** How long the node may wait to catch up with the token (or for a quorum read), in ms (the node's default: 5000). */
  waitMs?: number
  signal?: AbortSignal
  /** Read concern: the node joins the state from this many members, `quorum` or `all`. */
  r?: ReadConcern
}

/** A member as `GET /v1/members` lists it. */
export interface ClientMember {
  nodeId: string
  role: Role
  url: string | null
  self: boolean
  state: string
}

export interface ClientPutOptions {
  /** Stored content type. Default: text for a string, `application/octet-stream` for bytes. */
  contentType?: string
  /** Refuse (`MESHKV_ERR_PRECONDITION_FAILED`) unless the key is at this version. */
  ifMatch?: string
  /** Refuse if the key has a live value. */
  ifNoneMatch?: boolean
  /** The version the writer read: the write replaces exactly those siblings. */
  context?: string
  w?: WriteConcern
  /** How long the node may wait for `w` acknowledgements, in ms (the node's default: 5000). */
  waitMs?: number
  signal?: AbortSignal
}

export interface ClientDeleteOptions {
  ifMatch?: string
  context?: string
  w?: WriteConcern
  waitMs?: number
  signal?: AbortSignal
}

/** Options of counter and set writes. */
export interface ClientConcernOptions {
  w?: WriteConcern
  waitMs?: number
  signal?: AbortSignal
}

export interface ClientSibling {
  /** `null` for a delete concurrent with other writes. */
  value: Uint8Array | null
  contentType: string | null
  deleted: boolean
  /** Everything else the node said about the sibling (`hlc`, `node`). */
  [field: string]: unknown
}

export interface ClientEntry {
  key: string
  value: Uint8Array
  contentType: string
  /** Opaque version: pass it back as `ifMatch` or `context`. */
  version: string
  /** How many concurrent siblings the key holds (1 when there is no conflict). */
  siblingCount: number
  /** Present when asked for with `siblings: true`. */
  siblings?: ClientSibling[]
}

export interface ClientWriteResult {
  key: string
  version: string
  /** A causal token covering this write. */
  token: string
}

/** The kind of a document's top-level type, for `getDocJson`'s `types` (the node's `?types=`). */
export type ClientDocTypeKind = 'text' | 'map' | 'array' | 'xml'

export interface ClientDocReadOptions extends Omit<ClientReadOptions, 'siblings'> {
  /** A Yjs state vector: answer only what its holder lacks (for `getDoc`). */
  sv?: Uint8Array
}

/** What `MeshClient.export` exports: keys and names under `prefix`, of `types` (default: all). */
export interface ClientExportOptions {
  prefix?: string
  types?: readonly ExportType[]
  signal?: AbortSignal
}

/** A document write's answer: `changed` is false for an update the document already held. */
export interface ClientDocWriteResult {
  name: string
  changed: boolean
  /** A causal token covering this write. */
  token: string
}

export interface ClientListOptions {
  prefix?: string
  /** Inclusive lower bound. */
  start?: string
  /** Exclusive upper bound. */
  end?: string
  /** Items per page: 1 to 1000, default 100 (the node's). */
  limit?: number
  cursor?: string
  reverse?: boolean
  after?: string
  waitMs?: number
  signal?: AbortSignal
}

export interface ClientListItem {
  key: string
  value: Uint8Array
  contentType: string
  version: string
  siblingCount: number
}

export interface ClientListPage {
  items: ClientListItem[]
  /** Pass as `cursor` for the next page; `null` at the end. */
  next: string | null
}

export interface ClientWatchOptions {
  prefix?: string
  /** Resume after this cursor (the `id` of the last event seen, from the same node). */
  since?: string
  signal?: AbortSignal
}

/** One server-sent event of a watch, its data parsed as JSON. */
export interface ClientWatchEvent {
  /** The resumable cursor (pass back as `since` to the same node). */
  id: string | undefined
  /** `put`, `del`, `counter`, `set.add`, `set.remove`, ... */
  event: string
  data: unknown
  /** The node the event came from. */
  endpoint: string
}

export interface ClientStatus {
  nodeId: string
  ready: boolean
  vc: Record<string, number>
  token: string
  lsn: number
  hlc: unknown
  version: string
  uptimeMs: number
  storage: string
  limits: { keyBytesMax: number; valueBytesMax: number; batchOpsMax: number }
  /** Members of the cluster, the node included. */
  members?: number
  /** Each peer as the node sees it: link state and lag. */
  peers?: ClientPeerStatus[]
  /** Whether the node makes changes of its own now, and why not (docs/architecture.md, "Own sequence numbers"). */
  seqGuard?: { state: string; reason: string | null }
  /** A snapshot being received (`null` when none), and the last one joined (absent from older nodes). */
  snapshot?: {
    receiving: {
      from: string
      /** An estimate until `keysCounted` (the sender's count came; absent from older nodes). */
      keysTotal: number
      keysCounted?: boolean
      keysReceived: number
      startedMs: number
    } | null
    last: { from: string; keys: number; ms: number } | null
  }
  /** The node that answered. */
  endpoint: string
}

export interface ClientPeerStatus {
  nodeId: string | null
  url: string | null
  state: 'up' | 'catching-up' | 'down'
  lagChanges: number
  lagMs: number
  lastSeenMs: number | null
  /** Changes the peer held when it first synced that the node still lacks (absent from older nodes). */
  catchUpChanges?: number
}

export interface ClientDigest {
  digest: string
  vc: Record<string, number>
  keys: number
  /** The node that answered. */
  endpoint: string
}
