/**
 * Shape guards for everything that crosses the wire or the disk. Decoded bytes are only trusted
 * after a guard has checked every field; a guard never throws, it answers.
 */
import type { Dot, Hlc, VectorClock } from '../clock/index.js'
import { isDot, isHlc, isNodeId, isSeq, isVectorClock } from '../clock/index.js'
import type { Change, CounterState, DocState, Op, RegisterState, SetState, Sibling } from '../crdt/index.js'
import { decodesAsYjsUpdate, isYjsUpdate } from '../crdt/index.js'

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)
}

/** A record made by a decoder: no class instance, no prototype other than Object's (or none). */
function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (!isRecord(value)) return false
  const prototype: unknown = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array
}

function isString(value: unknown): value is string {
  return typeof value === 'string'
}

/**
 * The longest key (or counter, set or member name) any node takes from a peer, in UTF-8 bytes.
 * Protocol-wide, not each node's own limit: a change refused by one node would block every later
 * change of its origin there. A node's own `keyBytesMax` may not exceed it.
 */
export const KEY_BYTES_PROTOCOL_MAX = 64 * 1024

/** A key a node could have written: non-empty, well-formed Unicode, within the protocol bound. */
export function isKey(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.isWellFormed() &&
    Buffer.byteLength(value) <= KEY_BYTES_PROTOCOL_MAX
  )
}

function isDots(value: unknown): value is Dot[] {
  return Array.isArray(value) && value.every(isDot)
}

export function isOp(value: unknown): value is Op {
  if (!isPlainRecord(value)) return false
  switch (value['type']) {
    case 'kv.put':
      return (
        isKey(value['key']) && isBytes(value['value']) && isString(value['contentType']) && isDots(value['context'])
      )
    case 'kv.del':
      return isKey(value['key']) && isDots(value['context'])
    case 'counter.add':
      return isKey(value['name']) && Number.isSafeInteger(value['delta']) && value['delta'] !== 0
    case 'set.add':
    case 'set.remove':
      return isKey(value['name']) && isKey(value['member']) && isDots(value['context'])
    case 'doc.update':
      return isKey(value['name']) && isBytes(value['update']) && isYjsUpdate(value['update'])
    default:
      return false
  }
}

export function isChange(value: unknown): value is Change {
  if (!isPlainRecord(value)) return false
  const ops = value['ops']
  return (
    isDot(value['dot']) &&
    isVectorClock(value['deps']) &&
    isHlc(value['hlc']) &&
    Array.isArray(ops) &&
    ops.length > 0 &&
    ops.every(isOp)
  )
}

/**
 * A change that passed `isChange`, copied field by field into fresh plain objects: only the
 * fields the types name survive, so nothing extra a peer put in (a `__proto__` key, unknown
 * fields) rides along into the log, the store or a merge.
 */
export function rebuildChange(change: Change): Change {
  return {
    dot: rebuildDot(change.dot),
    deps: rebuildClock(change.deps),
    hlc: { wallMs: change.hlc.wallMs, logical: change.hlc.logical } satisfies Hlc,
    ops: change.ops.map(rebuildOp),
  }
}

function rebuildOp(op: Op): Op {
  switch (op.type) {
    case 'kv.put':
      return {
        type: op.type,
        key: op.key,
        value: op.value,
        contentType: op.contentType,
        context: op.context.map(rebuildDot),
      }
    case 'kv.del':
      return { type: op.type, key: op.key, context: op.context.map(rebuildDot) }
    case 'counter.add':
      return { type: op.type, name: op.name, delta: op.delta }
    case 'set.add':
    case 'set.remove':
      return { type: op.type, name: op.name, member: op.member, context: op.context.map(rebuildDot) }
    case 'doc.update':
      return { type: op.type, name: op.name, update: op.update }
  }
}

function rebuildDot(dot: Dot): Dot {
  return { node: dot.node, seq: dot.seq }
}

function rebuildClock(vc: VectorClock): VectorClock {
  const out: Record<string, number> = {}
  for (const [node, seq] of Object.entries(vc)) out[node] = seq
  return out as VectorClock
}

function isSibling(value: unknown): value is Sibling {
  if (!isRecord(value)) return false
  const tombstone = value['value'] === null && value['contentType'] === null
  const live = isBytes(value['value']) && isString(value['contentType'])
  return isDot(value['dot']) && isHlc(value['hlc']) && (tombstone || live)
}

export function isRegisterState(value: unknown): value is RegisterState {
  return isRecord(value) && Array.isArray(value['siblings']) && value['siblings'].every(isSibling)
}

function isCounterPart(value: unknown): value is Record<string, number> {
  if (!isRecord(value)) return false
  return Object.entries(value).every(([node, total]) => isNodeId(node) && isSeq(total))
}

export function isCounterState(value: unknown): value is CounterState {
  return isRecord(value) && isCounterPart(value['p']) && isCounterPart(value['n'])
}

export function isSetState(value: unknown): value is SetState {
  if (!isRecord(value) || !Array.isArray(value['entries'])) return false
  return value['entries'].every(
    (entry) => isRecord(entry) && isString(entry['member']) && isDots(entry['dots']) && entry['dots'].length > 0,
  )
}

/**
 * A document state: a Yjs update that decodes, and its compaction mark. Not loaded here (every
 * read of a document decodes its state): what went into it was loaded when its op was checked.
 */
export function isDocState(value: unknown): value is DocState {
  return isRecord(value) && isBytes(value['update']) && isSeq(value['base']) && decodesAsYjsUpdate(value['update'])
}
