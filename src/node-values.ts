/**
 * The node's face: checking what a caller hands in (keys, values, members, deltas, cursors) and
 * shaping what it gets back (entries, siblings, watch events). Public methods validate here; the
 * store and merges inside may then assume valid input.
 */
import type { Hlc, NodeId } from './clock/index.js'
import { decodeVersion, encodeVersion } from './clock/index.js'
import type { Change, RegisterState, Sibling } from './crdt/index.js'
import { lwwSibling, registerDots } from './crdt/index.js'
import { MeshError } from './errors.js'
import type { Entry, SiblingView, ValueInput, WatchEvent } from './node-types.js'

export const KEY_BYTES_MAX_DEFAULT = 1024
export const VALUE_BYTES_MAX_DEFAULT = 1024 * 1024
export const BATCH_OPS_MAX_DEFAULT = 1000
export const LIST_LIMIT_DEFAULT = 100
export const LIST_LIMIT_MAX = 1000
export const CONTENT_TYPE_BYTES_MAX = 256

export const JSON_TYPE = 'application/json'
export const TEXT_TYPE = 'text/plain; charset=utf-8'
export const BYTES_TYPE = 'application/octet-stream'

export interface Limits {
  keyBytesMax: number
  valueBytesMax: number
  batchOpsMax: number
}

/** A key (or counter, set or member name) must be a non-empty, well-formed UTF-8 string within the limit. */
export function checkKey(key: unknown, limits: Limits, what = 'key'): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new MeshError('MESHKV_ERR_INVALID_KEY', `the ${what} must be a non-empty string`)
  }
  if (!key.isWellFormed())
    throw new MeshError('MESHKV_ERR_INVALID_KEY', `the ${what} is not valid UTF-8 (it holds a lone surrogate)`)
  if (key.startsWith('\u0000'))
    throw new MeshError(
      'MESHKV_ERR_INVALID_KEY',
      `a ${what} may not start with U+0000: those names are meshkv's own (membership)`,
    )
  const bytes = Buffer.byteLength(key, 'utf8')
  if (bytes > limits.keyBytesMax) {
    throw new MeshError(
      'MESHKV_ERR_KEY_TOO_LARGE',
      `the ${what} is ${bytes} bytes; the limit is ${limits.keyBytesMax}`,
      {
        details: { limitBytes: limits.keyBytesMax, actualBytes: bytes },
      },
    )
  }
  return key
}

export function checkValueSize(bytes: number, limits: Limits): void {
  if (bytes > limits.valueBytesMax) {
    throw new MeshError(
      'MESHKV_ERR_VALUE_TOO_LARGE',
      `the value is ${bytes} bytes; the limit is ${limits.valueBytesMax}`,
      {
        details: { limitBytes: limits.valueBytesMax, actualBytes: bytes },
      },
    )
  }
}

/** Bytes and a content type from what a caller gave: bytes as they are, text as UTF-8, anything else as JSON. */
export function toStoredValue(
  value: ValueInput,
  contentType: string | undefined,
  limits: Limits,
): { bytes: Uint8Array; contentType: string } {
  if (contentType !== undefined) checkContentType(contentType)
  let stored: { bytes: Uint8Array; contentType: string }
  if (value instanceof Uint8Array) stored = { bytes: value, contentType: contentType ?? BYTES_TYPE }
  else if (typeof value === 'string' && (contentType === undefined || !isJsonType(contentType))) {
    stored = { bytes: Buffer.from(value, 'utf8'), contentType: contentType ?? TEXT_TYPE }
  } else {
    let text: string | undefined
    try {
      text = JSON.stringify(value)
    } catch (error) {
      // A cycle or a BigInt: the caller's value, not a bug of ours.
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'the value cannot be stored as JSON', { cause: error })
    }
    if (text === undefined) throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'the value cannot be stored as JSON')
    stored = { bytes: Buffer.from(text, 'utf8'), contentType: contentType ?? JSON_TYPE }
  }
  checkValueSize(stored.bytes.length, limits)
  return stored
}

export function checkContentType(contentType: string): void {
  if (
    contentType.length === 0 ||
    Buffer.byteLength(contentType) > CONTENT_TYPE_BYTES_MAX ||
    /[\r\n]/.test(contentType)
  ) {
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `the content type must be 1 to ${CONTENT_TYPE_BYTES_MAX} bytes on one line`,
    )
  }
}

export function isJsonType(contentType: string): boolean {
  const essence = contentType.split(';')[0]?.trim().toLowerCase() ?? ''
  return essence === 'application/json' || essence.endsWith('+json')
}

