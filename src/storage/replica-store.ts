/**
 * What replication needs of a store: the log, the dot index, applying a peer's change, and news
 * of each commit. `Store` implements it over LevelDB or memory; the replication room sees only
 * this interface.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import type { CheckedStates, SnapshotIntake } from './snapshot-intake.js'
import type { CommitResult, LogEntry, PurgeResult, RemoteRefused, SnapshotEntry, StoreSnapshot } from './store.js'

export interface ReplicaStore {
  readonly nodeId: NodeId
  readonly vc: VectorClock
  readonly lsn: number
  /** The vector clock as of the last fsynced batch: all an ack or a sync may claim. */
  readonly durableVc: VectorClock
  /** Resolves once every change committed so far is fsynced (one fsync shared by every caller). */
  makeDurable(): Promise<void>
  readLog(afterLsn: number, limit: number, bytesMax?: number): Promise<LogEntry[]>
  firstLsn(): Promise<number>
  lsnOfDot(dot: Dot): Promise<number | undefined>
  /**
   * Applies peers' changes in causal order: each one's result, or what refused it. `sync` says
   * which must be in a batch that is fsynced (a peer waits for its ack: replication/acks.ts).
   */
  applyRemoteMany(
    changes: readonly Change[],
    sync: (change: Change) => boolean,
  ): Promise<readonly (CommitResult | RemoteRefused)[]>
  /** Calls `check` as each change of this node's own is made; a throw refuses it (seq-guard.ts). */
  guardOwnWrites(check: (() => void) | null): void
  onCommit(listener: (entries: readonly LogEntry[]) => void): () => void
  /** A consistent view of every state and the vector clock it reflects (a snapshot to send). */
  snapshot(): Promise<StoreSnapshot>
  /** Begins taking in a received snapshot that reflects `vc` (snapshot-intake.ts). */
  receiveSnapshot(vc: VectorClock): Promise<SnapshotIntake>
  /** Checks received snapshot states for an intake (throws `MESHKV_ERR_DECODE`); synchronous. */
  checkSnapshotStates(entries: readonly SnapshotEntry[]): CheckedStates
  purge(logCovered: VectorClock, stableCut: VectorClock, keepLast?: number): Promise<PurgeResult>
}
