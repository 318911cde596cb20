/**
 * Membership (docs/architecture.md, "Membership"): who belongs to the cluster lives in two
 * replicated add-wins sets under reserved names, so joining and forgetting are writes like any
 * other and every node learns them by replication:
 *   MEMBERS_SET    "<nodeId> <role> <url or ->"   one entry per member (a member rewrites its own)
 *   FORGOTTEN_SET  "<nodeId> <seq>"               forgotten for good; the cut is the greatest seq of its
 *                                                 entries (two forgetters converge); later changes are
 *                                                 refused unless a survivor relays them
 * Client names may not start with U+0000 (node/values.ts), so no client write can touch these.
 *
 * `Membership` holds the rules over those sets as plain code: it takes ticks, link-up events and
 * the sets as read from the store, and answers with intents to commit and URLs to dial or drop.
 * It owns no timer, socket or store, so the node's cluster wiring and the deterministic
 * simulator drive the same rules.
 */
import type { Role } from '../api/role.js'
import { isRole } from '../api/role.js'
import type { Dot, NodeId } from '../clock/index.js'
import { isNodeId } from '../clock/index.js'
import type { Change, Intent, SetState } from '../crdt/index.js'
import { setMembers } from '../crdt/index.js'
import { MeshError } from '../errors.js'

export const MEMBERS_SET = '\u0000meshkv/members'
export const FORGOTTEN_SET = '\u0000meshkv/forgotten'

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
  if (!isNodeId(nodeId) || !isRole(role) || url.length === 0) return null
  return { nodeId, role, url: url === '-' ? null : url }
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

/**
 * Forgotten node ids, each with its cut: the last of its changes that stays. Of several entries for
 * one node (two forgetters), the greatest seq: the same on every node that holds the same entries.
 */
export function forgottenOf(state: SetState): Map<NodeId, number> {
  const out = new Map<NodeId, number>()
  for (const entry of setMembers(state)) {
    const [nodeId, seqText] = entry.split(' ')
    const seq = Number(seqText)
    if (isNodeId(nodeId) && Number.isSafeInteger(seq) && seq >= 0) out.set(nodeId, Math.max(seq, out.get(nodeId) ?? 0))
  }
  return out
}

