import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { dotKey, vcCovers, vcGet, vcJoin, vcSet } from '../../src/clock/index.js'
import type { Change } from '../../src/crdt/index.js'
import { CAUSAL_BUFFER_CHANGES_MAX_DEFAULT, CausalBuffer } from '../../src/replication/causal-buffer.js'
import { assertProperty } from '../helpers/replication-sim.js'
import { RUNS } from '../helpers/runs.js'

const FILE = 'test/replication/causal-buffer.test.ts'
const A = '00000000000000aa' as NodeId
const B = '00000000000000bb' as NodeId
const C = '00000000000000cc' as NodeId
const ORIGINS = [A, B, C, '00000000000000dd' as NodeId]

/** A change with no ops: the buffer looks only at dots and deps. */
function change(node: NodeId, seq: number, deps: VectorClock = {}): Change {
  return { dot: { node, seq }, deps: vcSet(deps, node, seq - 1), hlc: { wallMs: seq, logical: 0 }, ops: [] }
}

/** Adds `change` and takes what became deliverable, moving `applied` along. */
function feed(buffer: CausalBuffer, state: { applied: VectorClock; out: Change[] }, arriving: Change): string {
  const result = buffer.add(arriving, state.applied)
  for (const delivered of buffer.takeDeliverable(state.applied)) {
    state.out.push(delivered)
    state.applied = vcSet(state.applied, delivered.dot.node, delivered.dot.seq)
  }
  return result
}

const keys = (changes: readonly Change[]): string[] => changes.map((item) => dotKey(item.dot))

