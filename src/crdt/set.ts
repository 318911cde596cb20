/**
 * The add-wins observed-remove set. Each member holds the dots of the adds that put it there; an
 * add replaces the dots it saw with its own, a remove drops only the dots it saw. An add
 * concurrent with a remove keeps its dot, so the add wins. A member with no dots is absent.
 */
import type { Dot, VectorClock } from '../clock/index.js'
import { compareDots } from '../clock/index.js'
import type { SetAddOp, SetRemoveOp } from './change.js'
import { dotSet, joinByDot } from './dots.js'

export interface SetEntry {
  readonly member: string
  /** Sorted by dot, never empty in a canonical state. */
  readonly dots: readonly Dot[]
}

export interface SetState {
  /** Sorted by member (code-unit order): the canonical form. */
  readonly entries: readonly SetEntry[]
}

export const SET_EMPTY: SetState = Object.freeze({ entries: Object.freeze([]) })

export function applySet(state: SetState, op: SetAddOp | SetRemoveOp, dot: Dot): SetState {
  const seen = dotSet(op.context)
  const entries = state.entries.filter((entry) => entry.member !== op.member)
  const previous = state.entries.find((entry) => entry.member === op.member)?.dots ?? []
  const kept = previous.filter((held) => !seen.has(`${held.node}:${held.seq}`))
  const dots = op.type === 'set.add' ? [...kept, dot] : kept
  if (dots.length > 0) entries.push({ member: op.member, dots: [...dots].sort(compareDots) })
  return canonicalSet(entries)
}

export function joinSet(a: SetState, contextA: VectorClock, b: SetState, contextB: VectorClock): SetState {
  const dotsA = new Map(a.entries.map((entry) => [entry.member, entry.dots.map((dot) => ({ dot }))]))
  const dotsB = new Map(b.entries.map((entry) => [entry.member, entry.dots.map((dot) => ({ dot }))]))
  const entries: SetEntry[] = []
  for (const member of new Set([...dotsA.keys(), ...dotsB.keys()])) {
    const dots = joinByDot(dotsA.get(member) ?? [], contextA, dotsB.get(member) ?? [], contextB).map(
      (entry) => entry.dot,
    )
    if (dots.length > 0) entries.push({ member, dots: dots.sort(compareDots) })
  }
  return canonicalSet(entries)
}

export function canonicalSet(entries: readonly SetEntry[]): SetState {
  return { entries: [...entries].sort((x, y) => (x.member < y.member ? -1 : x.member > y.member ? 1 : 0)) }
}

export function setMembers(state: SetState): string[] {
  return state.entries.map((entry) => entry.member)
}

export function setHas(state: SetState, member: string): boolean {
  return state.entries.some((entry) => entry.member === member)
}

/** The dots of `member` a reader observed: the context of an add or remove of it. */
export function setMemberDots(state: SetState, member: string): Dot[] {
  return [...(state.entries.find((entry) => entry.member === member)?.dots ?? [])]
}

/**
 * Per-key limits a local add may not push a set past (docs/consistency.md, "Per-key limits"): a
 * set's state is one value that every add, remove and read decodes whole, and a snapshot moves
 * whole. Merges are never refused, so a set merged from several nodes may pass these.
 */
export const SET_MEMBERS_MAX = 10_000
export const SET_BYTES_MAX = 8 * 1024 * 1024

/** Overhead per dot and per entry (an upper bound on their encoding). */
const DOT_BYTES = 40
const ENTRY_OVERHEAD_BYTES = 24

/** The size of one set entry as stored, with `dots` dots. */
export function setEntryBytes(member: string, dots: number): number {
  return ENTRY_OVERHEAD_BYTES + Buffer.byteLength(member) + dots * DOT_BYTES
}

export function setBytes(state: SetState): number {
  let bytes = 16
  for (const entry of state.entries) bytes += setEntryBytes(entry.member, entry.dots.length)
  return bytes
}
