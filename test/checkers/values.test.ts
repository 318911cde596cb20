/**
 * The value checkers (values.ts) as the simulator runs them: over `valuesOf` of its dot-level final
 * states, every key contended, with deletes, negative increments, lossy crashes and many events in
 * one virtual ms. Each generalised rule passes what it must and catches a planted violation.
 * (test/chaos/checks.test.ts covers them as chaos runs them.)
 */
import { describe, expect, it } from 'vitest'
import { encodeCausalToken } from '../../src/clock/index.js'
import type { CompletionEvent, FinalNodeState, HistoryEvent, Operation } from './history.js'
import type { NodeValues, ValueCheckResult } from './values.js'
import { checkValues, eventOrder, mayCommitAfter, valuesOf } from './values.js'
import { operations } from './history.js'

const A = 'aaaaaaaaaaaaaaaa'
const B = 'bbbbbbbbbbbbbbbb'

/** A simulator-like history: nodes are numbers, and time moves only when told (`tick`). */
class Sim {
  readonly history: HistoryEvent[] = []
  #id = 1
  now = 0

  invoke(client: number, op: Operation, node = 0): number {
    const id = this.#id++
    this.history.push({ kind: 'invoke', id, client, node, atMs: this.now, op })
    return id
  }

  complete(
    id: number,
    kind: CompletionEvent['kind'],
    fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {},
  ): void {
    this.history.push({ kind, id, atMs: this.now, ...fields })
  }

  op(
    client: number,
    op: Operation,
    kind: CompletionEvent['kind'],
    fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {},
    node = 0,
  ): number {
    const id = this.invoke(client, op, node)
    this.tick()
    this.complete(id, kind, fields)
    this.tick()
    return id
  }

  crash(node: number, lossy: boolean): void {
    this.history.push({ kind: 'nemesis', atMs: this.now, fault: 'crash', nodes: [node], lossy })
    this.tick()
  }

  tick(): void {
    this.now += 10
  }
}

/** Three nodes holding the same values. */
function nodes(state: {
  kv?: Record<string, string[]>
  counters?: Record<string, number>
  sets?: Record<string, string[]>
}): NodeValues[] {
  return [0, 1, 2].map((n) => ({
    n,
    url: String(n),
    digest: 'same',
    uniques: new Map(),
    contended: new Map(Object.entries(state.kv ?? {})),
    counters: new Map(Object.entries(state.counters ?? {})),
    sets: new Map(Object.entries(state.sets ?? {}).map(([name, members]) => [name, new Set(members)])),
  }))
}

function check(history: readonly HistoryEvent[], finals: NodeValues[]): ValueCheckResult {
  return checkValues({ history, finals, members: 3 })
}

function messages(result: ValueCheckResult): string {
  return result.violations.map((violation) => `[${violation.checker}] ${violation.message}`).join('\n')
}

describe('valuesOf: a dot-level final state as the public API shows it', () => {
  const state: FinalNodeState = {
    node: 2,
    digest: 'd',
    vc: { a: 3 },
    kv: {
      k0: {
        siblings: [
          { dot: 'a:1', hlc: [1, 0], value: 'x' },
          { dot: 'a:2', hlc: [2, 0], value: null },
          { dot: 'a:3', hlc: [3, 0], value: 'y' },
        ],
        read: 'y',
      },
      k1: { siblings: [{ dot: 'a:4', hlc: [4, 0], value: null }], read: null },
      'u/1': { siblings: [{ dot: 'a:5', hlc: [5, 0], value: 'z' }], read: 'z' },
    },
    counters: { c0: -3 },
    sets: { s0: { m1: ['a:1'], m2: [] }, s1: { m3: [] } },
  }

  it('keeps sibling values without tombstones, counters, and members with dots; every key contended by default', () => {
    const values = valuesOf(state)
    expect(values.n).toBe(2)
    expect(values.url).toBe('2')
    expect(values.digest).toBe('d')
    expect(values.uniques).toEqual(new Map())
    expect(values.contended).toEqual(
      new Map([
        ['k0', ['x', 'y']],
        ['u/1', ['z']],
      ]),
    )
    expect(values.counters).toEqual(new Map([['c0', -3]]))
    expect(values.sets).toEqual(new Map([['s0', new Set(['m1'])]]))
  })

  it('puts keys under a unique prefix in `uniques` with their plain read; a string label takes the position', () => {
    const values = valuesOf({ ...state, node: 'http://n' }, { position: 4, uniquePrefix: 'u/' })
    expect(values.n).toBe(4)
    expect(values.uniques).toEqual(new Map([['u/1', 'z']]))
    expect(values.contended.has('u/1')).toBe(false)
  })

  it('feeds checkValues: a phantom value and a lost write in the state are caught through it', () => {
    const sim = new Sim()
    sim.op(0, { type: 'put', key: 'k0', value: 'x', w: 1 }, 'ok', { required: 1 })
    sim.op(1, { type: 'put', key: 'k0', value: 'y', w: 1 }, 'ok', { required: 1 })
    sim.op(1, { type: 'incr', name: 'c0', delta: -3, w: 1 }, 'ok', { required: 1 })
    const run = (kv: FinalNodeState['kv']): ValueCheckResult =>
      checkValues({ history: sim.history, finals: [valuesOf({ ...state, kv })], members: 3 })
    // u/1 holds z, which nobody wrote; k1 holds only a tombstone, which shows nothing.
    expect(messages(run(state.kv))).toBe('[registers] node 2 holds z on u/1, which no put wrote')
    // y came after x: it may have replaced it.
    expect(run({ k0: { siblings: [{ dot: 'a:3', hlc: [3, 0], value: 'y' }], read: 'y' } }).violations).toEqual([])
    // x came before y: it cannot have replaced y.
    expect(messages(run({ k0: { siblings: [{ dot: 'a:1', hlc: [1, 0], value: 'x' }], read: 'x' } }))).toMatch(
      /acknowledged write lost: k0=y/,
    )
  })
})