describe('CausalBuffer', () => {
  it('holds a change until the earlier changes of its origin are there, then gives them in seq order', () => {
    const buffer = new CausalBuffer()
    expect(buffer.add(change(A, 3), {})).toBe('buffered')
    expect(buffer.add(change(A, 2), {})).toBe('buffered')
    expect(buffer.takeDeliverable({})).toEqual([])
    expect(buffer.size).toBe(2)
    expect(buffer.add(change(A, 1), {})).toBe('buffered')
    expect(keys(buffer.takeDeliverable({}))).toEqual([`${A}:1`, `${A}:2`, `${A}:3`])
    expect(buffer.size).toBe(0)
  })

  it('holds a change until its deps are applied, whatever their origin', () => {
    const buffer = new CausalBuffer()
    const b1 = change(B, 1, { [A]: 2 })
    expect(buffer.add(b1, { [A]: 1 })).toBe('buffered')
    expect(buffer.takeDeliverable({ [A]: 1 })).toEqual([])
    // The missing dep was applied elsewhere (a local commit, another link): now it goes.
    expect(buffer.takeDeliverable({ [A]: 2 })).toEqual([b1])
  })

  it('follows chains across origins in one call: A1 → B1 → A2 → C1', () => {
    const a1 = change(A, 1)
    const b1 = change(B, 1, { [A]: 1 })
    const a2 = change(A, 2, { [B]: 1 })
    const c1 = change(C, 1, { [A]: 2, [B]: 1 })
    const buffer = new CausalBuffer()
    for (const item of [c1, a2, b1]) expect(buffer.add(item, {})).toBe('buffered')
    expect(buffer.takeDeliverable({})).toEqual([])
    expect(buffer.add(a1, {})).toBe('buffered')
    expect(keys(buffer.takeDeliverable({}))).toEqual(keys([a1, b1, a2, c1]))
  })

  it('never delivers past a gap in one origin even when deps of later changes are met', () => {
    const buffer = new CausalBuffer()
    buffer.add(change(A, 1), {})
    buffer.add(change(A, 3), {})
    expect(keys(buffer.takeDeliverable({}))).toEqual([`${A}:1`])
    expect(buffer.size).toBe(1)
  })

  it('calls a change it already holds, or one the applied clock covers, a duplicate', () => {
    const buffer = new CausalBuffer()
    expect(buffer.add(change(A, 2), {})).toBe('buffered')
    expect(buffer.add(change(A, 2), {})).toBe('duplicate')
    expect(buffer.add(change(B, 1), { [B]: 1 })).toBe('duplicate')
    expect(buffer.add(change(B, 1), { [B]: 4 })).toBe('duplicate')
    expect(buffer.size).toBe(1)
  })

  it('drops held changes that the applied clock has overtaken', () => {
    const buffer = new CausalBuffer()
    buffer.add(change(A, 2), {})
    buffer.add(change(A, 3), {})
    buffer.add(change(A, 5), {})
    // A:1..3 were applied another way: 2 and 3 are stale, 5 still waits for 4.
    expect(buffer.takeDeliverable({ [A]: 3 })).toEqual([])
    expect(buffer.size).toBe(1)
    expect(keys(buffer.takeDeliverable({ [A]: 4 }))).toEqual([`${A}:5`])
    expect(buffer.size).toBe(0)
  })

  it('is bounded: past changesMax a waiting change is refused as full, duplicates still say duplicate', () => {
    const buffer = new CausalBuffer(2)
    expect(buffer.changesMax).toBe(2)
    expect(buffer.add(change(A, 2), {})).toBe('buffered')
    expect(buffer.add(change(A, 3), {})).toBe('buffered')
    expect(buffer.add(change(A, 4), {})).toBe('full')
    expect(buffer.add(change(B, 2), {})).toBe('full')
    expect(buffer.add(change(A, 3), {})).toBe('duplicate')
    expect(buffer.add(change(A, 1), { [A]: 1 })).toBe('duplicate')
    expect(buffer.size).toBe(2)
    // The change the held ones wait for is taken even when full (else nothing could ever move).
    expect(buffer.add(change(A, 1), {})).toBe('buffered')
    expect(keys(buffer.takeDeliverable({}))).toEqual([`${A}:1`, `${A}:2`, `${A}:3`])
    expect(buffer.size).toBe(0)
    expect(buffer.add(change(A, 5), { [A]: 3 })).toBe('buffered')
    expect(buffer.add(change(A, 6), { [A]: 3 })).toBe('buffered')
    expect(buffer.add(change(A, 7), { [A]: 3 })).toBe('full')
    expect(buffer.add(change(B, 1, { [A]: 4 }), { [A]: 3 })).toBe('full')
    expect(buffer.add(change(C, 1, { [A]: 3 }), { [A]: 3 })).toBe('buffered')
    expect(buffer.size).toBe(3)
    expect(keys(buffer.takeDeliverable({ [A]: 3 }))).toEqual([`${C}:1`])
  })

  it('has room again once something left', () => {
    const buffer = new CausalBuffer(2)
    buffer.add(change(A, 2), {})
    buffer.add(change(A, 3), {})
    expect(buffer.add(change(A, 4), {})).toBe('full')
    expect(keys(buffer.takeDeliverable({ [A]: 1 }))).toEqual([`${A}:2`, `${A}:3`])
    expect(buffer.add(change(A, 5), { [A]: 3 })).toBe('buffered')
    expect(buffer.size).toBe(1)
  })

  it("dropAfter() drops only the origin's changes past the seq and frees their room", () => {
    const buffer = new CausalBuffer(4)
    buffer.add(change(A, 2), {})
    buffer.add(change(A, 3), {})
    buffer.add(change(A, 5), {})
    buffer.add(change(B, 2), {})
    expect(buffer.dropAfter(A, 2)).toBe(2)
    expect(buffer.dropAfter(C, 0)).toBe(0)
    expect(buffer.size).toBe(2)
    expect(keys(buffer.takeDeliverable({ [A]: 1, [B]: 1 }))).toEqual([
      dotKey({ node: A, seq: 2 }),
      dotKey({ node: B, seq: 2 }),
    ])
    expect(buffer.size).toBe(0)
  })

  it("pending() lists the origin's held seqs, ascending, and follows takes and drops", () => {
    const buffer = new CausalBuffer()
    buffer.add(change(A, 5), {})
    buffer.add(change(A, 3), {})
    buffer.add(change(B, 2), {})
    expect(buffer.pending(A)).toEqual([3, 5])
    expect(buffer.pending(C)).toEqual([])
    buffer.takeDeliverable({ [A]: 2, [B]: 1 })
    expect(buffer.pending(A)).toEqual([5])
    expect(buffer.pending(B)).toEqual([])
    buffer.dropAfter(A, 4)
    expect(buffer.pending(A)).toEqual([])
  })

  it('clear() empties it', () => {
    const buffer = new CausalBuffer(3)
    buffer.add(change(A, 2), {})
    buffer.add(change(B, 2), {})
    buffer.clear()
    expect(buffer.size).toBe(0)
    expect(buffer.takeDeliverable({ [A]: 1, [B]: 1 })).toEqual([])
    expect(buffer.add(change(A, 2), {})).toBe('buffered')
  })

  it('defaults to CAUSAL_BUFFER_CHANGES_MAX_DEFAULT', () => {
    expect(new CausalBuffer().changesMax).toBe(CAUSAL_BUFFER_CHANGES_MAX_DEFAULT)
  })
})

// ---------------------------------------------------------------------------------------------
// The property: causally consistent histories, delivered in any order with duplicates.

type HistoryStep = { readonly write: boolean; readonly at: number; readonly from: number }

