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
  if (options.end !== undefined) range.lt = options.end
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

/** One page of live entries; `limit` is already checked. */
export async function listPage(store: Store, options: ListOptions, limit: number): Promise<ListPage> {
  const prefix = options.prefix ?? ''
  const items: Entry[] = []
  let next: string | null = null
  for await (const [key, state] of store.iterateStates('kv', listRange(options))) {
    if (!key.startsWith(prefix)) {
      // Forward from the prefix, the first key without it ends the range; in reverse, keys
      // above the prefix's range come first and are passed over.
      if (options.reverse !== true || compareKeys(key, prefix) < 0) break
      continue
    }
    const entry = entryOf(key, state, false)
    if (entry === undefined) continue
    if (items.length === limit) {
      next = encodeListCursor((items[items.length - 1] as Entry).key)
      break
    }
    items.push(entry)
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
