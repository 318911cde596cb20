/**
 * The types of the store's public face: its options, what a commit answers, log entries, read
 * views and what garbage collection reports. They live apart from `Store` so the files that
 * implement its parts can use them without importing the facade.
 */
import type { VectorClock } from '../clock/index.js'
import type { AnyState, Change, Space, StateOf } from '../crdt/index.js'
import type { Backend, Range } from './backend.js'

export interface StoreOptions {
  backend: Backend
  /** fsync each batch. */
  sync?: boolean
  now: () => number
  randomBytes: (size: number) => Uint8Array
  maxClockOffsetMs?: number
  /** Largest encoded change this node may make (it must fit in a 4 MiB peer frame). */
  changeBytesMax?: number
}

export interface LogEntry {
  readonly lsn: number
  readonly change: Change
}

export interface CommitResult {
  /** `null` when the intents changed nothing. */
  readonly change: Change | null
  /** The LSN of the change, or the current LSN when nothing changed. */
  readonly lsn: number
  /** The store's vector clock right after this commit. */
  readonly vc: VectorClock
  /** States after the commit of every key the intents touched, by `space\0key`. */
  readonly states: ReadonlyMap<string, AnyState>
}

/** A peer's change the store refused in `applyRemoteMany`: what `applyRemote` would have thrown. */
export interface RemoteRefused {
  readonly refused: unknown
}

export interface StateReader {
  readonly vc: VectorClock
  readonly lsn: number
  getState<S extends Space>(space: S, key: string): Promise<StateOf[S]>
  iterateStates<S extends Space>(space: S, range: Range): AsyncIterable<[string, StateOf[S]]>
}

export interface StoreSnapshot extends StateReader {
  /** Encoded states of one space, as stored (what a snapshot sender ships without re-encoding). */
  iterateRaw(space: Space, range: Range): AsyncIterable<[string, Uint8Array]>
  close(): Promise<void>
}

/** One state of a snapshot on the wire: its space, key and encoded state. */
export type SnapshotEntry = readonly [space: Space, key: string, state: Uint8Array]

/** What one garbage collection pass did and found. */
export interface PurgeResult {
  logPurged: number
  tombstonesPurged: number
}
