/**
 * What a client call puts in its URL: key and name paths, percent-encoded so that they reach the
 * node's route unchanged, and the query of write concern and waiting. Each checks its input
 * first, so a bad argument fails before any request goes out.
 */
import type { ReadConcern, WriteConcern } from '../api/index.js'
import { formatConcern } from '../api/index.js'
import { MeshError } from '../errors.js'

/** `/v1/kv/<key>` with each `/`-separated segment percent-encoded. */
export function keyPath(key: string): string {
  if (typeof key !== 'string' || key.length === 0)
    throw new MeshError('MESHKV_ERR_INVALID_KEY', 'the key must be a non-empty string')
  if (!key.isWellFormed())
    throw new MeshError('MESHKV_ERR_INVALID_KEY', 'the key is not valid UTF-8 (it holds a lone surrogate)')
  const segments = key.split('/')
  // URLs resolve `.` and `..` segments (even percent-encoded), so such a key would reach another path.
  if (segments.some((segment) => segment === '.' || segment === '..')) {
    throw new MeshError(
      'MESHKV_ERR_INVALID_KEY',
      `the key ${JSON.stringify(key)} has a . or .. segment, which cannot travel in a URL path`,
    )
  }
  return '/v1/kv/' + segments.map(encodeURIComponent).join('/')
}

/** `/v1/counters/<name>`, `/v1/sets/<name>` or `/v1/docs/<name>`, the name as one percent-encoded segment. */
export function namePath(space: 'counters' | 'sets' | 'docs', name: string): string {
  if (typeof name !== 'string' || name.length === 0)
    throw new MeshError('MESHKV_ERR_INVALID_KEY', 'the name must be a non-empty string')
  if (!name.isWellFormed())
    throw new MeshError('MESHKV_ERR_INVALID_KEY', 'the name is not valid UTF-8 (it holds a lone surrogate)')
  if (name === '.' || name === '..') throw new MeshError('MESHKV_ERR_INVALID_KEY', 'a name cannot be . or ..')
  return `/v1/${space}/${encodeURIComponent(name)}`
}

export function checkMembers(members: readonly string[]): string[] {
  if (!Array.isArray(members) || members.length === 0 || !members.every((member) => typeof member === 'string')) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'members are a non-empty list of strings')
  }
  return [...members]
}

/** `?w=` and `?timeout_ms=` of a write. */
export function concernQuery(options: { w?: WriteConcern; waitMs?: number }): Record<string, string | undefined> {
  return { w: formatConcern(options.w, 'w'), timeout_ms: waitOf(options.waitMs) }
}

/** `?r=` and `?timeout_ms=` of a read. */
export function readQuery(options: { r?: ReadConcern; waitMs?: number }): Record<string, string | undefined> {
  return { r: formatConcern(options.r, 'r'), timeout_ms: waitOf(options.waitMs) }
}

export function waitOf(waitMs: number | undefined): string | undefined {
  if (waitMs === undefined) return undefined
  if (!Number.isSafeInteger(waitMs) || waitMs < 0)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'waitMs must be a non-negative integer')
  return String(waitMs)
}
