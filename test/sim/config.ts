/**
 * The simulator's run shape (docs/testing.md, level L1): the constants every part of a run shares,
 * which faults a run may have, the shape drawn from a seed, what a run counts and returns, and the
 * replay line a failure prints. Split from simulation.ts so the shape can be read (and drawn, by the
 * shrinker and the command line) without the machinery of a run.
 */
import type { Violation } from '../checkers/checks.js'
import type { ChangeRecord, FinalNodeState, HistoryEvent } from '../checkers/history.js'
import { isMeshError } from '../../src/errors.js'
import { drawBigKey } from './nemesis-bigkey.js'

export const MAX_OFFSET_MS = 2000
export const WRITE_TIMEOUT_MS = 2500
export const READ_TIMEOUT_MS = 2000
/**
 * After a start, how long a node's own writes wait for members that do not sync (the seq guard's
 * grace, src/replication/seq-guard.ts): two of the longest peer timeouts, as a real node's two.
 */
export const SEQ_GUARD_GRACE_MS = 10_000
/**
 * Events a run may take in all: a run spends a few thousand, tens of thousands at most; one past
 * this is a busy loop, ended as a liveness failure rather than run for minutes.
 */
export const EVENTS_MAX = 200_000
/** Virtual time allowed from the final heal to quiescence. */
export const QUIESCE_DEADLINE_MS = 120_000

export const KV_KEYS = ['k0', 'k1', 'k2'] as const
export const COUNTER_NAMES = ['c0', 'c1'] as const
export const SET_NAMES = ['s0', 's1'] as const
export const MEMBERS = ['m0', 'm1', 'm2'] as const

export interface Faults {
  drop: boolean
  partition: boolean
  crash: boolean
  /** Crashes may be power losses (else always kill -9). */
  power: boolean
  skew: boolean
  stall: boolean
  /** A brand-new node joins mid-run, configured with one member. */
  join: boolean
  /** A member goes down for good and a live one forgets it. */
  forget: boolean
  /**
   * A live member still writing is forgotten (with force) at a random moment, and goes down for
   * good a little later; it takes the place of `forget` in the run (one forgotten member a run).
   */
  forgetLive: boolean
  /** With a join: puts of about 1 MiB grow one key past a frame around the join (nemesis-bigkey.ts). */
  bigKey: boolean
  /** A node is started again on an older copy of its disk (operator.ts). */
  restore: boolean
  /** A second process runs a node's id on a copy of its disk, beside the original (operator.ts). */
  clone: boolean
}

export const FAULT_NAMES: readonly (keyof Faults)[] = [
  'drop',
  'partition',
  'crash',
  'power',
  'skew',
  'stall',
  'join',
  'forget',
  'forgetLive',
  'bigKey',
  'restore',
  'clone',
]

export interface SimConfig {
  seed: number
  nodes: number
  clients: number
  /** Operations over all clients. */
  ops: number
  /** Nodes that do not fsync each batch (the last ones). */
  unsynced: number
  faults: Faults
}

export type ConfigOverrides = Partial<Omit<SimConfig, 'seed' | 'faults'>> & { faults?: Partial<Faults> }

export interface SimStats {
  events: number
  deliveries: number
  changes: number
  ops: number
  acknowledged: number
  unknown: number
  failed: number
  crashes: number
  lossyCrashes: number
  partitions: number
  drops: number
  refusedSkew: number
  duplicates: number
  /** Links formed, and links closed at once because their pair of nodes had one already. */
  links: number
  duplicateLinks: number
  /** Brand-new nodes that joined (became ready), and members forgotten. */
  joins: number
  forgets: number
  /** Writes a live, forgotten member refused once it learnt it was forgotten. */
  writesRefusedForgotten: number
  /** Big puts made (nemesis-bigkey.ts), and those refused for taking the key past its limit. */
  bigPuts: number
  bigPutsRefused: number
  /** States larger than a frame that a node took in a snapshot (sent in parts). */
  bigStatesSnapshotted: number
  /** Snapshots a node began taking straight into place (brand new) or on the stage (it held data). */
  snapshotsIntoPlace: number
  snapshotsStaged: number
  /** Nodes started again on an older copy of their disk; second processes of one node id. */
  restores: number
  clones: number
  /** Restores that took own changes away (the copy was older), and restored nodes that got them back. */
  rolledBack: number
  recoveries: number
  /** Writes the seq guard refused (a node verifying, recovering, or in conflict). */
  writesRefusedGuard: number
  /** Virtual ms from start to the end of quiescence. */
  virtualMs: number
}

export function emptyStats(): SimStats {
  return {
    events: 0,
    deliveries: 0,
    changes: 0,
    ops: 0,
    acknowledged: 0,
    unknown: 0,
    failed: 0,
    crashes: 0,
    lossyCrashes: 0,
    partitions: 0,
    drops: 0,
    refusedSkew: 0,
    duplicates: 0,
    links: 0,
    duplicateLinks: 0,
    joins: 0,
    forgets: 0,
    writesRefusedForgotten: 0,
    bigPuts: 0,
    bigPutsRefused: 0,
    bigStatesSnapshotted: 0,
    snapshotsIntoPlace: 0,
    snapshotsStaged: 0,
    restores: 0,
    clones: 0,
    rolledBack: 0,
    recoveries: 0,
    writesRefusedGuard: 0,
    virtualMs: 0,
  }
}

export interface SimResult {
  seed: number
  config: SimConfig
  history: HistoryEvent[]
  finals: FinalNodeState[]
  changes: ChangeRecord[]
  nodeIds: Record<string, string>
  /** sha256 of the trace: every event, delivery and history entry, in order. */
  trace: string
  stats: SimStats
  violations: Violation[]
}

/** The run's shape, drawn first from the run's PRNG; overrides replace draws (the draws still happen). */
export function drawConfig(seed: number, random: () => number, overrides: ConfigOverrides = {}): SimConfig {
  const drawn: SimConfig = {
    seed,
    nodes: 3 + Math.floor(random() * 3),
    clients: 2 + Math.floor(random() * 5),
    ops: 40 + Math.floor(random() * 160),
    unsynced: random() < 0.5 ? 1 : 0,
    faults: {
      drop: random() < 0.7,
      partition: random() < 0.7,
      crash: random() < 0.6,
      power: random() < 0.6,
      skew: random() < 0.6,
      stall: random() < 0.5,
      join: random() < 0.4,
      forget: random() < 0.4,
      // From the seed, not the PRNG: runs without it draw as they did before it existed.
      forgetLive: Math.imul(seed, 2654435761) >>> 29 < 3,
      bigKey: drawBigKey(seed),
      // In every run, drawing nothing.
      restore: true,
      clone: true,
    },
  }
  return { ...drawn, ...overrides, seed, faults: { ...drawn.faults, ...overrides.faults } }
}

/** The command that replays one seed (with the shape overrides a shrunk failure prints). */
export function replayLine(seed: number, overrides: ConfigOverrides = {}): string {
  const extra = Object.keys(overrides).length === 0 ? '' : ` --config '${JSON.stringify(overrides)}'`
  return `npm run sim -- --seed ${seed}${extra}`
}

/** Codes of the seq guard's refusal of an own write (src/replication/seq-guard.ts): nothing was written. */
export const GUARD_CODES = ['MESHKV_ERR_RECOVERING', 'MESHKV_ERR_NODE_ID_CONFLICT'] as const

export function guardRefused(error: unknown): boolean {
  return GUARD_CODES.some((code) => isMeshError(error, code))
}
