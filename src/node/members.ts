/**
 * The member list as `kvctl members` and `GET /v1/members` show it: the replicated member set
 * (replication/membership.ts holds its rules), this node included, each with its link state.
 */
import type { NodeId } from '../clock/index.js'
import type { Member } from '../replication/membership.js'
import type { Cluster } from './cluster.js'

/** A member as `kvctl members` shows it. */
export interface MemberStatus extends Member {
  self: boolean
  state: 'self' | 'up' | 'catching-up' | 'down'
}

/** Every member (this node included), and each one's state as this node sees it. */
export async function memberList(cluster: Cluster, self: NodeId): Promise<MemberStatus[]> {
  const members = new Map(await cluster.memberSet())
  const peers = new Map(
    (await cluster.peers()).filter((peer) => peer.nodeId !== null).map((peer) => [peer.nodeId as NodeId, peer]),
  )
  if (!members.has(self)) members.set(self, { nodeId: self, role: cluster.role, url: cluster.advertiseUrl })
  return [...members.values()]
    .sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
    .map((member) => ({
      ...member,
      self: member.nodeId === self,
      state: member.nodeId === self ? 'self' : (peers.get(member.nodeId)?.state ?? 'down'),
    }))
}
