/**
 * The one stability rule (src/replication/stability.ts): the stable cut and what every member
 * holds are both the meet of this node's clock and a chosen clock per member. By hand for the
 * cases that matter, and as a property: the result is at or below every clock it was taken over,
 * pointwise, and it is the greatest such clock.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { vcCovers, vcGet, vcNormalize } from '../../src/clock/index.js'
import { meetOverMembers, stabilityMembers } from '../../src/replication/stability.js'
import { PROPERTY } from '../helpers/runs.js'

const A = '000000000000000a' as NodeId
const B = '000000000000000b' as NodeId
const C = '000000000000000c' as NodeId
const IDS = [A, B, C] as const

const clockOf =
  (clocks: Partial<Record<NodeId, VectorClock>>) =>
  (member: NodeId): VectorClock | undefined =>
    clocks[member]

describe('meetOverMembers', () => {
  it('with no members is this node’s own clock', () => {
    expect(meetOverMembers({ [A]: 3, [B]: 1 }, [], clockOf({}))).toEqual({ [A]: 3, [B]: 1 })
  })

  it('takes the pointwise minimum of the own clock and each member’s', () => {
    const own = { [A]: 5, [B]: 4, [C]: 2 }
    const clocks = { [B]: { [A]: 3, [B]: 4, [C]: 2 }, [C]: { [A]: 5, [B]: 1, [C]: 2 } }
    expect(meetOverMembers(own, [B, C], clockOf(clocks))).toEqual({ [A]: 3, [B]: 1, [C]: 2 })
  })

  it('a member without a clock (never heard from) holds everything back', () => {
    const own = { [A]: 5, [B]: 4 }
    expect(meetOverMembers(own, [B, C], clockOf({ [B]: { [A]: 5, [B]: 4 } }))).toEqual({})
  })

  it('an entry a member lacks counts as zero', () => {
    expect(meetOverMembers({ [A]: 2, [B]: 2 }, [B], clockOf({ [B]: { [B]: 2 } }))).toEqual({ [B]: 2 })
  })

  it('asks only for the members it is given', () => {
    const asked: NodeId[] = []
    meetOverMembers({ [A]: 1 }, [B], (member) => {
      asked.push(member)
      return { [A]: 1 }
    })
    expect(asked).toEqual([B])
  })

  it('is at or below every clock it meets, and the greatest such clock (property)', () => {
    const clock = fc
      .array(fc.tuple(fc.constantFrom(...IDS), fc.nat({ max: 20 })), { maxLength: 3 })
      .map((entries) => vcNormalize(entries))
    const input = fc.record({
      own: clock,
      members: fc.subarray([...IDS]),
      clocks: fc.record({ [A]: fc.option(clock), [B]: fc.option(clock), [C]: fc.option(clock) }),
      candidate: clock,
    })
    fc.assert(
      fc.property(input, ({ own, members, clocks, candidate }) => {
        const chosen = (member: NodeId): VectorClock | undefined => clocks[member] ?? undefined
        const meet = meetOverMembers(own, members, chosen)
        const bounds = [own, ...members.map((member) => chosen(member) ?? {})]
        // Below each: every clock covers the meet.
        for (const bound of bounds) expect(vcCovers(bound, meet)).toBe(true)
        // The greatest: each entry equals the smallest bound's entry.
        for (const id of IDS) expect(vcGet(meet, id)).toBe(Math.min(...bounds.map((bound) => vcGet(bound, id))))
        // So any clock below every bound is below the meet.
        if (bounds.every((bound) => vcCovers(bound, candidate))) expect(vcCovers(meet, candidate)).toBe(true)
      }),
      PROPERTY,
    )
  })
})

describe('stabilityMembers', () => {
  it('joins the configured and the heard members, less this node and the forgotten', () => {
    const members = stabilityMembers([A, B], [B, C], A, [C])
    expect([...members].sort()).toEqual([B])
  })

  it('counts a peer heard on this run even when it is not configured', () => {
    expect([...stabilityMembers([], [C], A, [])]).toEqual([C])
  })
})
