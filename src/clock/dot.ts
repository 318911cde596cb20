/**
 * Node ids and dots. A dot `(node, seq)` names one change: the seq-th change made by that node.
 * Each node numbers its own changes 1, 2, 3 … with no gaps.
 */
import { MeshError } from '../errors.js'

/** 16 lowercase hex characters (8 random bytes), made once per data directory. */
export type NodeId = string & { readonly __brand: 'NodeId' }

export interface Dot {
  readonly node: NodeId
  readonly seq: number
}

const NODE_ID_PATTERN = /^[0-9a-f]{16}$/

export function isNodeId(value: unknown): value is NodeId {
  return typeof value === 'string' && NODE_ID_PATTERN.test(value)
}

export function toNodeId(value: string): NodeId {
  if (!isNodeId(value)) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `not a node id (16 hex characters): ${JSON.stringify(value)}`)
  }
  return value
}

/** A node id from 8 bytes of randomness; the caller supplies the bytes (randomness is an input). */
export function nodeIdFromBytes(bytes: Uint8Array): NodeId {
  if (bytes.length !== 8) throw new Error('a node id needs exactly 8 bytes')
  return Buffer.from(bytes).toString('hex') as NodeId
}

export function isSeq(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1
}

export function isDot(value: unknown): value is Dot {
  if (typeof value !== 'object' || value === null) return false
  const dot = value as Record<string, unknown>
  return isNodeId(dot['node']) && isSeq(dot['seq'])
}

export function dotEquals(a: Dot, b: Dot): boolean {
  return a.node === b.node && a.seq === b.seq
}

/** A total order on dots, for canonical (sorted) encodings. */
export function compareDots(a: Dot, b: Dot): number {
  if (a.node !== b.node) return a.node < b.node ? -1 : 1
  return a.seq - b.seq
}

export function dotKey(dot: Dot): string {
  return `${dot.node}:${dot.seq}`
}
