/**
 * The TypeBox schemas shared by the routes. Each is written once: fastify validates with it (a
 * failure is a 400 MESHKV_ERR_INVALID_ARGUMENT), and the route's request types are derived from it
 * through `TypeBoxTypeProvider`.
 *
 * The app turns off ajv's type coercion and its silent removal of unknown properties, so a body is
 * taken exactly as sent (`{"delta": "5"}` is refused, not read as 5). Query strings are therefore
 * strings: numbers and flags are matched by pattern here and converted by `queryInteger` /
 * `queryFlag`, and concerns by the one concern parser of `src/api`.
 */
import { Type } from 'typebox'
import type { ReadConcern, WriteConcern } from '../api/index.js'
import { CONCERN_PATTERN, parseReadConcern, parseWriteConcern } from '../api/index.js'
import { MeshError } from '../errors.js'

/** The app's ajv settings: no coercion, no silent removal (fastify's defaults do both). */
export const AJV_OPTIONS = { coerceTypes: false, removeAdditional: false } as const

/** The longest a read may wait for a causal token, in ms. */
export const READ_TIMEOUT_MS_MAX = 60_000

/** The longest a write may wait for its write concern, in ms. */
export const WRITE_TIMEOUT_MS_MAX = 300_000

/** A decimal integer in a query string. */
export const IntegerString = Type.String({ pattern: '^(0|[1-9][0-9]{0,15})$' })

/** A flag in a query string: `true`/`1`, `false`/`0`, or bare (`?reverse`), which means true. */
export const FlagString = Type.Enum(['true', 'false', '1', '0', ''])

/** A write or read concern in a query string: a member count, `quorum` or `all`. */
const ConcernString = Type.String({ pattern: CONCERN_PATTERN })

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

/** The fields of every read: `?after=` (or `X-Causal-Token`), `?timeout_ms=`, `?r=`. */
export const afterProperties = {
  after: Type.Optional(Type.String({ maxLength: 65_536 })),
  timeout_ms: Type.Optional(IntegerString),
  /** Read concern: members to join the state from (`quorum`, `all`, or a count). */
  r: Type.Optional(ConcernString),
}

export const ReadQuery = Type.Object({ ...afterProperties })

/** `?r=`: the read concern of a point read, as the node's read options take it. */
export function readConcernOf(query: { r?: string }): { r?: ReadConcern } {
  return query.r === undefined ? {} : { r: parseReadConcern(query.r) }
}

/** The wait of a read, from `?timeout_ms=`. */
export function timeoutOf(query: { timeout_ms?: string }): number | undefined {
  return queryInteger(query.timeout_ms, 'timeout_ms', 0, READ_TIMEOUT_MS_MAX)
}

/** `?w=1|2..n|quorum|all&timeout_ms=`: write concern on every write route. */
export const WriteQuery = Type.Object({
  w: Type.Optional(ConcernString),
  timeout_ms: Type.Optional(IntegerString),
})

/** The node's write options from `?w=` and `?timeout_ms=`. */
export function concernOf(query: { w?: string; timeout_ms?: string }): { w?: WriteConcern; timeoutMs?: number } {
  const timeoutMs = queryInteger(query.timeout_ms, 'timeout_ms', 0, WRITE_TIMEOUT_MS_MAX)
  return {
    ...(query.w === undefined ? {} : { w: parseWriteConcern(query.w) }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  }
}

export const NameParams = Type.Object({ name: Type.String() })
