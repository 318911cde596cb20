/** A member's role: a `member` takes writes; a `replica` replicates everything and refuses client writes. */
export const ROLES = ['member', 'replica'] as const
export type Role = (typeof ROLES)[number]

export function isRole(value: unknown): value is Role {
  return value === 'member' || value === 'replica'
}
