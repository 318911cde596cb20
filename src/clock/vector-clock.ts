/**
 * Vector clocks: `nodeId → seq`, the highest seq of each origin applied. Applied changes are
 * contiguous per origin, so a vector clock names exactly the set of changes applied. Missing
 * entries are 0. Values are plain frozen-by-convention objects with sorted keys when made here.
 */
import type { Dot, NodeId } from './dot.js'
import { isNodeId, isSeq } from './dot.js'

export type VectorClock = Readonly<Record<NodeId, number>>

export const VC_EMPTY: VectorClock = Object.freeze({})

export type Ordering = 'before' | 'after' | 'equal' | 'concurrent'

export function isVectorClock(value: unknown): value is VectorClock {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return false
  for (const [node, seq] of Object.entries(value)) {
    if (!isNodeId(node) || !isSeq(seq)) return false
  }
  return true
}

export function vcGet(vc: VectorClock, node: NodeId): number {
  return Object.hasOwn(vc, node) ? (vc[node] as number) : 0
}

/** A canonical copy: keys sorted, zero entries dropped. */
export function vcNormalize(entries: Iterable<[NodeId, number]>): VectorClock {
  const sorted = [...entries].filter(([, seq]) => seq > 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const out: Record<NodeId, number> = {}
  for (const [node, seq] of sorted) out[node] = seq
  return out
}

export function vcSet(vc: VectorClock, node: NodeId, seq: number): VectorClock {
  // The common case (an origin the clock holds moves on) keeps the key order: a copy, no sort.
  if (seq > 0 && Object.hasOwn(vc, node)) return { ...vc, [node]: seq }
  return vcNormalize([...(Object.entries(vc) as [NodeId, number][]).filter(([n]) => n !== node), [node, seq]])
}

/** `vc` joined with the change `dot` names (and so with every earlier change of its origin). */
export function vcWithDot(vc: VectorClock, dot: Dot): VectorClock {
  return vcHasDot(vc, dot) ? vc : vcSet(vc, dot.node, dot.seq)
}

/** Does `vc` include the change named by `dot`? */
export function vcHasDot(vc: VectorClock, dot: Dot): boolean {
  return vcGet(vc, dot.node) >= dot.seq
}

/** Does `a` cover `b` (every entry of b is ≤ the entry of a)? */
export function vcCovers(a: VectorClock, b: VectorClock): boolean {
  // for-in, not Object.entries: no array per entry (every received change's deps are checked).
  for (const node in b) {
    if (vcGet(a, node as NodeId) < (b[node as NodeId] as number)) return false
  }
  return true
}

export function vcCompare(a: VectorClock, b: VectorClock): Ordering {
  const aCoversB = vcCovers(a, b)
  const bCoversA = vcCovers(b, a)
  if (aCoversB && bCoversA) return 'equal'
  if (aCoversB) return 'after'
  if (bCoversA) return 'before'
  return 'concurrent'
}

export function vcEquals(a: VectorClock, b: VectorClock): boolean {
  return vcCompare(a, b) === 'equal'
}

/** Pointwise maximum: the union of both sets of changes. */
export function vcJoin(a: VectorClock, b: VectorClock): VectorClock {
  // Most joins add nothing new (a pending clock joined with what it already covers): no copy.
  if (vcCovers(a, b)) return a
  // An ack names entries `a` mostly has already: a copy keeps the key order, no sort.
  if (Object.keys(b).every((node) => Object.hasOwn(a, node))) {
    const out: Record<NodeId, number> = { ...a }
    for (const [node, seq] of Object.entries(b) as [NodeId, number][]) out[node] = Math.max(out[node] as number, seq)
    return out
  }
  const out = new Map<NodeId, number>(Object.entries(a) as [NodeId, number][])
  for (const [node, seq] of Object.entries(b) as [NodeId, number][]) {
    out.set(node, Math.max(out.get(node) ?? 0, seq))
  }
  return vcNormalize(out)
}

/** Pointwise minimum: the changes both have. */
export function vcMeet(a: VectorClock, b: VectorClock): VectorClock {
  const out: [NodeId, number][] = []
  for (const [node, seq] of Object.entries(a) as [NodeId, number][]) {
    out.push([node, Math.min(seq, vcGet(b, node))])
  }
  return vcNormalize(out)
}

/** How many changes `a` has that `b` lacks. */
export function vcDistance(a: VectorClock, b: VectorClock): number {
  let total = 0
  for (const [node, seq] of Object.entries(a) as [NodeId, number][]) {
    total += Math.max(0, seq - vcGet(b, node))
  }
  return total
}
