/**
 * The membership rules (src/replication/membership.ts) on plain inputs: the member and forgotten
 * sets as states, ticks, link-up events and the transport's kept URLs. No store, socket or timer.
 */
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { toNodeId } from '../../src/clock/index.js'
import type { Change, SetState } from '../../src/crdt/index.js'
import { canonicalSet } from '../../src/crdt/index.js'
import type { MembershipOptions } from '../../src/replication/membership.js'
import {
  FORGOTTEN_SET,
  MEMBERS_SET,
  Membership,
  claimIntents,
  forgetIntents,
  forgottenOf,
  memberEntry,
  membersOf,
  parseMemberEntry,
  touchesMembership,
} from '../../src/replication/membership.js'
import { meshCodeOf } from '../helpers/async.js'

const A = toNodeId('a1a1a1a1a1a1a1a1')
const B = toNodeId('b2b2b2b2b2b2b2b2')
const C = toNodeId('c3c3c3c3c3c3c3c3')
const D = toNodeId('d4d4d4d4d4d4d4d4')

/** A set state holding `members`, each added once by node A. */
function setOf(...members: string[]): SetState {
  return canonicalSet(members.map((member, index) => ({ member, dots: [{ node: A, seq: index + 1 }] })))
}

const EMPTY = setOf()

function membership(options: Partial<MembershipOptions> = {}): Membership {
  return new Membership({
    self: A,
    role: 'member',
    url: 'http://a',
    peers: [],
    linking: true,
    joined: true,
    ...options,
  })
}

describe('member entries', () => {
  it('round-trip a member, with and without a URL', () => {
    for (const member of [
      { nodeId: B, role: 'member' as const, url: 'http://b:7700' },
      { nodeId: C, role: 'replica' as const, url: null },
    ]) {
      expect(parseMemberEntry(memberEntry(member))).toEqual(member)
    }
    expect(memberEntry({ nodeId: C, role: 'replica', url: null })).toBe(`${C} replica -`)
  })

  it('refuses entries that are not members', () => {
    for (const entry of ['', 'nonsense', `${B} owner http://b`, `xyz member http://b`, `${B} member`]) {
      expect(parseMemberEntry(entry), entry).toBeNull()
    }
  })

  it('keeps, of several entries for one node, the greatest', () => {
    const members = membersOf(setOf(`${B} member http://b1`, `${B} member http://b2`, `${C} replica -`, 'junk'))
    expect([...members.keys()].sort()).toEqual([B, C])
    expect(members.get(B)?.url).toBe('http://b2')
  })

  it('reads forgotten nodes with the highest sequence number kept', () => {
    const forgotten = forgottenOf(setOf(`${B} 3`, `${B} 7`, `${C} 0`, `${D} -1`, 'junk 2'))
    expect(forgotten).toEqual(
      new Map<NodeId, number>([
        [B, 7],
        [C, 0],
      ]),
    )
  })

  it('claims: removes the node’s other entries and adds its own once', () => {
    const state = setOf(`${A} member http://old`, `${B} member http://b`)
    expect(claimIntents(state, { nodeId: A, role: 'member', url: 'http://a' })).toEqual([
      { type: 'set.remove', name: MEMBERS_SET, member: `${A} member http://old` },
      { type: 'set.add', name: MEMBERS_SET, member: `${A} member http://a` },
    ])
    expect(claimIntents(setOf(`${A} member http://a`), { nodeId: A, role: 'member', url: 'http://a' })).toEqual([])
  })

  it('forgets: removes every entry of the node and records it with its last kept change', () => {
    expect(forgetIntents(setOf(`${B} member http://b`, `${C} member -`), B, 5)).toEqual([
      { type: 'set.remove', name: MEMBERS_SET, member: `${B} member http://b` },
      { type: 'set.add', name: FORGOTTEN_SET, member: `${B} 5` },
    ])
  })

  it('tells changes that touch either set from those that do not', () => {
    const change = (ops: Change['ops']): Change => ({ ops }) as unknown as Change
    expect(touchesMembership(change([{ type: 'set.add', name: MEMBERS_SET, member: 'x', context: [] }]))).toBe(true)
    expect(touchesMembership(change([{ type: 'set.remove', name: FORGOTTEN_SET, member: 'x', context: [] }]))).toBe(
      true,
    )
    expect(touchesMembership(change([{ type: 'set.add', name: 'tags', member: 'x', context: [] }]))).toBe(false)
    expect(touchesMembership(change([{ type: 'counter.add', name: MEMBERS_SET, delta: 1 }]))).toBe(false)
  })
})

