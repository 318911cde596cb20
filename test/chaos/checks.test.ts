/**
 * The chaos checkers can fail: small hand-made histories and final states, each with one planted
 * fault (a lost acknowledged write, a failed write that landed, a counter counted twice, an add
 * removed by a remove that came before it, a session read that missed its own write), are each
 * caught; the same history without the fault passes.
 */
import { describe, expect, it } from 'vitest'
import type { CompletionEvent, HistoryEvent, Operation } from '../checkers/history.js'
import type { NodeValues, ValueCheckResult } from '../checkers/values.js'
import { checkValues } from '../checkers/values.js'

const URLS = ['http://n1', 'http://n2', 'http://n3']

/** A hand-made history in the shared format: each operation an invoke and its completion. */
class Script {
  readonly history: HistoryEvent[] = []
  #clock = 1_000
  #nextId = 1

  op(client: number, op: Operation, kind: CompletionEvent['kind'], extra: Partial<CompletionEvent> = {}): void {
    const id = this.#nextId++
    this.history.push({ kind: 'invoke', id, client, node: URLS[0] as string, atMs: (this.#clock += 10), op })
    this.history.push({ kind, id, atMs: (this.#clock += 10), servedBy: URLS[0] as string, ...extra })
  }

  kill(node: number): void {
    this.history.push({ kind: 'nemesis', fault: 'crash', lossy: false, nodes: [node], atMs: (this.#clock += 10) })
  }
}

function finals(state: {
  uniques?: Record<string, string>
  contended?: Record<string, string[]>
  counters?: Record<string, number>
  sets?: Record<string, string[]>
}): NodeValues[] {
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

function checkRun(history: readonly HistoryEvent[], nodes: NodeValues[]): ValueCheckResult {
  return checkValues({ history, finals: nodes, uniquePrefix: 'u/' })
}

function messages(result: ValueCheckResult): string {
  return result.violations.map((violation) => `[${violation.checker}] ${violation.message}`).join('\n')
}

describe('chaos checkers', () => {
  it('pass a consistent history, and catch a lost acknowledged write at each write concern', () => {
    const script = new Script()
    script.op(0, { type: 'put', key: 'u/0/1', value: 'a', w: 'all' }, 'ok')
    script.op(0, { type: 'put', key: 'u/0/2', value: 'b', w: 'quorum' }, 'ok')
    script.op(1, { type: 'put', key: 'u/1/1', value: 'c', w: 1 }, 'ok')
    script.op(1, { type: 'put', key: 'u/1/2', value: 'd', w: 2 }, 'unknown')
    const good = checkRun(script.history, finals({ uniques: { 'u/0/1': 'a', 'u/0/2': 'b', 'u/1/1': 'c' } }))
    expect(good.violations).toEqual([])
    const bad = checkRun(script.history, finals({ uniques: { 'u/0/1': 'a', 'u/1/1': 'c' } }))
    expect(bad.loss['quorum']).toEqual({ acknowledged: 1, lost: 1, excused: 0 })
    expect(messages(bad)).toMatch(/acknowledged write lost: u\/0\/2=b/)
    // A w=1 write lost after its node was killed is excused (and counted), not a violation.
    script.kill(1)
    const excused = checkRun(script.history, finals({ uniques: { 'u/0/1': 'a', 'u/0/2': 'b' } }))
    expect(excused.loss['1']).toEqual({ acknowledged: 1, lost: 0, excused: 1 })
    expect(excused.violations).toEqual([])
  })

  it('catch a failed write that landed, a value nobody wrote, and a lost write on a contended key', () => {
    const script = new Script()
    script.op(0, { type: 'put', key: 'u/0/1', value: 'a', w: 1 }, 'fail', { code: 'MESHKV_ERR_UNREACHABLE' })
    script.op(0, { type: 'put', key: 'c/0', value: 'x', w: 'all' }, 'ok')
    script.op(1, { type: 'put', key: 'c/0', value: 'y', w: 1 }, 'ok')
    // y was invoked after x came back, so y may have overwritten x: fine.
    expect(checkRun(script.history, finals({ contended: { 'c/0': ['y'] } })).violations).toEqual([])
    const landed = checkRun(script.history, finals({ uniques: { 'u/0/1': 'a' }, contended: { 'c/0': ['y'] } }))
    expect(messages(landed)).toMatch(/written by a put that failed/)
    const phantom = checkRun(script.history, finals({ contended: { 'c/0': ['y', 'z'] } }))
    expect(messages(phantom)).toMatch(/which no put wrote/)
    // Only x left, y (acknowledged, invoked after x came back) gone: x cannot have seen y.
    const lost = checkRun(script.history, finals({ contended: { 'c/0': ['x'] } }))
    expect(lost.loss['1']?.lost).toBe(1)
    // But a put whose outcome is unknown may have been applied late (a frozen node), after y arrived.
    script.op(2, { type: 'put', key: 'c/0', value: 'late', w: 'all' }, 'unknown', { code: 'MESHKV_ERR_UNREACHABLE' })
    // Invoked before x (its invoke moved back in time), never completed: it may have landed last.
    const late = script.history.find(
      (event) => event.kind === 'invoke' && event.op.type === 'put' && event.op.value === 'late',
    )
    if (late === undefined) throw new Error('the late put is missing')
    late.atMs = 1_001
    expect(checkRun(script.history, finals({ contended: { 'c/0': ['late'] } })).violations).toEqual([])
  })

  it('catch a counter above acknowledged + unknown, or below acknowledged', () => {
    const script = new Script()
    script.op(0, { type: 'incr', name: 'ctr/0', delta: 2, w: 1 }, 'ok')
    script.op(1, { type: 'incr', name: 'ctr/0', delta: 3, w: 'all' }, 'unknown')
    script.op(1, { type: 'incr', name: 'ctr/0', delta: 7, w: 'all' }, 'fail')
    for (const value of [2, 5])
      expect(checkRun(script.history, finals({ counters: { 'ctr/0': value } })).violations).toEqual([])
    for (const value of [1, 9, 12])
      expect(checkRun(script.history, finals({ counters: { 'ctr/0': value } })).violations).toHaveLength(3)
  })

  it('catch an acknowledged add removed by a remove that finished before it, and a member nobody added', () => {
    const script = new Script()
    script.op(0, { type: 'srem', name: 'set/0', member: 'm1', w: 1 }, 'ok')
    script.op(0, { type: 'sadd', name: 'set/0', member: 'm1', w: 1 }, 'ok')
    script.op(1, { type: 'sadd', name: 'set/0', member: 'm2', w: 1 }, 'ok')
    script.op(1, { type: 'srem', name: 'set/0', member: 'm2', w: 1 }, 'unknown')
    expect(checkRun(script.history, finals({ sets: { 'set/0': ['m1'] } })).violations).toEqual([])
    // m1's remove came back before the add was invoked: it cannot have observed the add.
    expect(messages(checkRun(script.history, finals({ sets: { 'set/0': [] } })))).toMatch(/add of m1 is gone/)
    expect(messages(checkRun(script.history, finals({ sets: { 'set/0': ['m1', 'm3'] } })))).toMatch(/holds m3/)
  })

  it("catch a session read that misses the session's own acknowledged write", () => {
    const script = new Script()
    script.op(0, { type: 'put', key: 'u/0/1', value: 'a', w: 1 }, 'ok', { token: 't' })
    script.op(0, { type: 'get', key: 'u/0/1', token: 't' }, 'ok', { result: null, siblings: [] })
    const result = checkRun(script.history, finals({ uniques: { 'u/0/1': 'a' } }))
    expect(result.sessions).toEqual({ readsWithToken: 1, readsChecked: 1, violations: 1 })
    expect(messages(result)).toMatch(/session read missed/)
  })
})
