/**
 * Write concern: how many members, this node included, must hold a change before a write is
 * acknowledged. `1` is async, `2`…`n` and `quorum` semi-sync, `all` sync.
 */
import { MeshError } from '../errors.js'

export type WriteConcern = number | 'quorum' | 'all'

export function parseWriteConcern(value: unknown): WriteConcern {
  if (value === undefined || value === null || value === '') return 1
  if (value === 'quorum' || value === 'all') return value
  const count =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^[1-9][0-9]{0,3}$/.test(value)
        ? Number(value)
        : NaN
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'w must be a positive integer, "quorum" or "all"')
  }
  return count
}

/** The number of members a write concern asks for, in a cluster of `members` members. */
export function requiredHolders(concern: WriteConcern, members: number): number {
  if (concern === 'all') return members
  if (concern === 'quorum') return Math.floor(members / 2) + 1
  if (concern > members) {
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `w=${concern} asks for more members than the ${members} of this cluster`,
    )
  }
  return concern
}
