/**
 * The cluster's metrics (docs/operations.md, "Metrics"): replication lag and link state per peer,
 * what crossed each link, the inbound pipeline, catch-up and snapshots, garbage collection,
 * concurrent writes, write-concern timeouts, auth refusals and the seq guard. Every value is read
 * when scraped from what the node already reports (`status()`, `peers()`, `gcStatus()`), once per
 * scrape, so nothing here sits on a write's path.
 *
 * Labels are bounded by the cluster, never by clients: a peer's node id (only peers that passed
 * the handshake are ever named), a state or reason from a fixed list, a write concern (`w` is at
 * most the member count). Never a key, a prefix or a name.
 */
import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'
import type { MeshNode, NodeStatus, PeerStatus } from '../node/index.js'
import type { AuthRefusals } from './auth.js'

/** What one scrape reads of the node: each read at most once per scrape (see `perScrape`). */
export interface Scrape {
  status(): NodeStatus
  peers(): Promise<PeerStatus[]>
  gc(): ReturnType<MeshNode['gcStatus']>
}

interface Sample {
  labels?: Record<string, string>
  value: number
}

interface MetricSpec {
  kind: 'gauge' | 'counter'
  name: string
  help: string
  labels?: readonly string[]
  read: () => Sample[] | Promise<Sample[]>
}

const PEER_STATES = Object.keys({ up: 0, 'catching-up': 0, down: 0 } satisfies Record<PeerStatus['state'], 0>)
const SEQ_GUARD_STATES = Object.keys({
  verifying: 0,
  writable: 0,
  recovering: 0,
  diverged: 0,
  conflict: 0,
} satisfies Record<NodeStatus['seqGuard']['state'], 0>)

/**
 * `read`, called once per scrape: prom-client starts every metric's collect in the same turn of the
 * event loop, so what the first one reads is kept for the rest of that turn and then dropped.
 */
export function perScrape<T>(read: () => T): () => T {
  let held: { value: T } | null = null
  return () => {
    if (held === null) {
      held = { value: read() }
      setImmediate(() => (held = null))
    }
    return held.value
  }
}

/** Registers every cluster metric of this file on `registry`. */
export function clusterMetrics(registry: Registry, scrape: Scrape, authRefused: AuthRefusals): void {
  for (const spec of [
    ...peerSpecs(scrape),
    ...linkSpecs(scrape),
    ...replicationSpecs(scrape),
    ...catchUpSpecs(scrape),
    ...nodeSpecs(scrape, authRefused),
  ])
    define(registry, spec)
}

/**
 * One metric whose samples are all read at scrape time: the old series go (a forgotten peer
 * leaves), the new ones are set. A counter read this way is the node's own running count.
 */
function define(registry: Registry, spec: MetricSpec): void {
  const options = {
    name: spec.name,
    help: spec.help,
    labelNames: spec.labels ?? [],
    registers: [registry],
    async collect(this: Gauge | Counter) {
      const samples = await spec.read()
      this.reset()
      for (const { labels = {}, value } of samples) this.inc(labels, value)
    },
  }
  if (spec.kind === 'gauge') new Gauge(options)
  else new Counter(options)
}

const one = (value: number): Sample[] => [{ value }]

/** Per peer (by node id): lag, link state, catch-up, when last heard; and configured URLs no peer was seen behind. */
function peerSpecs(scrape: Scrape): MetricSpec[] {
  const named = async (): Promise<(PeerStatus & { nodeId: string })[]> =>
    (await scrape.peers()).filter((peer): peer is PeerStatus & { nodeId: string } => peer.nodeId !== null)
  const perPeer = (value: (peer: PeerStatus) => number | null) => async (): Promise<Sample[]> =>
    (await named()).flatMap((peer) => {
      const at = value(peer)
      return at === null ? [] : [{ labels: { peer: peer.nodeId }, value: at }]
    })
  return [
    {
      kind: 'gauge',
      name: 'meshkv_peer_lag_changes',
      help: "Changes this node holds that the peer has not acknowledged (its lag behind this node's log).",
      labels: ['peer'],
      read: perPeer((peer) => peer.lagChanges),
    },
    {
      kind: 'gauge',
      name: 'meshkv_peer_lag_seconds',
      help: 'Age of the oldest change this node holds that the peer has not acknowledged (0 when it lacks none).',
      labels: ['peer'],
      read: perPeer((peer) => peer.lagMs / 1000),
    },
    {
      kind: 'gauge',
      name: 'meshkv_peer_link_state',
      help: 'The link to each peer: 1 for its current state (up, catching-up, down), 0 for the others.',
      labels: ['peer', 'state'],
      read: async () =>
        (await named()).flatMap((peer) =>
          PEER_STATES.map((state) => ({ labels: { peer: peer.nodeId, state }, value: peer.state === state ? 1 : 0 })),
        ),
    },
    {
      kind: 'gauge',
      name: 'meshkv_peer_catch_up_remaining_changes',
      help: 'Changes the peer held when it first synced on this run that this node still lacks: a joining node is ready once every peer is at 0.',
      labels: ['peer'],
      read: perPeer((peer) => peer.catchUpChanges),
    },
    {
      kind: 'gauge',
      name: 'meshkv_peer_last_seen_seconds',
      help: 'Seconds since the peer was last heard from on this run (absent until it is heard).',
      labels: ['peer'],
      read: perPeer((peer) => (peer.lastSeenMs === null ? null : peer.lastSeenMs / 1000)),
    },
    {
      kind: 'gauge',
      name: 'meshkv_peers_unreached',
      help: 'Configured peer URLs behind which no node has been reached on this run (down, with no node id yet).',
      read: async () => one((await scrape.peers()).filter((peer) => peer.nodeId === null).length),
    },
  ]
}

