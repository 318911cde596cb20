/**
 * The checkers on small hand-made histories: each passes what it must pass and names what it must
 * refuse (a checker that cannot fail proves nothing).
 */
import { describe, expect, it } from 'vitest'
import { encodeCausalToken } from '../../src/clock/index.js'
import type { NodeId } from '../../src/clock/index.js'
import type { CheckInput, CheckerName } from './checks.js'
import { checkAll, requiredFor } from './checks.js'
import type { ChangeRecord, CompletionEvent, FinalNodeState, HistoryEvent, Operation } from './history.js'
import { operations, parseHistory } from './history.js'
import { plainRead } from './oracle.js'

const A = 'aaaaaaaaaaaaaaaa'
const B = 'bbbbbbbbbbbbbbbb'

class Builder {
  readonly history: HistoryEvent[] = []
  readonly changes: ChangeRecord[] = []
  #id = 1
  #now = 0

  op(
    op: Operation,
    kind: CompletionEvent['kind'],
    fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {},
    node = 0,
  ): number {
    const id = this.#id++
    this.history.push({ kind: 'invoke', id, client: 0, node, atMs: this.#now++, op })
    this.history.push({ kind, id, atMs: this.#now++, ...fields })
    return id
  }

  change(record: ChangeRecord): void {
    this.changes.push(record)
  }

  crash(node: number, lossy: boolean): void {
    this.history.push({ kind: 'nemesis', atMs: this.#now++, fault: 'crash', nodes: [node], lossy })
  }
}

function final(
  partial: Partial<FinalNodeState> & { vc: Record<string, number> },
  node: number | string = 0,
): FinalNodeState {
  const kv = partial.kv ?? {}
  return { node, digest: 'd', kv, counters: partial.counters ?? {}, sets: partial.sets ?? {}, ...partial }
}

function checkers(input: CheckInput): CheckerName[] {
  return [...new Set(checkAll(input).map((violation) => violation.checker))].sort()
}

function input(builder: Builder, finals: FinalNodeState[], withChanges = true): CheckInput {
  return {
    history: builder.history,
    finals,
    members: 3,
    nodeIds: { '0': A, '1': B },
    ...(withChanges ? { changes: builder.changes } : {}),
  }
}

describe('registers: no lost acknowledged write', () => {
  function twoPuts(): Builder {
    const b = new Builder()
    b.op({ type: 'put', key: 'k', value: 'x', w: 1 }, 'ok', { dot: `${A}:1` })
    b.change({ dot: `${A}:1`, deps: {}, hlc: [10, 0], ops: [{ type: 'put', key: 'k', value: 'x', context: [] }] })
    b.op({ type: 'put', key: 'k', value: 'y', w: 1 }, 'ok', { dot: `${B}:1` }, 1)
    b.change({ dot: `${B}:1`, deps: {}, hlc: [11, 0], ops: [{ type: 'put', key: 'k', value: 'y', context: [] }] })
    return b
  }
  const both = {
    siblings: [
      { dot: `${A}:1`, hlc: [10, 0] as [number, number], value: 'x' },
      { dot: `${B}:1`, hlc: [11, 0] as [number, number], value: 'y' },
    ],
    read: 'y',
  }

  it('passes concurrent writes kept as siblings, with the LWW-highest read', () => {
    const b = twoPuts()
    expect(checkAll(input(b, [final({ vc: { [A]: 1, [B]: 1 }, kv: { k: both } })]))).toEqual([])
  })

  it('refuses a sibling dropped without a change that replaced it', () => {
    const b = twoPuts()
    const dropped = { siblings: [both.siblings[1] as never], read: 'y' }
    expect(checkers(input(b, [final({ vc: { [A]: 1, [B]: 1 }, kv: { k: dropped } })]))).toEqual(['registers', 'state'])
    // Without the logs, the history alone cannot tell: another write of the key may have replaced it.
    expect(checkers(input(b, [final({ vc: { [A]: 1, [B]: 1 }, kv: { k: dropped } })], false))).toEqual([])
  })

  it('passes a write replaced by a change whose context held its dot', () => {
    const b = twoPuts()
    b.op({ type: 'del', key: 'k', w: 1 }, 'ok', { dot: `${A}:2` })
    b.change({
      dot: `${A}:2`,
      deps: { [A]: 1, [B]: 1 },
      hlc: [12, 0],
      ops: [{ type: 'del', key: 'k', context: [`${A}:1`, `${B}:1`] }],
    })
    const deleted = { siblings: [{ dot: `${A}:2`, hlc: [12, 0] as [number, number], value: null }], read: null }
    expect(checkAll(input(b, [final({ vc: { [A]: 2, [B]: 1 }, kv: { k: deleted } })]))).toEqual([])
  })

  it('refuses an acknowledged write missing from the final clock, unless lossy crashes of enough holders explain it', () => {
    const b = twoPuts()
    const onlyB = { siblings: [both.siblings[1] as never], read: 'y' }
    expect(checkers(input(b, [final({ vc: { [B]: 1 }, kv: { k: onlyB } })]))).toContain('registers')
    b.crash(0, true)
    expect(checkers(input(b, [final({ vc: { [B]: 1 }, kv: { k: onlyB } })]))).toEqual([])
  })

  it('refuses a plain read that is not the max by (HLC, node id)', () => {
    const b = twoPuts()
    expect(checkers(input(b, [final({ vc: { [A]: 1, [B]: 1 }, kv: { k: { ...both, read: 'x' } } })]))).toEqual([
      'registers',
    ])
    expect(
      plainRead([
        { dot: `${A}:1`, hlc: [5, 1], value: 'a' },
        { dot: `${B}:1`, hlc: [5, 1], value: 'b' },
      ]),
    ).toBe('b')
  })

  it('refuses a failed write whose value is somewhere', () => {
    const b = new Builder()
    b.op({ type: 'put', key: 'k', value: 'ghost', w: 1 }, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
    b.change({ dot: `${A}:1`, deps: {}, hlc: [1, 0], ops: [{ type: 'put', key: 'k', value: 'ghost', context: [] }] })
    const kv = { k: { siblings: [{ dot: `${A}:1`, hlc: [1, 0] as [number, number], value: 'ghost' }], read: 'ghost' } }
    expect(checkers(input(b, [final({ vc: { [A]: 1 }, kv })]))).toEqual(['registers'])
  })
})

describe('counters', () => {
  function incrs(): Builder {
    const b = new Builder()
    b.op({ type: 'incr', name: 'c', delta: 5, w: 1 }, 'ok', { dot: `${A}:1` })
    b.op({ type: 'incr', name: 'c', delta: -2, w: 'quorum' }, 'unknown', { dot: `${A}:2` })
    b.op({ type: 'incr', name: 'c', delta: 3, w: 1 }, 'unknown')
    b.op({ type: 'incr', name: 'c', delta: 100, w: 1 }, 'fail')
    return b
  }
  it('passes the acknowledged sum plus any subset of the unknown ones', () => {
    for (const value of [5, 3, 8, 6])
      expect(
        checkAll(input(incrs(), [final({ vc: { [A]: 1 }, counters: { c: value } })], false)),
        `value ${value}`,
      ).toEqual([])
  })
  it('refuses anything else (a lost acknowledged increment, a failed one counted, one counted twice)', () => {
    for (const value of [0, 105, 10, 4])
      expect(
        checkers(input(incrs(), [final({ vc: { [A]: 1 }, counters: { c: value } })], false)),
        `value ${value}`,
      ).toEqual(['counters'])
  })
})

describe('sets: an acknowledged add leaves only through a remove that observed it', () => {
  function add(): Builder {
    const b = new Builder()
    b.op({ type: 'sadd', name: 's', member: 'm', w: 1 }, 'ok', { dot: `${A}:1` })
    b.change({ dot: `${A}:1`, deps: {}, hlc: [1, 0], ops: [{ type: 'sadd', name: 's', member: 'm', context: [] }] })
    return b
  }
  it('refuses an add gone without one', () => {
    expect(checkers(input(add(), [final({ vc: { [A]: 1 }, sets: {} })]))).toEqual(['sets', 'state'])
  })
  it('passes an add removed by a remove that saw it, and keeps an add concurrent with a remove', () => {
    const b = add()
    b.op({ type: 'srem', name: 's', member: 'm', w: 1 }, 'ok', { dot: `${B}:1`, observed: true }, 1)
    b.change({
      dot: `${B}:1`,
      deps: { [A]: 1 },
      hlc: [2, 0],
      ops: [{ type: 'srem', name: 's', member: 'm', context: [`${A}:1`] }],
    })
    expect(checkAll(input(b, [final({ vc: { [A]: 1, [B]: 1 }, sets: {} })]))).toEqual([])
    b.op({ type: 'sadd', name: 's', member: 'm', w: 1 }, 'ok', { dot: `${A}:2` })
    b.change({
      dot: `${A}:2`,
      deps: { [A]: 1 },
      hlc: [2, 0],
      ops: [{ type: 'sadd', name: 's', member: 'm', context: [`${A}:1`] }],
    })
    expect(checkAll(input(b, [final({ vc: { [A]: 2, [B]: 1 }, sets: { s: { m: [`${A}:2`] } } })]))).toEqual([])
    expect(checkers(input(b, [final({ vc: { [A]: 2, [B]: 1 }, sets: {} })]))).toEqual(['sets', 'state'])
  })
})

describe('sessions: a read with a causal token never misses what the token covers', () => {
  const token = encodeCausalToken({ [A as NodeId]: 1 })
  function written(): Builder {
    const b = new Builder()
    b.op({ type: 'put', key: 'k', value: 'x', w: 1 }, 'ok', { dot: `${A}:1`, token })
    b.change({ dot: `${A}:1`, deps: {}, hlc: [10, 0], ops: [{ type: 'put', key: 'k', value: 'x', context: [] }] })
    return b
  }
  const finals = [
    final({ vc: { [A]: 1 }, kv: { k: { siblings: [{ dot: `${A}:1`, hlc: [10, 0], value: 'x' }], read: 'x' } } }),
  ]

  it('passes a read at a state covering the token, answered from it', () => {
    const b = written()
    b.op({ type: 'get', key: 'k', token }, 'ok', { vc: { [A]: 1 }, result: 'x', siblingDots: [`${A}:1`] }, 1)
    expect(checkAll(input(b, finals))).toEqual([])
  })
  it('refuses a read at a state that misses the token', () => {
    const b = written()
    b.op({ type: 'get', key: 'k', token }, 'ok', { vc: {}, result: null, siblingDots: [] }, 1)
    expect(checkers(input(b, finals))).toEqual(['sessions'])
  })
  it("refuses an answer that is not its state's", () => {
    const b = written()
    b.op({ type: 'get', key: 'k', token }, 'ok', { vc: { [A]: 1 }, result: null, siblingDots: [] }, 1)
    b.op({ type: 'cget', name: 'c', token }, 'ok', { vc: { [A]: 1 }, result: 7 }, 1)
    b.op({ type: 'smembers', name: 's', token }, 'ok', { vc: { [A]: 1 }, result: ['m'] }, 1)
    const problems = checkAll(input(b, finals))
    expect(problems.map((p) => p.checker)).toEqual(['sessions', 'sessions', 'sessions'])
  })
})

describe('convergence, state and durability', () => {
  it('refuses nodes that differ after quiescence, naming the key', () => {
    const b = new Builder()
    const one = final({ vc: { [A]: 1 }, counters: { c: 1 } }, 0)
    const two = { ...final({ vc: { [A]: 1 }, counters: { c: 2 } }, 1), digest: 'other' }
    const problems = checkAll(input(b, [one, two], false))
    expect(problems.map((p) => p.checker)).toEqual(['convergence'])
    expect(problems[0]?.message).toContain('counter/c')
  })
  it('refuses one dot given to two different changes', () => {
    const b = new Builder()
    b.change({ dot: `${A}:1`, deps: {}, hlc: [1, 0], ops: [{ type: 'incr', name: 'c', delta: 1 }] })
    b.change({ dot: `${A}:1`, deps: {}, hlc: [2, 0], ops: [{ type: 'incr', name: 'c', delta: 2 }] })
    expect(checkers(input(b, [final({ vc: { [A]: 1 }, counters: { c: 1 } })]))).toEqual(['state'])
  })
  it('refuses a write acknowledged at w=k while fewer than k members held it durably', () => {
    const b = new Builder()
    b.op({ type: 'incr', name: 'c', delta: 1, w: 'all' }, 'ok', { dot: `${A}:1`, durableHolders: 2, required: 3 })
    b.change({ dot: `${A}:1`, deps: {}, hlc: [1, 0], ops: [{ type: 'incr', name: 'c', delta: 1 }] })
    expect(checkers(input(b, [final({ vc: { [A]: 1 }, counters: { c: 1 } })]))).toEqual(['durability'])
    expect(requiredFor('quorum', 5)).toBe(3)
  })
})

describe('the format', () => {
  it('pairs invokes with completions, an open one as unknown, and passes over unknown kinds', () => {
    const text = [
      JSON.stringify({
        kind: 'invoke',
        id: 1,
        client: 0,
        node: 'http://a',
        atMs: 1,
        op: { type: 'incr', name: 'c', delta: 1, w: 1 },
      }),
      JSON.stringify({ kind: 'fault', atMs: 2, action: 'kill', nodes: [1] }),
      JSON.stringify({
        kind: 'invoke',
        id: 2,
        client: 0,
        node: 'http://a',
        atMs: 3,
        op: { type: 'incr', name: 'c', delta: 1, w: 1 },
      }),
      JSON.stringify({ kind: 'ok', id: 2, atMs: 4, servedBy: 'http://a' }),
      '',
    ].join('\n')
    const history = parseHistory(text)
    expect(operations(history).map((record) => record.completion.kind)).toEqual(['unknown', 'ok'])
    expect(checkAll({ history, finals: [final({ vc: {}, counters: { c: 1 } })], members: 3 })).toEqual([])
    expect(
      checkAll({ history, finals: [final({ vc: {}, counters: { c: 3 } })], members: 3 }).map((p) => p.checker),
    ).toEqual(['counters'])
  })
})
