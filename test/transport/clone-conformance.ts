/**
 * The conformance cases for one node id run by two live processes (a cloned data directory), part
 * of the `Transport` conformance suite (conformance.ts runs them for both transports): a clone
 * dialing the original is not taken for the node itself; a third node that hears both processes
 * closes both with 4009 and each is told (`conflict`); a restarted process is never called a clone.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { expect, it } from 'vitest'
import type { TransportCounters } from '../../src/transport/core.js'
import { CLOSE_CODES } from '../../src/transport/transport.js'
import type { Transport } from '../../src/transport/transport.js'
import type { HarnessNode, TransportHarness } from './conformance.js'
import { freshNodeId } from './helpers.js'

/** Deadline for a conflict to be found and said (a few redials and ping intervals). */
const CONFLICT_MS = 5_000
/** How long to watch for something that must not happen. */
const QUIET_MS = 500

function countersOf(transport: Transport): TransportCounters {
  if (!('counters' in transport)) throw new Error('a conformance transport counts its refusals')
  return transport.counters as TransportCounters
}

async function conflictSaid(node: HarnessNode, what: string): Promise<void> {
  await expect.poll(() => node.events.conflicts.length > 0, { timeout: CONFLICT_MS, message: what }).toBe(true)
}

export function cloneConformance(harness: () => TransportHarness): void {
  it('a clone dialing the original: both report a conflict after both proofs, neither links, neither is "self"', async () => {
    const nodeId = freshNodeId()
    const original = await harness().start({ nodeId })
    const clone = await harness().start({ nodeId })
    clone.transport.keep(original.url)
    await conflictSaid(original, 'the original reports the conflict')
    await conflictSaid(clone, 'the clone reports the conflict')
    for (const node of [original, clone]) {
      expect(node.events.conflicts.every((conflict) => conflict.peer === null)).toBe(true)
      expect(node.events.links).toEqual([])
      expect(node.events.refusals.some((refusal) => refusal.code === 'MESHKV_ERR_NODE_ID_CONFLICT')).toBe(true)
      expect(node.events.refusals.some((refusal) => refusal.code === 'MESHKV_ERR_CONFIG')).toBe(false)
    }
    // Not taken for itself: the URL stays kept (and is redialed, and refused again).
    expect(clone.transport.keptUrls().map((kept) => kept.url)).toEqual([original.url])
  })

  for (const heldBy of ['the process', 'the third node'] as const) {
    it(`a third node linked to one process (dialed by ${heldBy}) and dialed by another: both closed with 4009 and told`, async () => {
      const nodeId = freshNodeId()
      const third = await harness().start()
      const first = await harness().start({ nodeId })
      if (heldBy === 'the process') first.transport.keep(third.url)
      else third.transport.keep(first.url)
      const held = await third.events.oneOpen(CONFLICT_MS, 'the link to the first process')
      const second = await harness().start({ nodeId })
      second.transport.keep(third.url)
      await conflictSaid(first, 'the first process is told')
      await conflictSaid(second, 'the second process is told')
      for (const node of [first, second]) {
        expect(node.events.conflicts.every((conflict) => conflict.peer === third.nodeId)).toBe(true)
      }
      expect(held.closes).toEqual([{ code: CLOSE_CODES.idConflict, reason: expect.any(String) as string }])
      const refused = await third.events.refusal('MESHKV_ERR_NODE_ID_CONFLICT', CONFLICT_MS, 'the third refuses')
      expect(refused.nodeId).toBe(nodeId)
      // Both stay refused: neither process links to the third again, and the third has no conflict of its own.
      await sleep(QUIET_MS)
      expect(third.events.open.filter((record) => record.link.nodeId === nodeId)).toEqual([])
      expect(countersOf(third.transport).idConflicts).toBe(1)
      // Before it was found out, the second process was refused as a duplicate (a restart looks alike).
      expect(countersOf(third.transport).idAlreadyLinked).toBeGreaterThanOrEqual(1)
      expect(third.events.conflicts).toEqual([])
    })
  }

  it('a restarted process (its old link gone) links again and nobody is told of a conflict', async () => {
    const nodeId = freshNodeId()
    const third = await harness().start()
    const before = await harness().start({ nodeId })
    before.transport.keep(third.url)
    third.transport.keep(before.url)
    await third.events.oneOpen(CONFLICT_MS, 'the link to the process before its restart')
    await harness().stop(before)
    const after = await harness().start({ nodeId, url: before.url })
    after.transport.keep(third.url)
    await expect
      .poll(() => third.events.open.some((record) => record.link.nodeId === nodeId), {
        timeout: CONFLICT_MS,
        message: 'the restarted process links again',
      })
      .toBe(true)
    await sleep(QUIET_MS)
    expect(after.events.open).toHaveLength(1)
    expect([...third.events.conflicts, ...after.events.conflicts]).toEqual([])
    expect(countersOf(third.transport).idConflicts).toBe(0)
  })
}
