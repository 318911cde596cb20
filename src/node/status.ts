/** What `status()` and `gcStatus()` report: plain reads of the store, the cluster and the replicator. */
import type { VectorClock } from '../clock/index.js'
import type { Replicator } from '../replication/index.js'
import type { Store } from '../storage/index.js'
import type { Cluster } from './cluster.js'
import type { Limits } from './options.js'
import type { NodeStatus } from './types.js'
import { encodeCausalToken } from '../clock/index.js'
import { PACKAGE_VERSION } from './version.js'

export interface GcReport {
  logEntries: number
  tombstones: number
  stableCut: VectorClock
  heldByAll: VectorClock
  logPurged: number
  tombstonesPurged: number
  /** Garbage collection passes run since the node started (one a tick). */
  passes: number
}

export function nodeStatus(node: {
  store: Store
  cluster: Cluster
  ready: boolean
  limits: Limits
  uptimeMs: number
  parked: NodeStatus['parked']
}): NodeStatus {
  const { store, cluster } = node
  return {
    nodeId: store.nodeId,
    ready: node.ready,
    forgotten: cluster.forgotten,
    seqGuard: cluster.replicator.seqGuard.status,
    vc: store.vc,
    token: encodeCausalToken(store.vc),
    lsn: store.lsn,
    hlc: store.hlc,
    version: PACKAGE_VERSION,
    uptimeMs: node.uptimeMs,
    storage: store.kind,
    limits: { ...node.limits },
    members: cluster.members(),
    role: cluster.role,
    linked: cluster.linked(),
    replication: cluster.replicator.counters,
    transport: cluster.transportCounters(),
    snapshot: cluster.replicator.snapshotStatus(),
    parked: node.parked,
    writeConcernTimeouts: { ...cluster.concernTimeouts },
    siblingsCreated: { ...store.siblingsCreated },
    peerTraffic: Object.fromEntries(
      [...(cluster.transport?.traffic ?? [])].map(([peer, traffic]) => [peer, { ...traffic }]),
    ) as NodeStatus['peerTraffic'],
  }
}

export async function gcReport(store: Store, replicator: Replicator): Promise<GcReport> {
  const gc = replicator.gcStatus
  return {
    logEntries: await store.logSize(),
    tombstones: await store.tombstoneCount(),
    stableCut: gc.stableCut,
    heldByAll: gc.heldByAll,
    logPurged: gc.logPurged,
    tombstonesPurged: gc.tombstonesPurged,
    passes: gc.passes,
  }
}
