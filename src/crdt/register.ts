/**
 * The `kv` register: a multi-value register. Concurrent writes are kept as siblings; a read
 * returns the last-write-wins sibling (highest HLC, then node id). A write replaces exactly the
 * dots in its context. A delete writes a tombstone sibling (value `null`), so a delete concurrent
 * with a write is a sibling like any other and both sides converge.
 *
 * A write also drops every tombstone in its causal past (`deps`), named in its context or not: a
 * delete that the writer had seen is over. Every node applies this the same way (deps travel
 * with the change), and it is what lets garbage collection purge a stable tombstone: every
 * change that can still arrive follows it, so would drop it anyway.
 */
import type { Dot, Hlc, VectorClock } from '../clock/index.js'
import { compareDots, compareHlc, vcHasDot } from '../clock/index.js'
import type { KvDelOp, KvPutOp } from './change.js'
import { dotSet, joinByDot } from './dots.js'

export interface Sibling {
  readonly dot: Dot
  readonly hlc: Hlc
  /** `null` marks a tombstone (a delete). */
  readonly value: Uint8Array | null
  readonly contentType: string | null
}

export interface RegisterState {
  /** Sorted by dot: the canonical form, so equal states encode to equal bytes. */
  readonly siblings: readonly Sibling[]
}

export const REGISTER_EMPTY: RegisterState = Object.freeze({ siblings: Object.freeze([]) })

export function applyRegister(
  state: RegisterState,
  op: KvPutOp | KvDelOp,
  dot: Dot,
  hlc: Hlc,
  deps: VectorClock = {},
): RegisterState {
  const own: Sibling =
    op.type === 'kv.put'
      ? { dot, hlc, value: op.value, contentType: op.contentType }
      : { dot, hlc, value: null, contentType: null }
  // A key written for the first time (most of a catch-up): nothing to replace or sort.
  if (state.siblings.length === 0) return { siblings: [own] }
  const replaced = op.context.length === 0 ? null : dotSet(op.context)
  const kept: Sibling[] = []
  for (const sibling of state.siblings)
    if (
      replaced?.has(`${sibling.dot.node}:${sibling.dot.seq}`) !== true &&
      !(sibling.value === null && vcHasDot(deps, sibling.dot))
    )
      kept.push(sibling)
  kept.push(own)
  // `kept` is this call's own array: sorted in place.
  return { siblings: kept.length === 1 ? kept : kept.sort((x, y) => compareDots(x.dot, y.dot)) }
}

export function joinRegister(
  a: RegisterState,
  contextA: VectorClock,
  b: RegisterState,
  contextB: VectorClock,
): RegisterState {
  return canonicalRegister(joinByDot(a.siblings, contextA, b.siblings, contextB))
}

export function canonicalRegister(siblings: readonly Sibling[]): RegisterState {
  return { siblings: [...siblings].sort((x, y) => compareDots(x.dot, y.dot)) }
}

/** Orders siblings for last-write-wins: highest HLC, then highest node id, then highest seq. */
export function compareLww(a: Sibling, b: Sibling): number {
  const byClock = compareHlc(a.hlc, b.hlc)
  if (byClock !== 0) return byClock
  if (a.dot.node !== b.dot.node) return a.dot.node < b.dot.node ? -1 : 1
  return a.dot.seq - b.dot.seq
}

/** The sibling a plain read returns (which may be a tombstone), or undefined for no siblings. */
export function lwwSibling(state: RegisterState): Sibling | undefined {
  let best: Sibling | undefined
  for (const sibling of state.siblings) {
    if (best === undefined || compareLww(sibling, best) > 0) best = sibling
  }
  return best
}

/** The dots a read of this register observed: the context of a write that replaces them all. */
export function registerDots(state: RegisterState): Dot[] {
  return state.siblings.map((sibling) => sibling.dot)
}

/** True when a read finds no value: no siblings, or the winning sibling is a tombstone. */
export function registerIsDeleted(state: RegisterState): boolean {
  const winner = lwwSibling(state)
  return winner === undefined || winner.value === null
}

/**
 * Per-key limits a local write may not push a register past (docs/consistency.md, "Per-key
 * limits"). A register's state travels whole (a snapshot part, a quorum-read answer, one LevelDB
 * value) and is decoded whole on every write to its key, so it must stay small enough to move and
 * to read. Merges are never refused, so a state merged from several nodes may pass these.
 */
export const REGISTER_SIBLINGS_MAX = 32
export const REGISTER_BYTES_MAX = 8 * 1024 * 1024

/** Overhead per sibling beyond its value and content type: dot, HLC, field names (an upper bound). */
const SIBLING_OVERHEAD_BYTES = 96

/** A register state's size as stored: its values and content types plus a fixed overhead per sibling. */
export function registerBytes(siblings: readonly Sibling[]): number {
  let bytes = 16
  for (const sibling of siblings) bytes += siblingBytes(sibling.value, sibling.contentType)
  return bytes
}

export function siblingBytes(value: Uint8Array | null, contentType: string | null): number {
  return SIBLING_OVERHEAD_BYTES + (value?.length ?? 0) + (contentType?.length ?? 0)
}