/** What crossed each peer's links since start: encoded peer frames and the changes in them, as the transport counts them. */
function linkSpecs(scrape: Scrape): MetricSpec[] {
  const crossed = (
    name: string,
    field: keyof NodeStatus['peerTraffic'][NodeStatus['nodeId']],
    help: string,
  ): MetricSpec => ({
    kind: 'counter',
    name,
    help,
    labels: ['peer'],
    read: () =>
      Object.entries(scrape.status().peerTraffic).map(([peer, traffic]) => ({
        labels: { peer },
        value: traffic[field],
      })),
  })
  return [
    crossed(
      'meshkv_peer_sent_bytes_total',
      'bytesSent',
      'Bytes of peer frames sent to each peer since start, over all its links.',
    ),
    crossed(
      'meshkv_peer_received_bytes_total',
      'bytesReceived',
      'Bytes of peer frames received from each peer since start, over all its links.',
    ),
    crossed(
      'meshkv_peer_sent_changes_total',
      'changesSent',
      'Changes sent to each peer since start, over all its links.',
    ),
    crossed(
      'meshkv_peer_received_changes_total',
      'changesReceived',
      'Changes received from each peer since start (duplicates included), over all its links.',
    ),
  ]
}

/** The replicator's running counts (`status().replication`), as counters; the causal buffer, as gauges. */
function replicationSpecs(scrape: Scrape): MetricSpec[] {
  const counts = (): Readonly<Record<string, number>> => scrape.status().replication
  const count = (field: string) => (): Sample[] => one(counts()[field] ?? 0)
  const counter = (name: string, field: string, help: string): MetricSpec => ({
    kind: 'counter',
    name: `meshkv_replication_${name}_total`,
    help,
    read: count(field),
  })
  return [
    counter('changes_sent', 'changesSent', 'Changes sent to peers (a change relayed to two peers counts twice).'),
    counter('frames_sent', 'framesSent', '`changes` frames sent to peers.'),
    counter('changes_received', 'changesReceived', 'Changes received from peers, duplicates included.'),
    counter('changes_applied', 'changesApplied', 'Changes received from peers and applied to the store.'),
    counter('duplicates', 'duplicates', 'Changes received that this node already held or was holding.'),
    {
      kind: 'counter',
      name: 'meshkv_replication_changes_refused_total',
      help: 'Changes received and not applied, by reason: store (refused by the store, e.g. a clock too far ahead; asked for again), overflow (a counter would overflow; the link is closed), forgotten (from a forgotten member past its cut), buffer_full (the causal buffer was full; asked for again).',
      labels: ['reason'],
      read: () => {
        const { refused = 0, refusedOverflow = 0, refusedForgotten = 0, bufferFull = 0 } = counts()
        return [
          { labels: { reason: 'store' }, value: refused - refusedOverflow },
          { labels: { reason: 'overflow' }, value: refusedOverflow },
          { labels: { reason: 'forgotten' }, value: refusedForgotten },
          { labels: { reason: 'buffer_full' }, value: bufferFull },
        ]
      },
    },
    counter('snapshots_sent', 'snapshotsSent', 'Snapshots sent to peers in full.'),
    counter('snapshots_received', 'snapshotsReceived', 'Snapshots received and joined.'),
    counter('snapshots_refused', 'snapshotsRefused', 'Snapshot offers and `snapshot-needed` claims this node refused.'),
    counter(
      'claims_refused',
      'claimsRefused',
      "Acks and syncs claiming more of this node's own changes than it holds.",
    ),
    counter('claims_capped', 'claimsCapped', 'Entries of acks and syncs capped at what this node holds.'),
    {
      kind: 'gauge',
      name: 'meshkv_causal_buffer_changes',
      help: 'Changes received early and held in the causal buffer until the changes they follow arrive.',
      read: count('buffered'),
    },
    {
      kind: 'gauge',
      name: 'meshkv_causal_buffer_bytes',
      help: 'Bytes of the changes held in the causal buffer.',
      read: count('bufferedBytes'),
    },
  ]
}

