/**
 * Reading the node's JSON answers back into client shapes: values (JSON, text or base64 by their
 * content type), siblings, list items, entity tags. Pure.
 */
import type { Hlc } from '../clock/index.js'
import { HLC_ZERO, compareHlc, isHlc } from '../clock/index.js'
import { isJsonType } from '../api/index.js'
import { MeshError } from '../errors.js'
import type { ClientListItem, ClientSibling } from './types.js'

const encoder = new TextEncoder()

/**
 * The bytes of a value in a JSON answer. The node sends JSON values parsed, text as a string and
 * anything else as base64, so a JSON value comes back re-serialized (same value, maybe not the
 * same whitespace); text and bytes come back exactly.
 */
export function valueBytes(item: Record<string, unknown>, contentType: string): Uint8Array {
  if (typeof item['valueBase64'] === 'string') return new Uint8Array(Buffer.from(item['valueBase64'], 'base64'))
  const value = item['value']
  if (typeof value === 'string' && !isJsonType(contentType)) return encoder.encode(value)
  if (value === undefined) throw malformed('a value is missing')
  return encoder.encode(JSON.stringify(value))
}

/** `"v1.abc"` or `W/"v1.abc"` → `v1.abc`. */
export function versionFromEntityTag(tag: string | null): string {
  if (tag === null) throw malformed('the ETag header is missing')
  const bare = tag.trim().replace(/^W\//, '')
  return bare.length >= 2 && bare.startsWith('"') && bare.endsWith('"') ? bare.slice(1, -1) : bare
}

export function entityTagOf(version: string): string {
  if (version.length === 0 || /["\r\n]/.test(version))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a version must be non-empty and hold no quote or line break')
  return `"${version}"`
}

export function asRecord(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw malformed(`${what} is not a JSON object`)
  return value as Record<string, unknown>
}

export function stringField(record: Record<string, unknown>, field: string): string {
  const value = record[field]
  if (typeof value !== 'string') throw malformed(`the field ${field} is not a string`)
  return value
}

export function booleanField(record: Record<string, unknown>, field: string): boolean {
  const value = record[field]
  if (typeof value !== 'boolean') throw malformed(`the field ${field} is not a boolean`)
  return value
}

export function numberField(record: Record<string, unknown>, field: string): number {
  const value = record[field]
  if (typeof value !== 'number' || !Number.isFinite(value)) throw malformed(`the field ${field} is not a number`)
  return value
}

export function stringArrayField(record: Record<string, unknown>, field: string): string[] {
  const value = record[field]
  if (!Array.isArray(value) || !value.every((member) => typeof member === 'string'))
    throw malformed(`the field ${field} is not a list of strings`)
  return value as string[]
}

export function sibling(raw: unknown): ClientSibling {
  const record = asRecord(raw, 'a sibling')
  const deleted = record['deleted'] === true
  const contentType = typeof record['contentType'] === 'string' ? record['contentType'] : null
  const { value: _value, valueBase64: _valueBase64, ...rest } = record
  const value = deleted || contentType === null ? null : valueBytes(record, contentType)
  return { ...rest, value, contentType, deleted }
}

/** The sibling a plain read returns: the latest by HLC, ties broken by node id (the node's rule). */
export function winningSibling(siblings: readonly ClientSibling[]): ClientSibling | undefined {
  let best: ClientSibling | undefined
  for (const candidate of siblings) {
    if (best === undefined || compareSiblings(candidate, best) > 0) best = candidate
  }
  return best
}

function compareSiblings(a: ClientSibling, b: ClientSibling): number {
  const byClock = compareHlc(hlcOf(a), hlcOf(b))
  if (byClock !== 0) return byClock
  const nodeA = String(a['node'] ?? '')
  const nodeB = String(b['node'] ?? '')
  return nodeA < nodeB ? -1 : nodeA > nodeB ? 1 : 0
}

function hlcOf(sibling: ClientSibling): Hlc {
  const hlc = sibling['hlc']
  return isHlc(hlc) ? hlc : HLC_ZERO
}

export function listItem(raw: unknown): ClientListItem {
  const record = asRecord(raw, 'a list item')
  const contentType = stringField(record, 'contentType')
  return {
    key: stringField(record, 'key'),
    value: valueBytes(record, contentType),
    contentType,
    version: stringField(record, 'version'),
    siblingCount: typeof record['siblings'] === 'number' ? record['siblings'] : 1,
  }
}

export function malformed(why: string): MeshError {
  return new MeshError('MESHKV_ERR_DECODE', `the node's answer is malformed: ${why}`)
}