/** The dots of the forget entries of each forgotten node: who wrote each forget, and when. */
export function forgetDotsOf(state: SetState): Map<NodeId, Dot[]> {
  const out = new Map<NodeId, Dot[]>()
  for (const entry of state.entries) {
    const nodeId = entry.member.split(' ')[0]
    if (isNodeId(nodeId)) out.set(nodeId, [...(out.get(nodeId) ?? []), ...entry.dots])
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

/** True when a change writes either membership set: the sets must be read again. */
export function touchesMembership(change: Change): boolean {
  return change.ops.some(
    (op) =>
      (op.type === 'set.add' || op.type === 'set.remove') && (op.name === MEMBERS_SET || op.name === FORGOTTEN_SET),
  )
}

/** A URL the transport keeps dialing, and the node last seen behind it. */
export interface KeptUrl {
  url: string
  nodeId: NodeId | null
}

export interface MembershipOptions {
  self: NodeId
  role: Role
  /** The URL this node advertises to peers, or null. */
  url: string | null
  /** The configured peer URLs. */
  peers: readonly string[]
  /** Whether this node takes peer links at all; a node without them keeps no member set. */
  linking: boolean
  /** Already a member (recorded on disk, no peers to wait for, or changes of its own). */
  joined: boolean
}

/** What following the member sets asks of the transport. */
export interface FollowActions {
  /** Kept URLs behind which a forgotten node was seen: stop dialing them. */
  drop: string[]
  /** Members' URLs to dial because the configured list is shorter than the member set. */
  dial: { nodeId: NodeId; url: string }[]
}

export class Membership {
  readonly #options: MembershipOptions
  #joined: boolean
  #members = new Map<NodeId, Member>()
  #forgotten = new Map<NodeId, number>()
  #forgetDots = new Map<NodeId, Dot[]>()
  #membersState: SetState | null = null
  readonly #admitting = new Set<NodeId>()
  #claiming = false

  constructor(options: MembershipOptions) {
    this.#options = options
    this.#joined = options.joined
  }

  /** Ready to take writes: a member already, or caught up with a peer. */
  get joined(): boolean {
    return this.#joined
  }

  /** The member set (forgotten nodes left out), as last read. */
  get members(): ReadonlyMap<NodeId, Member> {
    return this.#members
  }

  get forgotten(): ReadonlyMap<NodeId, number> {
    return this.#forgotten
  }

  /** The dots of each forgotten node's forget entries (garbage collection waits for them). */
  get forgetDots(): ReadonlyMap<NodeId, readonly Dot[]> {
    return this.#forgetDots
  }

  isForgotten(nodeId: NodeId): boolean {
    return this.#forgotten.has(nodeId)
  }

  /** This node sees itself in the forgotten set: it is no member any more, and writes nothing. */
  get selfForgotten(): boolean {
    return this.#forgotten.has(this.#options.self)
  }

  /** Takes the two sets as just read from the store. */
  update(membersState: SetState, forgottenState: SetState): void {
    const forgotten = forgottenOf(forgottenState)
    const members = membersOf(membersState)
    for (const id of forgotten.keys()) members.delete(id)
    this.#membersState = membersState
    this.#members = members
    this.#forgotten = forgotten
    this.#forgetDots = forgetDotsOf(forgottenState)
  }

  /**
   * A tick. A node not yet joined joins once the replicator says it has caught up with a peer;
   * the answer is true exactly on that tick, so the caller records it once.
   */
  tick(caughtUp: boolean): boolean {
    if (this.#joined || !caughtUp) return false
    this.#joined = true
    return true
  }

  /**
   * A linked peer not in the member set yet: the intent that writes it in, which the caller
   * commits BEFORE replication starts on the link, so the new member holds back garbage
   * collection from the start. Null when nothing is to be written; otherwise the caller calls
   * `settled` once the write is done or failed.
   */
  admit(nodeId: NodeId, url: string | null): Intent[] | null {
    if (
      !this.#joined ||
      !this.#options.linking ||
      this.selfForgotten ||
      this.#members.has(nodeId) ||
      this.#forgotten.has(nodeId) ||
      this.#admitting.has(nodeId)
    )
      return null
    this.#admitting.add(nodeId)
    return [{ type: 'set.add', name: MEMBERS_SET, member: memberEntry({ nodeId, role: 'member', url }) }]
  }

  /** The admission of `nodeId` is written (or failed); the sets have been read again. */
  admitted(nodeId: NodeId): void {
    this.#admitting.delete(nodeId)
  }

  /**
   * The intents that make this node's own entry (id, role, URL) the only one for it, once it is
   * ready; null when it is already so, or a claim is being written (then `claimed` follows).
   */
  claim(): Intent[] | null {
    const state = this.#membersState
    if (state === null || !this.#joined || !this.#options.linking || this.#claiming) return null
    if (this.#forgotten.has(this.#options.self)) return null
    const intents = claimIntents(state, {
      nodeId: this.#options.self,
      role: this.#options.role,
      url: this.#options.url,
    })
    if (intents.length === 0) return null
    this.#claiming = true
    return intents
  }

  claimed(): void {
    this.#claiming = false
  }

  /**
   * Configured peers are the links; the member set fills in what they miss. A member's URL is
   * dialed only while the configured list is shorter than the other members, and only for a
   * member no configured URL has reached. Forgotten members' URLs are dropped.
   */
  follow(kept: readonly KeptUrl[]): FollowActions {
    const drop = kept.filter((entry) => entry.nodeId !== null && this.#forgotten.has(entry.nodeId)).map((e) => e.url)
    const peers = this.#options.peers
    const others = [...this.#members.values()].filter((member) => member.nodeId !== this.#options.self)
    if (!this.#options.linking || peers.length >= others.length) return { drop, dial: [] }
    const reached = new Set(
      kept.filter((entry) => entry.nodeId !== null && peers.includes(entry.url)).map((entry) => entry.nodeId),
    )
    const dial: FollowActions['dial'] = []
    for (const member of others) {
      if (member.url === null || reached.has(member.nodeId) || member.url === this.#options.url) continue
      dial.push({ nodeId: member.nodeId, url: member.url })
    }
    return { drop, dial }
  }

  /**
   * Members, this node included: the member set and every peer heard from on this run, or the
   * configured peers if they are more (a node not reached yet still counts); forgotten nodes
   * never count.
   */
  count(knownPeers: readonly NodeId[], kept: readonly KeptUrl[]): number {
    const ids = new Set<NodeId>([this.#options.self, ...this.#members.keys(), ...knownPeers])
    for (const id of this.#forgotten.keys()) ids.delete(id)
    const peers = this.#options.peers
    const forgottenConfigured = kept.filter(
      (entry) => entry.nodeId !== null && this.#forgotten.has(entry.nodeId) && peers.includes(entry.url),
    ).length
    return Math.max(ids.size, 1 + peers.length - forgottenConfigured)
  }

  /**
   * The intents that forget `nodeId` for good, keeping its changes up to `seq`: the forget cut,
   * the highest seq of it any survivor is known to hold (`Replicator.forgetCut`). Refuses this
   * node itself and a node never heard of.
   */
  forget(nodeId: NodeId, seq: number, linked: readonly NodeId[], membersState: SetState): Intent[] {
    if (nodeId === this.#options.self)
      throw new MeshError(
        'MESHKV_ERR_INVALID_ARGUMENT',
        'a node cannot forget itself; run kvctl forget on another member',
      )
    if (!this.#members.has(nodeId) && !linked.includes(nodeId) && !this.#forgotten.has(nodeId))
      throw new MeshError('MESHKV_ERR_UNKNOWN_MEMBER', `no member ${nodeId} is known here`)
    return forgetIntents(membersState, nodeId, seq)
  }

  /** Members' URLs other than this node's (where quorum reads go). */
  memberUrls(): { nodeId: NodeId; url: string }[] {
    const out: { nodeId: NodeId; url: string }[] = []
    for (const member of this.#members.values())
      if (member.nodeId !== this.#options.self && member.url !== null)
        out.push({ nodeId: member.nodeId, url: member.url })
    return out
  }
}
