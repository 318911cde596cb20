/**
 * Membership (docs/architecture.md, "Membership"): who belongs to the cluster lives in two replicated add-wins
 * sets under reserved names, so joining and forgetting are writes like any other and every node
 * learns them by replication:
 *   MEMBERS_SET    "<nodeId> <role> <url or ->"   one entry per member (a member rewrites its own)
 *   FORGOTTEN_SET  "<nodeId> <seq>"               forgotten for good; its changes after seq refused
 * Client names may not start with U+0000 (node-values.ts), so no client write can touch these.
 */
import type { NodeId } from './clock/index.js'
import { isNodeId } from './clock/index.js'
import type { Intent, SetState } from './crdt/index.js'
import { setMembers } from './crdt/index.js'

export const MEMBERS_SET = '\u0000meshkv/members'
export const FORGOTTEN_SET = '\u0000meshkv/forgotten'

export type Role = 'member' | 'replica'
export const ROLES: readonly Role[] = ['member', 'replica']

export interface Member {
  nodeId: NodeId
  role: Role
  /** The URL peers and quorum reads reach it at, or null when it takes no inbound links. */
  url: string | null
}

export function memberEntry(member: Member): string {
  return `${member.nodeId} ${member.role} ${member.url ?? '-'}`
}

export function parseMemberEntry(entry: string): Member | null {
  const [nodeId, role, ...rest] = entry.split(' ')
  const url = rest.join(' ')
  if (!isNodeId(nodeId) || !ROLES.includes(role as Role) || url.length === 0) return null
  return { nodeId, role: role as Role, url: url === '-' ? null : url }
}

/** Members by node id: of several entries for one node (written concurrently), the greatest wins. */
export function membersOf(state: SetState): Map<NodeId, Member> {
  const out = new Map<NodeId, Member>()
  for (const entry of setMembers(state).sort()) {
    const member = parseMemberEntry(entry)
    if (member !== null) out.set(member.nodeId, member)
  }
  return out
}

/** Forgotten node ids, each with the last of its changes that stays. */
export function forgottenOf(state: SetState): Map<NodeId, number> {
  const out = new Map<NodeId, number>()
  for (const entry of setMembers(state)) {
    const [nodeId, seqText] = entry.split(' ')
    const seq = Number(seqText)
    if (isNodeId(nodeId) && Number.isSafeInteger(seq) && seq >= 0) out.set(nodeId, Math.max(seq, out.get(nodeId) ?? 0))
  }
  return out
}

/** The intents that make `member` the only entry of its node (its other entries are removed). */
export function claimIntents(state: SetState, member: Member): Intent[] {
  const own = memberEntry(member)
  const intents: Intent[] = []
  for (const entry of setMembers(state)) {
    if (entry !== own && parseMemberEntry(entry)?.nodeId === member.nodeId)
      intents.push({ type: 'set.remove', name: MEMBERS_SET, member: entry })
  }
  if (!setMembers(state).includes(own)) intents.push({ type: 'set.add', name: MEMBERS_SET, member: own })
  return intents
}

/** The intents that forget `nodeId` for good, keeping its changes up to `seq`. */
export function forgetIntents(state: SetState, nodeId: NodeId, seq: number): Intent[] {
  const intents: Intent[] = []
  for (const entry of setMembers(state)) {
    if (parseMemberEntry(entry)?.nodeId === nodeId)
      intents.push({ type: 'set.remove', name: MEMBERS_SET, member: entry })
  }
  intents.push({ type: 'set.add', name: FORGOTTEN_SET, member: `${nodeId} ${seq}` })
  return intents
}
