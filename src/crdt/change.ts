/**
 * A change is one write as created by one node: the unit of replication, logging and merging.
 * It carries its dot (identity), its deps (the origin's vector clock when it was made, so the
 * receiver can deliver in causal order), its HLC (for last-write-wins) and one or more ops.
 * A change is applied atomically: a batch of several keys is one change.
 */
import type { Dot, Hlc, VectorClock } from '../clock/index.js'
import type { DocUpdateOp } from './doc.js'
import type { Intent } from './intent.js'

/** The key spaces: a key can never hold two types at once because each type has its own space. */
export type Space = 'kv' | 'counter' | 'set' | 'doc'
export const SPACES: readonly Space[] = ['kv', 'counter', 'set', 'doc']

export type { DocUpdateOp }

export interface KvPutOp {
  readonly type: 'kv.put'
  readonly key: string
  readonly value: Uint8Array
  readonly contentType: string
  /** The dots this write replaces (what its writer saw). Others stay as concurrent siblings. */
  readonly context: readonly Dot[]
}

export interface KvDelOp {
  readonly type: 'kv.del'
  readonly key: string
  readonly context: readonly Dot[]
}

export interface CounterAddOp {
  readonly type: 'counter.add'
  readonly name: string
  /** A non-zero safe integer. */
  readonly delta: number
}

export interface SetAddOp {
  readonly type: 'set.add'
  readonly name: string
  readonly member: string
  /** The dots of this member the writer saw; the add replaces them with its own dot. */
  readonly context: readonly Dot[]
}

export interface SetRemoveOp {
  readonly type: 'set.remove'
  readonly name: string
  readonly member: string
  /** The dots of this member the writer saw; only those are removed (add wins over remove). */
  readonly context: readonly Dot[]
}

export type Op = KvPutOp | KvDelOp | CounterAddOp | SetAddOp | SetRemoveOp | DocUpdateOp

export interface Change {
  readonly dot: Dot
  readonly deps: VectorClock
  readonly hlc: Hlc
  readonly ops: readonly Op[]
}

/** Which space and key an op (or the intent it comes from: they share types and names) writes. */
export function opTarget(op: Op | Intent): { space: Space; key: string } {
  switch (op.type) {
    case 'kv.put':
    case 'kv.del':
      return { space: 'kv', key: op.key }
    case 'counter.add':
      return { space: 'counter', key: op.name }
    case 'set.add':
    case 'set.remove':
      return { space: 'set', key: op.name }
    case 'doc.update':
    case 'doc.delete':
      return { space: 'doc', key: op.name }
  }
}