/** Changes made by 1-4 origins that write and merge each other's clocks: causally consistent. */
function buildHistory(origins: number, steps: readonly HistoryStep[]): Change[] {
  const clocks: VectorClock[] = Array.from({ length: origins }, () => ({}))
  const changes: Change[] = []
  for (const step of steps) {
    const at = step.at % origins
    const node = ORIGINS[at] as NodeId
    const clock = clocks[at] as VectorClock
    if (step.write) {
      const seq = vcGet(clock, node) + 1
      changes.push({ dot: { node, seq }, deps: clock, hlc: { wallMs: changes.length, logical: 0 }, ops: [] })
      clocks[at] = vcSet(clock, node, seq)
    } else {
      clocks[at] = vcJoin(clock, clocks[step.from % origins] as VectorClock)
    }
  }
  return changes
}

const historyArb: fc.Arbitrary<Change[]> = fc
  .record({
    origins: fc.integer({ min: 1, max: 4 }),
    steps: fc.array(fc.record({ write: fc.boolean(), at: fc.nat(3), from: fc.nat(3) }), { maxLength: 40 }),
  })
  .map(({ origins, steps }) => buildHistory(origins, steps))

/** The history, every change in a shuffled order, plus duplicates at random places. */
const arrivalsArb = historyArb.chain((changes) =>
  fc
    .record({
      order: fc.shuffledSubarray(changes, { minLength: changes.length, maxLength: changes.length }),
      duplicates: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 20 }),
      takeEvery: fc.boolean(),
    })
    .map(({ order, duplicates, takeEvery }) => {
      const arrivals = [...order]
      if (changes.length > 0) {
        for (const [which, where] of duplicates)
          arrivals.splice(where % (arrivals.length + 1), 0, changes[which % changes.length] as Change)
      }
      return { changes, arrivals, takeEvery }
    }),
)

/** Fails unless `delivered` is every change once, each after its origin's previous one and its deps. */
function expectLinearExtension(changes: readonly Change[], delivered: readonly Change[]): void {
  expect(delivered.length).toBe(changes.length)
  expect(new Set(keys(delivered)).size).toBe(changes.length)
  let applied: VectorClock = {}
  for (const item of delivered) {
    expect(vcGet(applied, item.dot.node), `${dotKey(item.dot)} is next for its origin`).toBe(item.dot.seq - 1)
    expect(vcCovers(applied, item.deps), `${dotKey(item.dot)} comes after its deps`).toBe(true)
    applied = vcSet(applied, item.dot.node, item.dot.seq)
  }
}

describe('CausalBuffer (property)', () => {
  const LINEAR =
    'gives any arrival order of a causal history, duplicates included, back as a linear extension of causality'
  it(LINEAR, () => {
    assertProperty(
      fc.property(arrivalsArb, ({ changes, arrivals, takeEvery }) => {
        const buffer = new CausalBuffer()
        const state = { applied: {} as VectorClock, out: [] as Change[] }
        let duplicates = 0
        for (const arriving of arrivals) {
          const result = takeEvery ? feed(buffer, state, arriving) : buffer.add(arriving, state.applied)
          expect(result).not.toBe('full')
          if (result === 'duplicate') duplicates++
        }
        if (!takeEvery) {
          state.out = buffer.takeDeliverable({})
        }
        expectLinearExtension(changes, state.out)
        expect(duplicates).toBe(arrivals.length - changes.length)
        expect(buffer.size).toBe(0)
      }),
      { numRuns: RUNS, file: FILE, name: LINEAR },
    )
  })

  const BOUNDED =
    'never holds more than changesMax between feeds, and never refuses the change next in line: refused changes fed again all get through'
  it(BOUNDED, () => {
    assertProperty(
      fc.property(arrivalsArb, fc.integer({ min: 1, max: 6 }), ({ changes, arrivals }, changesMax) => {
        const buffer = new CausalBuffer(changesMax)
        const state = { applied: {} as VectorClock, out: [] as Change[] }
        let queue = [...arrivals]
        // Refused changes come again in a later round (the sender resends after a sync).
        for (let round = 0; queue.length > 0; round++) {
          expect(round, 'rounds needed to deliver everything').toBeLessThan(changes.length + 2)
          const refused: Change[] = []
          for (const arriving of queue) {
            if (feed(buffer, state, arriving) === 'full') refused.push(arriving)
            expect(buffer.size).toBeLessThanOrEqual(changesMax)
          }
          queue = refused
        }
        expectLinearExtension(changes, state.out)
      }),
      { numRuns: RUNS, file: FILE, name: BOUNDED },
    )
  })
})