/** Reads a stored value back as a person expects: JSON parsed, text decoded, bytes as they are. */
export function decodeValue(entry: { value: Uint8Array; contentType: string }): unknown {
  if (isJsonType(entry.contentType)) return JSON.parse(Buffer.from(entry.value).toString('utf8'))
  if (entry.contentType.toLowerCase().startsWith('text/')) return Buffer.from(entry.value).toString('utf8')
  return entry.value
}

export function checkDelta(delta: unknown): number {
  if (typeof delta !== 'number' || !Number.isSafeInteger(delta) || delta === 0) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a counter delta must be a non-zero integer within ±(2^53 - 1)')
  }
  return delta
}

export function checkVersion(version: string | undefined, what: string): void {
  if (version === undefined) return
  try {
    decodeVersion(version)
  } catch (error) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `the ${what} is not a version this store made`, { cause: error })
  }
}

export function checkLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_LIMIT_DEFAULT
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `limit must be an integer from 1 to ${LIST_LIMIT_MAX}`)
  }
  return limit
}

/** The version string of a register: the sorted dots of its siblings. */
export function versionOf(state: RegisterState): string {
  return encodeVersion(registerDots(state))
}

/** The entry a read returns, or undefined when the key is missing or its winning sibling is a delete. */
export function entryOf(key: string, state: RegisterState, withSiblings: boolean): Entry | undefined {
  const winner = lwwSibling(state)
  if (winner === undefined || winner.value === null || winner.contentType === null) return undefined
  const entry: Entry = {
    key,
    value: winner.value,
    contentType: winner.contentType,
    version: versionOf(state),
    hlc: winner.hlc,
    siblingCount: state.siblings.length,
  }
  if (withSiblings) entry.siblings = state.siblings.map(siblingView)
  return entry
}

function siblingView(sibling: Sibling): SiblingView {
  return {
    value: sibling.value,
    contentType: sibling.contentType,
    deleted: sibling.value === null,
    hlc: sibling.hlc,
    node: sibling.dot.node,
  }
}

/** A list cursor: the last key of a page, opaque to callers. */
export function encodeListCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url')
}

export function decodeListCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8')
  if (encodeListCursor(key) !== cursor)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'the list cursor is not one this node made')
  return key
}

/**
 * Where a watch resumes. A cursor names the last event seen: `L` (decimal) when that event was the
 * last op of the change at LSN `L`, so everything through `L` was seen; `L.i` when it was op `i` of
 * a change with more ops, so resuming replays the rest of change `L` and nothing twice.
 */
export interface WatchPosition {
  /** The LSN of the change the cursor is in. */
  readonly lsn: number
  /** The op index seen last within that change, or null when the whole change was seen. */
  readonly op: number | null
}

export function decodeWatchCursor(cursor: string): WatchPosition {
  const match = typeof cursor === 'string' ? /^(0|[1-9][0-9]{0,15})(?:\.(0|[1-9][0-9]{0,8}))?$/.exec(cursor) : null
  const lsn = Number(match?.[1])
  if (match === null || !Number.isSafeInteger(lsn) || (match[2] !== undefined && lsn === 0)) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'the watch cursor is not one this node made')
  }
  return { lsn, op: match[2] === undefined ? null : Number(match[2]) }
}

/** The cursor of op `index` of the change at `lsn` (see `WatchPosition`). */
export function watchCursor(lsn: number, index: number, opCount: number): string {
  return index >= opCount - 1 ? String(lsn) : `${lsn}.${index}`
}

/** The watch events of one logged change, filtered by key prefix, leaving out ops up to `seenOp`. */
export function watchEvents(change: Change, lsn: number, self: NodeId, prefix: string, seenOp = -1): WatchEvent[] {
  const origin = change.dot.node === self ? ('local' as const) : ('remote' as const)
  const events: WatchEvent[] = []
  for (const [index, op] of change.ops.entries()) {
    if (index <= seenOp) continue
    const base = {
      cursor: watchCursor(lsn, index, change.ops.length),
      origin,
      node: change.dot.node,
      hlc: change.hlc as Hlc,
    }
    switch (op.type) {
      case 'kv.put':
        if (op.key.startsWith(prefix))
          events.push({ ...base, type: 'put', key: op.key, value: op.value, contentType: op.contentType })
        break
      case 'kv.del':
        if (op.key.startsWith(prefix)) events.push({ ...base, type: 'del', key: op.key })
        break
      case 'counter.add':
        if (op.name.startsWith(prefix)) events.push({ ...base, type: 'counter', name: op.name, delta: op.delta })
        break
      case 'set.add':
      case 'set.remove':
        if (op.name.startsWith(prefix)) events.push({ ...base, type: op.type, name: op.name, member: op.member })
        break
    }
  }
  return events
}