describe('value checkers, generalised for the simulator', () => {
  it('order, not time: a remove that came back in the same ms as the add was invoked', () => {
    const sim = new Sim()
    const remove = sim.invoke(1, { type: 'srem', name: 's', member: 'm', w: 1 })
    // The add is invoked in the same ms; the remove completes after it: it may have observed the add.
    const add = sim.invoke(0, { type: 'sadd', name: 's', member: 'm', w: 1 })
    sim.complete(remove, 'ok')
    sim.tick()
    sim.complete(add, 'ok')
    const ops = operations(sim.history)
    const [removeRecord, addRecord] = ops
    if (removeRecord === undefined || addRecord === undefined) throw new Error('missing ops')
    expect(mayCommitAfter(removeRecord, addRecord)).toBe(false)
    expect(mayCommitAfter(removeRecord, addRecord, eventOrder(sim.history))).toBe(true)
    expect(check(sim.history, nodes({ sets: {} })).violations).toEqual([])

    // Planted: the remove completes before the add is invoked, still in the same ms: it cannot have seen it.
    const bad = new Sim()
    const early = bad.invoke(1, { type: 'srem', name: 's', member: 'm', w: 1 })
    bad.complete(early, 'ok')
    const late = bad.invoke(0, { type: 'sadd', name: 's', member: 'm', w: 1 })
    bad.tick()
    bad.complete(late, 'ok')
    expect(messages(check(bad.history, nodes({ sets: {} })))).toMatch(/add of m is gone/)
  })

  it('deletes: a put is gone through a delete that can have come after it, never through one before it', () => {
    const sim = new Sim()
    sim.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1 })
    sim.op(1, { type: 'del', key: 'k', w: 1 }, 'ok', { required: 1 })
    expect(check(sim.history, nodes({})).violations).toEqual([])
    // Planted: the delete finished before the put began.
    const bad = new Sim()
    bad.op(1, { type: 'del', key: 'k', w: 1 }, 'ok', { required: 1 })
    bad.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1 })
    expect(messages(check(bad.history, nodes({})))).toMatch(/acknowledged write lost: k=a/)
    // A failed delete excuses nothing.
    const failed = new Sim()
    failed.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1 })
    failed.op(1, { type: 'del', key: 'k', w: 1 }, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
    expect(messages(check(failed.history, nodes({})))).toMatch(/acknowledged write lost: k=a/)
  })

  it('lossy crashes: a write is excused only when its node and as many members as acknowledged it lost data after it', () => {
    const run = (crashes: [number, boolean][], w: 1 | 'quorum'): ValueCheckResult => {
      const sim = new Sim()
      sim.op(0, { type: 'put', key: 'k', value: 'a', w }, 'ok', { required: w === 1 ? 1 : 2 }, 0)
      sim.op(0, { type: 'incr', name: 'c', delta: 4, w }, 'ok', { required: w === 1 ? 1 : 2 }, 0)
      sim.op(0, { type: 'sadd', name: 's', member: 'm', w }, 'ok', { required: w === 1 ? 1 : 2 }, 0)
      for (const [node, lossy] of crashes) sim.crash(node, lossy)
      return check(sim.history, nodes({}))
    }
    const excused = run([[0, true]], 1)
    expect(excused.violations).toEqual([])
    expect(excused.loss['1']).toEqual({ acknowledged: 1, lost: 0, excused: 1 })
    expect(excused.sets[0]?.lostToCrashes).toBe(1)
    expect(
      run(
        [
          [0, true],
          [1, true],
        ],
        'quorum',
      ).violations,
    ).toEqual([])
    // Planted: a crash that keeps the disk, a lossy crash of another node, or too few of them.
    for (const [crashes, w] of [
      [[[0, false]], 1],
      [[[1, true]], 1],
      [[[0, true]], 'quorum'],
    ] as const) {
      const result = run(
        crashes.map(([node, lossy]) => [node, lossy]),
        w,
      )
      expect([...new Set(result.violations.map((violation) => violation.checker))].sort()).toEqual([
        'counters',
        'registers',
        'sets',
      ])
    }
  })

  it('counters: negative deltas, and the unknown increments as a subset, not a range', () => {
    const sim = new Sim()
    sim.op(0, { type: 'incr', name: 'c', delta: 5, w: 1 }, 'ok')
    sim.op(0, { type: 'incr', name: 'c', delta: -2, w: 1 }, 'unknown')
    sim.op(1, { type: 'incr', name: 'c', delta: 3, w: 1 }, 'unknown')
    sim.op(1, { type: 'incr', name: 'c', delta: 40, w: 1 }, 'fail')
    for (const value of [3, 5, 6, 8])
      expect(check(sim.history, nodes({ counters: { c: value } })).violations).toEqual([])
    // Planted: 4 and 7 are within the range [3, 8] but no subset of {-2, 3} makes them.
    for (const value of [4, 7, 2, 9, 45])
      expect(messages(check(sim.history, nodes({ counters: { c: value } })))).toMatch(/counter c is/)
  })

  it('sessions: a delete after the own write excuses a read without it; a delete before does not', () => {
    const sim = new Sim()
    sim.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1, token: 't' })
    sim.op(1, { type: 'del', key: 'k', w: 1 }, 'ok', { required: 1 })
    sim.op(0, { type: 'get', key: 'k', token: 't' }, 'ok', { result: null, siblings: [] })
    const result = check(sim.history, nodes({}))
    expect(result.violations).toEqual([])
    expect(result.sessions).toEqual({ readsWithToken: 1, readsChecked: 1, violations: 0 })
    // Planted: the delete finished before the own write began.
    const bad = new Sim()
    bad.op(1, { type: 'del', key: 'k', w: 1 }, 'ok', { required: 1 })
    bad.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1, token: 't' })
    bad.op(0, { type: 'get', key: 'k', token: 't' }, 'ok', { result: null, siblings: [] })
    expect(messages(check(bad.history, nodes({ kv: { k: ['a'] } })))).toMatch(/session read missed/)
  })
})

