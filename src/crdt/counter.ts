/**
 * The PN-counter: per origin node, the total of its increments (`p`) and of its decrements (`n`).
 * Each origin's totals only grow and are applied in that origin's order, so `join` is the
 * pointwise maximum and every increment counts exactly once.
 */
import type { Dot, NodeId } from '../clock/index.js'
import { MeshError } from '../errors.js'
import type { CounterAddOp } from './change.js'

export interface CounterState {
  readonly p: Readonly<Record<NodeId, number>>
  readonly n: Readonly<Record<NodeId, number>>
}

export const COUNTER_EMPTY: CounterState = Object.freeze({ p: Object.freeze({}), n: Object.freeze({}) })

/**
 * Applies an increment. One that would take a part or the value past ±(2^53 - 1) is refused
 * (`MESHKV_ERR_COUNTER_OVERFLOW`), a peer's as a local one: a sum past it is no longer exact, and
 * the counter would differ from node to node.
 */
export function applyCounter(state: CounterState, op: CounterAddOp, dot: Dot): CounterState {
  if (!counterAddIsExact(state, dot.node, op.delta))
    throw new MeshError('MESHKV_ERR_COUNTER_OVERFLOW', `counter ${JSON.stringify(op.name)}: the sum would not be exact`)
  if (op.delta >= 0) return { p: addTo(state.p, dot.node, op.delta), n: state.n }
  return { p: state.p, n: addTo(state.n, dot.node, -op.delta) }
}

export function joinCounter(a: CounterState, b: CounterState): CounterState {
  return { p: maxEach(a.p, b.p), n: maxEach(a.n, b.n) }
}

export function counterValue(state: CounterState): number {
  return sum(state.p) - sum(state.n)
}

/** Would applying `delta` from `node` keep every part and the value exact? */
export function counterAddIsExact(state: CounterState, node: NodeId, delta: number): boolean {
  if (!Number.isSafeInteger(delta)) return false
  const part = delta >= 0 ? state.p : state.n
  const after = (part[node] ?? 0) + Math.abs(delta)
  const total = sum(part) + Math.abs(delta)
  return Number.isSafeInteger(after) && Number.isSafeInteger(total)
}

function addTo(part: Readonly<Record<NodeId, number>>, node: NodeId, amount: number): Record<NodeId, number> {
  return sortedRecord({ ...part, [node]: (part[node] ?? 0) + amount })
}

function maxEach(a: Readonly<Record<NodeId, number>>, b: Readonly<Record<NodeId, number>>): Record<NodeId, number> {
  const out: Record<NodeId, number> = { ...a }
  for (const [node, total] of Object.entries(b) as [NodeId, number][]) out[node] = Math.max(out[node] ?? 0, total)
  return sortedRecord(out)
}

function sortedRecord(record: Record<NodeId, number>): Record<NodeId, number> {
  const out: Record<NodeId, number> = {}
  for (const node of (Object.keys(record) as NodeId[]).sort()) out[node] = record[node] as number
  return out
}

function sum(part: Readonly<Record<NodeId, number>>): number {
  let total = 0
  for (const value of Object.values(part)) total += value
  return total
}
