/**
 * JSON schemas shared by the routes; fastify validates with them, and a failure is a 400
 * MESHKV_ERR_INVALID_ARGUMENT. The app turns off ajv's type coercion and its silent removal of
 * unknown properties, so a body is taken exactly as sent (`{"delta": "5"}` is refused, not
 * read as 5). Query strings are therefore strings: numbers and flags are matched by pattern here
 * and converted by `queryInteger` / `queryFlag`.
 */
import { MeshError } from '../errors.js'

/** The app's ajv settings: no coercion, no silent removal (fastify's defaults do both). */
export const AJV_OPTIONS = { coerceTypes: false, removeAdditional: false } as const

/** The longest a read may wait for a causal token, in ms. */
export const READ_TIMEOUT_MS_MAX = 60_000

/** A decimal integer in a query string. */
export const integerString = { type: 'string', pattern: '^(0|[1-9][0-9]{0,15})$' } as const

/** A flag in a query string: `true`/`1`, `false`/`0`, or bare (`?reverse`), which means true. */
export const flagString = { type: 'string', enum: ['true', 'false', '1', '0', ''] } as const

export function queryInteger(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const number = Number(value)
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `querystring/${name} must be an integer from ${min} to ${max}`)
  }
  return number
}

export function queryFlag(value: string | undefined): boolean {
  return value !== undefined && value !== 'false' && value !== '0'
}

export const afterProperties = {
  after: { type: 'string', maxLength: 65_536 },
  timeout_ms: integerString,
  r: { type: 'string', pattern: '^([1-9][0-9]{0,3}|quorum|all)$' },
} as const

export interface AfterQuery {
  after?: string
  timeout_ms?: string
  /** Read concern: members to join the state from (`quorum`, `all`, or a count). */
  r?: string
}

/** `?r=`: the read concern of a point read. */
export function readConcernOf(query: { r?: string }): { r?: number | 'quorum' | 'all' } {
  if (query.r === undefined) return {}
  return { r: query.r === 'quorum' || query.r === 'all' ? query.r : Number(query.r) }
}

/** The read options of `?after=` / `X-Causal-Token` and `?timeout_ms=`. */
export function timeoutOf(query: { timeout_ms?: string }): number | undefined {
  return queryInteger(query.timeout_ms, 'timeout_ms', 0, READ_TIMEOUT_MS_MAX)
}

/** The longest a write may wait for its write concern, in ms. */
export const WRITE_TIMEOUT_MS_MAX = 300_000

/** `?w=1|2..n|quorum|all&timeout_ms=`: write concern on every write route. */
export const writeQuery = {
  type: 'object',
  properties: {
    w: { type: 'string', pattern: '^([1-9][0-9]{0,3}|quorum|all)$' },
    timeout_ms: integerString,
  },
} as const

export interface WriteQuery {
  w?: string
  timeout_ms?: string
}

/** The node's write options from `?w=` and `?timeout_ms=`. */
export function concernOf(query: WriteQuery): { w?: number | 'quorum' | 'all'; timeoutMs?: number } {
  const timeoutMs = queryInteger(query.timeout_ms, 'timeout_ms', 0, WRITE_TIMEOUT_MS_MAX)
  const w = query.w === undefined ? undefined : query.w === 'quorum' || query.w === 'all' ? query.w : Number(query.w)
  return { ...(w === undefined ? {} : { w }), ...(timeoutMs === undefined ? {} : { timeoutMs }) }
}

export const nameParams = {
  type: 'object',
  properties: { name: { type: 'string' } },
  required: ['name'],
} as const

export interface NameParams {
  name: string
}

export const readQuery = {
  type: 'object',
  properties: { ...afterProperties },
} as const