describe('Membership: joining', () => {
  it('joins on the first tick that finds it caught up, and says so once', () => {
    const rules = membership({ joined: false })
    expect(rules.joined).toBe(false)
    expect(rules.tick(false)).toBe(false)
    expect(rules.joined).toBe(false)
    expect(rules.tick(true)).toBe(true)
    expect(rules.joined).toBe(true)
    expect(rules.tick(true)).toBe(false)
    expect(membership({ joined: true }).tick(true)).toBe(false)
  })

  it('claims its own entry only once joined, and not again while the claim is being written', () => {
    const rules = membership({ joined: false })
    rules.update(setOf(`${A} member http://old`), EMPTY)
    expect(rules.claim()).toBeNull()
    rules.tick(true)
    const claim = rules.claim()
    expect(claim).toEqual(claimIntents(setOf(`${A} member http://old`), { nodeId: A, role: 'member', url: 'http://a' }))
    expect(rules.claim()).toBeNull()
    rules.claimed()
    rules.update(setOf(`${A} member http://a`), EMPTY)
    expect(rules.claim()).toBeNull()
  })

  it('claims nothing without peer links, before the sets are read, or once forgotten', () => {
    expect(membership({ linking: false }).claim()).toBeNull()
    expect(membership().claim()).toBeNull()
    const forgotten = membership()
    forgotten.update(EMPTY, setOf(`${A} 4`))
    expect(forgotten.claim()).toBeNull()
  })
})

describe('Membership: admitting linked peers', () => {
  it('writes an unknown peer in once, and again only after the first write settled', () => {
    const rules = membership()
    rules.update(EMPTY, EMPTY)
    expect(rules.admit(B, 'http://b')).toEqual([{ type: 'set.add', name: MEMBERS_SET, member: `${B} member http://b` }])
    expect(rules.admit(B, 'http://b')).toBeNull()
    rules.admitted(B)
    rules.update(setOf(`${B} member http://b`), EMPTY)
    expect(rules.admit(B, 'http://b')).toBeNull()
    expect(rules.admit(C, null)).toEqual([{ type: 'set.add', name: MEMBERS_SET, member: `${C} member -` }])
  })

  it('admits nobody before it has joined, without peer links, or a forgotten node', () => {
    expect(membership({ joined: false }).admit(B, 'http://b')).toBeNull()
    expect(membership({ linking: false }).admit(B, 'http://b')).toBeNull()
    const rules = membership()
    rules.update(EMPTY, setOf(`${B} 2`))
    expect(rules.admit(B, 'http://b')).toBeNull()
  })
})

describe('Membership: following the member set', () => {
  it('dials members the configured list misses, but not reached ones or its own URL', () => {
    const rules = membership({ peers: ['http://b'] })
    rules.update(
      setOf(`${A} member http://a`, `${B} member http://b2`, `${C} member http://c`, `${D} member http://a`),
      EMPTY,
    )
    const { drop, dial } = rules.follow([{ url: 'http://b', nodeId: B }])
    expect(drop).toEqual([])
    expect(dial).toEqual([{ nodeId: C, url: 'http://c' }])
  })

  it('dials nothing while the configured list is as long as the other members', () => {
    const rules = membership({ peers: ['http://b', 'http://c'] })
    rules.update(setOf(`${B} member http://b`, `${C} member http://c`), EMPTY)
    expect(rules.follow([]).dial).toEqual([])
  })

  it('drops the kept URLs of forgotten nodes, and leaves them out of the members', () => {
    const rules = membership({ peers: ['http://b'] })
    rules.update(setOf(`${B} member http://b`, `${C} member http://c`), setOf(`${C} 9`))
    expect([...rules.members.keys()]).toEqual([B])
    expect(rules.isForgotten(C)).toBe(true)
    const { drop } = rules.follow([
      { url: 'http://b', nodeId: B },
      { url: 'http://c', nodeId: C },
      { url: 'http://x', nodeId: null },
    ])
    expect(drop).toEqual(['http://c'])
    expect(rules.memberUrls()).toEqual([{ nodeId: B, url: 'http://b' }])
  })
})

describe('Membership: counting and forgetting', () => {
  it('counts the member set and peers heard from, or the configured peers if more, never the forgotten', () => {
    const rules = membership({ peers: ['http://b', 'http://c', 'http://d'] })
    rules.update(setOf(`${B} member http://b`), EMPTY)
    expect(rules.count([], [])).toBe(4)
    rules.update(setOf(`${B} member http://b`), setOf(`${D} 1`))
    expect(rules.count([C], [{ url: 'http://d', nodeId: D }])).toBe(3)
    const alone = membership()
    alone.update(setOf(`${B} member http://b`, `${C} member -`), EMPTY)
    expect(alone.count([D], [])).toBe(4)
  })

  it('forgets a known node, refuses itself and a node never heard of', async () => {
    const rules = membership()
    const state = setOf(`${B} member http://b`)
    rules.update(state, EMPTY)
    expect(rules.forget(B, 3, [], state)).toEqual(forgetIntents(state, B, 3))
    expect(rules.forget(C, 0, [C], state)).toEqual(forgetIntents(state, C, 0))
    expect(await meshCodeOf(() => rules.forget(A, 1, [], state))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await meshCodeOf(() => rules.forget(D, 1, [], state))).toBe('MESHKV_ERR_UNKNOWN_MEMBER')
  })
})
