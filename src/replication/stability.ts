/**
 * Causal stability (docs/protocol.md, "Garbage collection"). The stable cut and what every member
 * holds are one computation with a different clock per member: the greatest vector clock at or
 * below this node's own clock and the chosen clock of every member, pointwise (their meet).
 *
 * - For the stable cut, a member's clock is the newest acknowledgement it sent whose own entry
 *   this node has applied: no change concurrent with a dot at or below the cut can still arrive.
 * - For what every member holds, it is what the member is known to have: its log entries may go.
 *
 * A member without a clock (never heard from on this run) counts as the empty clock, so it holds
 * everything back until it answers.
 */
import type { NodeId, VectorClock } from '../clock/index.js'
import { vcMeet } from '../clock/index.js'

/** What the last garbage collection pass found and did. */
export interface GcStatus {
  /** Dots at or below it are stable: no change concurrent with them can arrive. */
  stableCut: VectorClock
  /** Every member holds the changes at or below it: their log entries may go. */
  heldByAll: VectorClock
  logPurged: number
  tombstonesPurged: number
  passes: number
}

/** The meet of `own` and `clockOf(member)` over `members`; a member with no clock gives `{}`. */
export function meetOverMembers(
  own: VectorClock,
  members: Iterable<NodeId>,
  clockOf: (member: NodeId) => VectorClock | undefined,
): VectorClock {
  let meet = own
  for (const member of members) meet = vcMeet(meet, clockOf(member) ?? {})
  return meet
}

/**
 * The members that count for stability: the configured ones and every peer heard on this run,
 * less this node (its own clock is the starting point) and forgotten members (they never answer
 * again, and their later changes are refused).
 */
export function stabilityMembers(
  configured: Iterable<NodeId>,
  heard: Iterable<NodeId>,
  self: NodeId,
  forgotten: Iterable<NodeId>,
): Set<NodeId> {
  const ids = new Set<NodeId>(configured)
  for (const id of heard) ids.add(id)
  ids.delete(self)
  for (const id of forgotten) ids.delete(id)
  return ids
}