describe('clock checks (from checks.ts, at the token level): when the finals carry their clocks', () => {
  const token = (vc: Record<string, number>): string => encodeCausalToken(vc as never)
  const withClocks = (clocks: Record<string, number>[]): NodeValues[] =>
    nodes({ kv: { k: ['a'] } }).map((node, index) => ({ ...node, vc: clocks[index] ?? {} }))

  it('pass equal clocks that cover every acknowledged write, and catch clocks that differ', () => {
    const sim = new Sim()
    sim.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1, token: token({ [A]: 2 }) })
    const same = { [A]: 2, [B]: 1 }
    expect(check(sim.history, withClocks([same, same, same])).violations).toEqual([])
    // Planted: one node's clock is behind (its digest still says "same").
    expect(messages(check(sim.history, withClocks([same, same, { [A]: 2 }])))).toMatch(/vector clocks differ/)
    // Without clocks (a saved run from before), nothing is checked.
    const without = check(sim.history, nodes({ kv: { k: ['a'] } }))
    expect(without.violations).toEqual([])
    expect(without.clocks).toEqual({ compared: 0, writesChecked: 0, writesAfterCrash: 0 })
  })

  it('catch an acknowledged write beyond the final clocks, unless a crash followed it', () => {
    const sim = new Sim()
    sim.op(0, { type: 'put', key: 'k', value: 'a', w: 1 }, 'ok', { required: 1, token: token({ [A]: 3 }) })
    const behind = { [A]: 2 }
    const result = check(sim.history, withClocks([behind, behind, behind]))
    expect(messages(result)).toMatch(
      /an acknowledged write is not in the final clock: op 1 .* beyond the final clock of nodes 0,1,2/,
    )
    expect(result.clocks).toEqual({ compared: 3, writesChecked: 1, writesAfterCrash: 0 })
    sim.crash(0, false)
    const excused = check(sim.history, withClocks([behind, behind, behind]))
    expect(excused.violations).toEqual([])
    expect(excused.clocks).toEqual({ compared: 3, writesChecked: 0, writesAfterCrash: 1 })
  })

  it('valuesOf carries the clock', () => {
    const values = valuesOf({ node: 0, digest: 'd', vc: { [A]: 1 }, kv: {}, counters: {}, sets: {} })
    expect(values.vc).toEqual({ [A]: 1 })
  })
})
