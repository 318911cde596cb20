/**
 * Write and read concern: one parser and one counting rule for the node, HTTP, the client and
 * kvctl. A concern says how many members, this node included, must take part: `1` (this node
 * alone), a count `2`…`n`, `quorum` (a majority) or `all`. See docs/consistency.md.
 */
import { MeshError } from '../errors.js'

export type Concern = number | 'quorum' | 'all'
export type WriteConcern = Concern
export type ReadConcern = Concern

/** The largest member count a concern may name. */
export const CONCERN_COUNT_MAX = 9999

/** The pattern a concern has in a query string or on the command line. */
export const CONCERN_PATTERN = '^([1-9][0-9]{0,3}|quorum|all)$'
const concernPattern = new RegExp(CONCERN_PATTERN)

/**
 * A concern from any input: a number, a query-string or flag text, or nothing (which means 1).
 * `name` is the option it came from (`w` or `r`), for the error message.
 */
export function parseConcern(value: unknown, name: 'w' | 'r'): Concern {
  if (value === undefined || value === null || value === '') return 1
  if (value === 'quorum' || value === 'all') return value
  if (typeof value === 'string' && concernPattern.test(value)) return Number(value)
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= CONCERN_COUNT_MAX) return value
  throw new MeshError(
    'MESHKV_ERR_INVALID_ARGUMENT',
    `${name} must be a member count from 1 to ${CONCERN_COUNT_MAX}, "quorum" or "all"; got ${JSON.stringify(value)}`,
  )
}

export function parseWriteConcern(value: unknown): WriteConcern {
  return parseConcern(value, 'w')
}

export function parseReadConcern(value: unknown): ReadConcern {
  return parseConcern(value, 'r')
}

/** The concern as it travels in a query string (`undefined` for the default, 1). */
export function formatConcern(concern: Concern | undefined, name: 'w' | 'r'): string | undefined {
  if (concern === undefined) return undefined
  return String(parseConcern(concern, name))
}

/** How many members a concern asks for, in a cluster of `members` members. */
export function requiredMembers(concern: Concern, members: number, name: 'w' | 'r'): number {
  if (concern === 'all') return members
  if (concern === 'quorum') return Math.floor(members / 2) + 1
  if (concern > members) {
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `${name}=${concern} asks for more members than the ${members} of this cluster`,
    )
  }
  return concern
}
