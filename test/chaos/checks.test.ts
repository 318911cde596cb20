/**
 * The chaos checkers can fail: small hand-made histories and final states, each with one planted
 * fault (a lost acknowledged write, a failed write that landed, a counter counted twice, an add
 * removed by a remove that came before it, a session read that missed its own write), are each
 * caught; the same history without the fault passes.
 */
import { describe, expect, it } from 'vitest'
import type { Operation } from '../checkers/history.js'
import type { NodeFinal } from './checks.js'
import { checkRun } from './checks.js'
import type { ChaosCompletion, FaultEvent, OpRecord } from './history.js'

const URLS = ['http://n1', 'http://n2', 'http://n3']

class Script {
  readonly ops: OpRecord[] = []
  readonly faults: FaultEvent[] = []
  #clock = 1_000

  op(client: number, op: Operation, kind: ChaosCompletion['kind'], extra: Partial<ChaosCompletion> = {}): OpRecord {
    const invokedMs = (this.#clock += 10)
    const id = this.ops.length + 1
    const record: OpRecord = {
      id,
      client,
      node: URLS[0] as string,
      op,
      invokedMs,
      end: { kind, id, atMs: (this.#clock += 10), servedBy: URLS[0] as string, ...extra },
    }
    this.ops.push(record)
    return record
  }

  kill(node: number): void {
    this.faults.push({ kind: 'nemesis', fault: 'crash', lossy: false, nodes: [node], atMs: (this.#clock += 10) })
  }
}

function finals(state: {
  uniques?: Record<string, string>
  contended?: Record<string, string[]>
  counters?: Record<string, number>
  sets?: Record<string, string[]>
}): NodeFinal[] {
  return URLS.map((url, index) => ({
    n: index + 1,
    url,
    digest: 'same',
    uniques: new Map(Object.entries(state.uniques ?? {})),
    contended: new Map(Object.entries(state.contended ?? {})),
    counters: new Map(Object.entries(state.counters ?? {})),
    sets: new Map(Object.entries(state.sets ?? {}).map(([name, members]) => [name, new Set(members)])),
  }))
}

describe('chaos checkers', () => {
  it('pass a consistent history, and catch a lost acknowledged write at each write concern', () => {
    const script = new Script()
    script.op(0, { type: 'put', key: 'u/0/1', value: 'a', w: 'all' }, 'ok')
    script.op(0, { type: 'put', key: 'u/0/2', value: 'b', w: 'quorum' }, 'ok')
    script.op(1, { type: 'put', key: 'u/1/1', value: 'c', w: 1 }, 'ok')
    script.op(1, { type: 'put', key: 'u/1/2', value: 'd', w: 2 }, 'unknown')
    const good = checkRun(script.ops, script.faults, finals({ uniques: { 'u/0/1': 'a', 'u/0/2': 'b', 'u/1/1': 'c' } }))
    expect(good.violations).toEqual([])
    const bad = checkRun(script.ops, script.faults, finals({ uniques: { 'u/0/1': 'a', 'u/1/1': 'c' } }))
    expect(bad.loss['quorum']).toEqual({ acknowledged: 1, lost: 1, excused: 0 })
    expect(bad.violations.join('\n')).toMatch(/acknowledged write lost: u\/0\/2=b/)
    // A w=1 write lost after its node was killed is excused (and counted), not a violation.
    script.kill(1)
    const excused = checkRun(script.ops, script.faults, finals({ uniques: { 'u/0/1': 'a', 'u/0/2': 'b' } }))
    expect(excused.loss['1']).toEqual({ acknowledged: 1, lost: 0, excused: 1 })
    expect(excused.violations).toEqual([])
  })

  it('catch a failed write that landed, a value nobody wrote, and a lost write on a contended key', () => {
    const script = new Script()
    script.op(0, { type: 'put', key: 'u/0/1', value: 'a', w: 1 }, 'fail', { code: 'MESHKV_ERR_UNREACHABLE' })
    script.op(0, { type: 'put', key: 'c/0', value: 'x', w: 'all' }, 'ok')
    script.op(1, { type: 'put', key: 'c/0', value: 'y', w: 1 }, 'ok')
    // y was invoked after x came back, so y may have overwritten x: fine.
    expect(checkRun(script.ops, script.faults, finals({ contended: { 'c/0': ['y'] } })).violations).toEqual([])
    const landed = checkRun(
      script.ops,
      script.faults,
      finals({ uniques: { 'u/0/1': 'a' }, contended: { 'c/0': ['y'] } }),
    )
    expect(landed.violations.join('\n')).toMatch(/written by a put that failed/)
    const phantom = checkRun(script.ops, script.faults, finals({ contended: { 'c/0': ['y', 'z'] } }))
    expect(phantom.violations.join('\n')).toMatch(/which no put wrote/)
    // Only x left, y (acknowledged, invoked after x came back) gone: x cannot have seen y.
    const lost = checkRun(script.ops, script.faults, finals({ contended: { 'c/0': ['x'] } }))
    expect(lost.loss['1']?.lost).toBe(1)
    // But a put whose outcome is unknown may have been applied late (a frozen node), after y arrived.
    script.op(2, { type: 'put', key: 'c/0', value: 'late', w: 'all' }, 'unknown', { code: 'MESHKV_ERR_UNREACHABLE' })
    const ops = [...script.ops]
    const late = ops.pop() as OpRecord
    ops.splice(1, 0, { ...late, invokedMs: 1_001 })
    expect(checkRun(ops, script.faults, finals({ contended: { 'c/0': ['late'] } })).violations).toEqual([])
  })

  it('catch a counter above acknowledged + unknown, or below acknowledged', () => {
    const script = new Script()
    script.op(0, { type: 'incr', name: 'ctr/0', delta: 2, w: 1 }, 'ok')
    script.op(1, { type: 'incr', name: 'ctr/0', delta: 3, w: 'all' }, 'unknown')
    script.op(1, { type: 'incr', name: 'ctr/0', delta: 7, w: 'all' }, 'fail')
    for (const value of [2, 5])
      expect(checkRun(script.ops, script.faults, finals({ counters: { 'ctr/0': value } })).violations).toEqual([])
    for (const value of [1, 9, 12])
      expect(checkRun(script.ops, script.faults, finals({ counters: { 'ctr/0': value } })).violations).toHaveLength(3)
  })

  it('catch an acknowledged add removed by a remove that finished before it, and a member nobody added', () => {
    const script = new Script()
    script.op(0, { type: 'srem', name: 'set/0', member: 'm1', w: 1 }, 'ok')
    script.op(0, { type: 'sadd', name: 'set/0', member: 'm1', w: 1 }, 'ok')
    script.op(1, { type: 'sadd', name: 'set/0', member: 'm2', w: 1 }, 'ok')
    script.op(1, { type: 'srem', name: 'set/0', member: 'm2', w: 1 }, 'unknown')
    expect(checkRun(script.ops, script.faults, finals({ sets: { 'set/0': ['m1'] } })).violations).toEqual([])
    // m1's remove came back before the add was invoked: it cannot have observed the add.
    expect(checkRun(script.ops, script.faults, finals({ sets: { 'set/0': [] } })).violations.join('\n')).toMatch(
      /add of m1 is gone/,
    )
    expect(
      checkRun(script.ops, script.faults, finals({ sets: { 'set/0': ['m1', 'm3'] } })).violations.join('\n'),
    ).toMatch(/holds m3/)
  })

  it("catch a session read that misses the session's own acknowledged write", () => {
    const script = new Script()
    script.op(0, { type: 'put', key: 'u/0/1', value: 'a', w: 1 }, 'ok', { token: 't' })
    script.op(0, { type: 'get', key: 'u/0/1', token: 't' }, 'ok', { result: null, siblings: [] })
    const result = checkRun(script.ops, script.faults, finals({ uniques: { 'u/0/1': 'a' } }))
    expect(result.sessions).toEqual({ readsWithToken: 1, readsChecked: 1, violations: 1 })
    expect(result.violations.join('\n')).toMatch(/session read missed/)
  })
})
