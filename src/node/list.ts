/**
 * Listing and paging of the `kv` space: `list()` pages (`{ items, next }`, etcd's range and
 * Consul's `?recurse`) and `entries()`, the raw range `MeshLevel`'s iterators read.
 */
import { MeshError } from '../errors.js'
import type { Range, Store } from '../storage/index.js'
import { compareKeys } from '../storage/index.js'
import type { Entry, ListOptions, ListPage } from './types.js'
import { entryOf } from './values.js'

export const LIST_LIMIT_DEFAULT = 100
export const LIST_LIMIT_MAX = 1000

export function checkLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_LIMIT_DEFAULT
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `limit must be an integer from 1 to ${LIST_LIMIT_MAX}`)
  }
  return limit
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

/** The store range for a listing: start/end bounds, narrowed by the prefix and the page cursor. */
export function listRange(options: ListOptions): Range {
  const range: Range = { reverse: options.reverse === true }
  const prefix = options.prefix ?? ''
  const lower = [options.start, prefix].filter((bound): bound is string => bound !== undefined && bound !== '')
  if (lower.length > 0) range.gte = lower.reduce((a, b) => (compareKeys(a, b) >= 0 ? a : b))
  // The prefix bounds the range above too, so a reverse listing starts at the prefix's last key
  // instead of walking down from the end of the key space.
  const upper = [options.end, prefixSuccessor(prefix)].filter((bound): bound is string => bound !== undefined)
  if (upper.length > 0) range.lt = upper.reduce((a, b) => (compareKeys(a, b) <= 0 ? a : b))
  if (options.cursor !== undefined) {
    // One bound per side: LevelDB takes gte over gt when both are given, so keep the tighter one.
    const after = decodeListCursor(options.cursor)
    if (options.reverse === true) {
      if (range.lt === undefined || compareKeys(after, range.lt) < 0) range.lt = after
    } else if (range.gte === undefined || compareKeys(after, range.gte) >= 0) {
      delete range.gte
      range.gt = after
    }
  }
  return range
}

/**
 * The least key above every key that starts with `prefix` (in UTF-8 byte order, LevelDB's), or
 * undefined when there is none (an empty prefix, or one of U+10FFFF only): the last code point
 * that can grow grows by one, and what follows it is dropped.
 */
export function prefixSuccessor(prefix: string): string | undefined {
  const points = [...prefix]
  for (let index = points.length - 1; index >= 0; index--) {
    const point = (points[index] as string).codePointAt(0) as number
    if (point === 0x10ffff) continue
    // Surrogate code points are not characters: the one after U+D7FF is U+E000.
    const next = point === 0xd7ff ? 0xe000 : point + 1
    return points.slice(0, index).join('') + String.fromCodePoint(next)
  }
  return undefined
}

/** What an entry costs a page: its key and value bytes. */
function entryBytes(entry: Entry): number {
  return Buffer.byteLength(entry.key, 'utf8') + entry.value.byteLength
}

/**
 * One page of live entries; `limit` is already checked. A page also ends before the entry that
 * would take its keys and values past `bytesMax`, so one answer never holds hundreds of MB; it
 * always holds at least one entry, so a cursor always moves on.
 */
export async function listPage(store: Store, options: ListOptions, limit: number, bytesMax: number): Promise<ListPage> {
  const prefix = options.prefix ?? ''
  const items: Entry[] = []
  let bytes = 0
  let next: string | null = null
  for await (const [key, state] of store.iterateStates('kv', listRange(options))) {
    if (!key.startsWith(prefix)) {
      // Forward from the prefix, the first key without it ends the range. In reverse the range
      // ends at the prefix's successor, so only a prefix without one passes over keys above it.
      if (options.reverse !== true || compareKeys(key, prefix) < 0) break
      continue
    }
    const entry = entryOf(key, state, false)
    if (entry === undefined) continue
    const size = entryBytes(entry)
    if (items.length === limit || (items.length > 0 && bytes + size > bytesMax)) {
      next = encodeListCursor((items[items.length - 1] as Entry).key)
      break
    }
    items.push(entry)
    bytes += size
  }
  return { items, next }
}

/** Live entries over a raw range (`gt`, `gte`, `lt`, `lte`, `reverse`, `limit`); deleted keys are passed over. */
export async function* rangeEntries(store: Store, range: Range & { signal?: AbortSignal }): AsyncGenerator<Entry> {
  const limit = range.limit === undefined || range.limit < 0 ? Infinity : range.limit
  let count = 0
  const { limit: _limit, signal, ...bounds } = range
  for await (const [key, state] of store.iterateStates('kv', bounds)) {
    if (count >= limit || signal?.aborted === true) return
    const entry = entryOf(key, state, false)
    if (entry === undefined) continue
    count++
    yield entry
  }
}