/** How far this node is from holding what its peers hold (a snapshot, a seq-guard recovery); and GC. */
function catchUpSpecs(scrape: Scrape): MetricSpec[] {
  const gauge = (name: string, help: string, read: () => number | Promise<number>): MetricSpec => ({
    kind: 'gauge',
    name,
    help,
    read: async () => one(await read()),
  })
  return [
    gauge('meshkv_snapshot_remaining_keys', 'Keys of the snapshot being received not received yet (0: none).', () => {
      const receiving = scrape.status().snapshot.receiving
      return receiving === null ? 0 : Math.max(0, receiving.keysTotal - receiving.keysReceived)
    }),
    gauge(
      'meshkv_seq_guard_recovery_remaining_changes',
      'Own changes a peer said it holds that this node has not got back yet (seq guard `recovering`; 0 otherwise).',
      () => {
        const { nodeId, vc, seqGuard } = scrape.status()
        return Math.max(0, seqGuard.claimedSeq - (vc[nodeId] ?? 0))
      },
    ),
    gauge('meshkv_gc_log_entries', 'Log entries held: what garbage collection has not purged.', async () => {
      return (await scrape.gc()).logEntries
    }),
    gauge('meshkv_gc_tombstones', 'Keys whose state is all tombstones, not yet purged as stable.', async () => {
      return (await scrape.gc()).tombstones
    }),
  ]
}

/** This node: the seq guard, readiness, concurrent writes, write-concern timeouts, auth refusals. */
function nodeSpecs(scrape: Scrape, authRefused: AuthRefusals): MetricSpec[] {
  const entries = (label: string, record: Readonly<Record<string, number>>): Sample[] =>
    Object.entries(record).map(([value, count]) => ({ labels: { [label]: value }, value: count }))
  return [
    {
      kind: 'gauge',
      name: 'meshkv_seq_guard_state',
      help: 'Whether this node may make changes of its own: 1 for the current state of its seq guard (verifying, writable, recovering, diverged, conflict), 0 for the others.',
      labels: ['state'],
      read: () => {
        const current = scrape.status().seqGuard.state
        return SEQ_GUARD_STATES.map((state) => ({ labels: { state }, value: state === current ? 1 : 0 }))
      },
    },
    {
      kind: 'gauge',
      name: 'meshkv_ready',
      help: 'Whether the node takes writes (what /readyz answers, the app aside): 1 or 0.',
      read: () => one(scrape.status().ready ? 1 : 0),
    },
    {
      kind: 'gauge',
      name: 'meshkv_members',
      help: 'Members of the cluster as this node counts them for write and read concerns, itself included.',
      read: () => one(scrape.status().members),
    },
    {
      kind: 'counter',
      name: 'meshkv_siblings_created_total',
      help: 'Puts and deletes (local or from a peer) that left their key with siblings: concurrent writes, by type (put, delete).',
      labels: ['type'],
      read: () => {
        const { put, del } = scrape.status().siblingsCreated
        return [
          { labels: { type: 'put' }, value: put },
          { labels: { type: 'delete' }, value: del },
        ]
      },
    },
    {
      kind: 'counter',
      name: 'meshkv_write_concern_timeouts_total',
      help: 'Writes answered 504 MESHKV_ERR_WRITE_CONCERN_TIMEOUT (committed, not yet held by enough members), by w.',
      labels: ['w'],
      read: () => entries('w', scrape.status().writeConcernTimeouts),
    },
    {
      kind: 'counter',
      name: 'meshkv_token_refusals_total',
      help: 'Requests auth refused, by reason: missing (no token: 401), invalid (unknown or revoked: 401), forbidden (role or prefix: 403).',
      labels: ['reason'],
      read: () => entries('reason', { ...authRefused }),
    },
  ]
}
