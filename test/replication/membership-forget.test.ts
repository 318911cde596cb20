/**
 * Forgetting a live member (docs/architecture.md, "Membership"; issue 12, part 2): the cut is the
 * highest seq of the member any survivor is known to hold, several forget entries agree on the
 * greatest, survivors take each other's relays of the member's changes past the cut (else they
 * split and stall), and the member learns it was forgotten.
 */
import { describe, expect, it } from 'vitest'
import { toNodeId, vcEquals, vcGet } from '../../src/clock/index.js'
import type { Intent, SetState } from '../../src/crdt/index.js'
import { canonicalSet } from '../../src/crdt/index.js'
import { FORGOTTEN_SET, Membership, forgottenOf } from '../../src/replication/membership.js'
import { PeerBook, forgetCut, heardAck, heardSync } from '../../src/replication/peers.js'
import { SimCluster, replayCommand, seedFromEnv, withSeed } from '../helpers/replication-sim.js'

const FILE = 'test/replication/membership-forget.test.ts'
const A = toNodeId('a1a1a1a1a1a1a1a1')
const B = toNodeId('b2b2b2b2b2b2b2b2')
const C = toNodeId('c3c3c3c3c3c3c3c3')
const D = toNodeId('d4d4d4d4d4d4d4d4')

function setOf(...members: string[]): SetState {
  return canonicalSet(members.map((member, index) => ({ member, dots: [{ node: A, seq: index + 1 }] })))
}

const put = (key: string): Intent => ({
  type: 'kv.put',
  key,
  value: new Uint8Array(Buffer.from(key)),
  contentType: 'text/plain',
})

describe('the forget cut', () => {
  it('is the highest seq of the member this node or any surviving peer is known to hold', () => {
    const book = new PeerBook()
    heardSync(book.info(B, null), { [C]: 4 })
    const d = book.info(D, null)
    heardAck(d, { [C]: 6 })
    // A claim past what this node held when it came (checkClaim caps it) still counts: D holds it.
    d.cappedClaim = { [C]: 9 }
    // The member's own word does not: only what survivors hold stays.
    heardSync(book.info(C, null), { [C]: 20 })
    expect(forgetCut({ [C]: 2 }, C, book.values())).toBe(9)
    expect(forgetCut({ [C]: 12 }, C, book.values())).toBe(12)
    expect(forgetCut({}, C, [])).toBe(0)
  })

  it('of several forget entries for one node (two forgetters), is the greatest, in any order', () => {
    const entries = [`${C} 7`, `${C} 3`, `${C} 11`, `${D} 2`]
    const expected = new Map([
      [C, 11],
      [D, 2],
    ])
    expect(forgottenOf(setOf(...entries))).toEqual(expected)
    expect(forgottenOf(setOf(...entries.reverse()))).toEqual(expected)
  })
})

describe('a node that sees itself forgotten', () => {
  it('says so, admits nobody and claims nothing', () => {
    const rules = new Membership({ self: C, role: 'member', url: 'http://c', peers: [], linking: true, joined: true })
    rules.update(setOf(`${C} member http://c`), setOf())
    expect(rules.selfForgotten).toBe(false)
    expect(rules.admit(D, 'http://d')).not.toBeNull()
    rules.admitted(D)
    rules.update(setOf(`${C} member http://c`), setOf(`${C} 5`))
    expect(rules.selfForgotten).toBe(true)
    expect(rules.admit(B, 'http://b')).toBeNull()
    expect(rules.claim()).toBeNull()
    expect(FORGOTTEN_SET.startsWith('\u0000')).toBe(true)
  })
})

describe('survivors of a live forget', () => {
  it('take relays of the member past the cut from each other, and the member learns it by a 4403', async () => {
    const seed = seedFromEnv()
    const name = 'take relays of the member past the cut'
    await withSeed(seed, replayCommand(seed, FILE, name), async () => {
      const sim = await SimCluster.open(3, seed)
      try {
        const [a, b, c] = [sim.node(0), sim.node(1), sim.node(2)]
        sim.link(0, 1)
        sim.link(1, 2)
        for (let i = 0; i < 3; i++) await sim.write(2, [put(`c-${i}`)])
        await sim.scheduler.run()
        expect(vcGet(a.vc, c.nodeId)).toBe(3)
        // A is cut from B while C goes on writing: B holds more of C than A does or can know of.
        sim.cut(0, 1)
        for (let i = 3; i < 6; i++) await sim.write(2, [put(`c-${i}`)])
        await sim.scheduler.run()
        expect(vcGet(b.vc, c.nodeId)).toBe(6)
        // The worst case for the cut: the forgetter's own view, which nothing told it was short.
        const cut = a.replicator.forgetCut(c.nodeId)
        expect(cut).toBe(3)
        const forgotten = new Map([[c.nodeId, cut]])
        // A's forget is a change of A's own; garbage collection waits until every survivor has it.
        const forget = (await sim.write(0, [put('forget')])).change
        if (forget === null) throw new Error('the forget wrote nothing')
        a.replicator.setForgotten(forgotten, new Map([[c.nodeId, [forget.dot]]]))
        b.replicator.setForgotten(forgotten, new Map([[c.nodeId, [forget.dot]]]))
        expect(
          a.replicator.stableCut(),
          'C still counts (A never heard from it: the empty clock) while B may relay changes of it',
        ).toEqual({})
        await sim.scheduler.run()
        expect(c.replicator.forgottenBy?.peer).toBe(b.nodeId)
        // B's next change depends on C:6; A takes C:4..6 from B, so it can take B's change too.
        await sim.write(1, [put('b-after')])
        sim.link(0, 1)
        for (let round = 0; round < 20 && !vcEquals(a.vc, b.vc); round++) {
          await sim.scheduler.run()
          sim.advance(1000)
          sim.tickAll()
        }
        expect(a.vc, sim.describe()).toEqual(b.vc)
        expect(vcGet(a.vc, c.nodeId)).toBe(6)
        expect(a.counters['buffered']).toBe(0)
        // B acknowledged the forget, and A holds all of C that B holds: C no longer holds anything back.
        for (let round = 0; round < 3; round++) {
          await sim.scheduler.run()
          sim.advance(1000)
          sim.tickAll()
        }
        expect(vcGet(a.replicator.stableCut(), b.nodeId), sim.describe()).toBeGreaterThan(0)
        const digests = await sim.digests()
        expect(digests[0]?.digest).toBe(digests[1]?.digest)
        // The member's own link is refused: it learns it from A too, and sends A nothing.
        const before = a.counters['changesReceived']
        sim.link(2, 0)
        await sim.scheduler.run()
        expect(sim.linksBetween(0, 2).every((pair) => pair.dialer.closed)).toBe(true)
        expect(a.counters['changesReceived']).toBe(before)
      } finally {
        await sim.close()
      }
    })
  })
})
