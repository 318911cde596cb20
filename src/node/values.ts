/**
 * The node's face: checking what a caller hands in (keys, values, members, deltas, cursors) and
 * shaping what it gets back (entries, siblings, watch events). Public methods validate here; the
 * store and merges inside may then assume valid input.
 */
import { BYTES_TYPE, JSON_TYPE, TEXT_TYPE, isJsonType, isTextType } from '../api/media.js'
import { decodeVersion, encodeVersion } from '../clock/index.js'
import type { RegisterState, Sibling } from '../crdt/index.js'
import { lwwSibling, registerDots } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Limits } from './options.js'
import type { Entry, SiblingView, ValueInput } from './types.js'

export const CONTENT_TYPE_BYTES_MAX = 256

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

/** Reads a stored value back as a person expects: JSON parsed, text decoded, bytes as they are. */
export function decodeValue(entry: { value: Uint8Array; contentType: string }): unknown {
  if (isJsonType(entry.contentType)) return JSON.parse(Buffer.from(entry.value).toString('utf8'))
  if (isTextType(entry.contentType)) return Buffer.from(entry.value).toString('utf8')
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
