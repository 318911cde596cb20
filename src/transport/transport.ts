/**
 * The `Transport` interface: how a node gets authenticated links to its peers. Two
 * implementations pass one conformance suite: WebSockets on the node's own port at `/v1/peer`,
 * and in memory (memory.ts). A transport dials the URLs it is told to keep,
 * accepts inbound links, runs the handshake (cluster id check, mutual HMAC challenge-response),
 * and only then hands a `PeerLink` to the node. It knows nothing of changes or merges.
 */
import type { NodeId } from '../clock/index.js'
import type { PeerLink } from '../codec/peer.js'

/** WebSocket close codes meshkv uses (4000-4999 are for applications). */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  duplicate: 4000,
  /** Two live processes run one node id (a cloned data directory): both are told, and take no writes. */
  idConflict: 4009,
  auth: 4401,
  otherCluster: 4409,
  timeout: 4408,
  slowReader: 4429,
  /** The node has as many links as it takes (`linksMax`). */
  linksFull: 4503,
} as const

/** The link itself is declared with the frames (codec/peer.ts): replication uses it too. */
export type { PeerLink } from '../codec/peer.js'

export interface TransportOptions {
  nodeId: NodeId
  clusterId: string
  /** The shared cluster secret; links are refused without it. */
  secret: string
  /** The URL other nodes dial to reach this one, or null if it takes no inbound links. */
  advertiseUrl: string | null
  pingIntervalMs?: number
  /** A peer silent for longer than this is dropped. */
  peerTimeoutMs?: number
  /** Bytes a link may have queued before `drained()` waits. */
  sendHighWaterBytes?: number
  /** Bytes a link may have queued before the peer is disconnected as a slow reader. */
  sendQueueBytesMax?: number
  reconnectBaseMs?: number
  reconnectMaxMs?: number
  /** Randomness for nonces and jitter (an input, so the simulator can seed it). */
  randomBytes?: (size: number) => Uint8Array
}

export interface TransportEvents {
  /** A link passed the handshake. */
  link: (link: PeerLink) => void
  /** A dial or handshake failed; for logs and metrics. `code` is a MeshError code. */
  refused: (info: { url: string | null; nodeId: NodeId | null; code: string; message: string }) => void
  /**
   * Another live process runs this node's id (a cloned data directory): seen by this transport in a
   * handshake, or said by a peer (close code 4009). `peer` is who said it (null: seen here).
   */
  conflict: (info: { peer: NodeId | null; message: string }) => void
}

export interface Transport {
  /** Keeps a link to this URL: dials it, and redials with jittered backoff after it drops. */
  keep(url: string): void
  /** Stops keeping a URL and closes its link. */
  forget(url: string): void
  /** Each kept URL and the node last seen behind it (null before the first handshake). */
  keptUrls(): { url: string; nodeId: NodeId | null }[]
  on<E extends keyof TransportEvents>(event: E, listener: TransportEvents[E]): void
  close(): Promise<void>
  /** What crossed the links to each peer on this run (for metrics). */
  readonly traffic: ReadonlyMap<NodeId, Readonly<LinkTraffic>>
}

/** Encoded frames, and the changes in them, sent to and received from one peer after the handshake. */
export interface LinkTraffic {
  bytesSent: number
  bytesReceived: number
  changesSent: number
  changesReceived: number
}
