/**
 * The codec on raw bytes: round trips of every valid change and state, and hostile input —
 * truncations, garbage, wrongly shaped MessagePack, oversized frames, `__proto__` keys — which
 * must give MESHKV_ERR_DECODE or MESHKV_ERR_FRAME_TOO_LARGE, never another exception, never a
 * value that fails its guard.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { Dot, Hlc, NodeId, VectorClock } from '../../src/clock/index.js'
import { vcNormalize } from '../../src/clock/index.js'
import {
  KEY_BYTES_PROTOCOL_MAX,
  RECORD_BYTES_MAX_DEFAULT,
  STATE_BYTES_MAX,
  decodeChange,
  decodeChecked,
  decodePeerChange,
  decodeState,
  encode,
  encodeChange,
  encodeState,
  isBytes,
  isChange,
  isCounterState,
  isRegisterState,
  isDocState,
  isOp,
  isSetState,
} from '../../src/codec/index.js'
import type {
  AnyState,
  Change,
  CounterState,
  Op,
  RegisterState,
  SetState,
  Sibling,
  Space,
} from '../../src/crdt/index.js'
import { DOC_EMPTY, applyDoc, canonicalRegister, canonicalSet } from '../../src/crdt/index.js'
import { MeshError } from '../../src/errors.js'
import { historyArb, nodeIdArb, spaceOf } from '../helpers/replicas.js'
import { PROPERTY, meshErrorCode, withoutStacks } from '../helpers/runs.js'

// ---------------------------------------------------------------------------------------------
// Arbitraries: any valid change or state (the codec checks shape, not history).

const textArb = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.constantFrom('', '__proto__', 'constructor', 'a/b'),
)
const shortTextArb = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 2 }), fc.constant('__proto__'))
/** Keys, names and members: what a node could have written (non-empty, well-formed). */
const keyArb = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }),
  fc.constantFrom('__proto__', 'constructor', 'a/b'),
)
const shortKeyArb = fc.oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 2 }), fc.constant('__proto__'))
const seqArb = fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))
const countArb = fc.oneof(fc.nat(100), fc.maxSafeNat())
const dotArb: fc.Arbitrary<Dot> = fc.record({ node: nodeIdArb, seq: seqArb })
const dotsArb = fc.array(dotArb, { maxLength: 4 })
const hlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: countArb, logical: countArb })
const vcArb: fc.Arbitrary<VectorClock> = fc
  .array(fc.tuple(nodeIdArb, seqArb), { maxLength: 4 })
  .map((entries) => vcNormalize(entries))
const bytesArb = fc.uint8Array({ maxLength: 40 })

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    type: fc.constant('kv.put' as const),
    key: keyArb,
    value: bytesArb,
    contentType: textArb,
    context: dotsArb,
  }),
  fc.record({ type: fc.constant('kv.del' as const), key: keyArb, context: dotsArb }),
  fc.record({
    type: fc.constant('counter.add' as const),
    name: keyArb,
    delta: fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }).filter((d) => d !== 0),
  }),
  fc.record({
    type: fc.constantFrom('set.add' as const, 'set.remove' as const),
    name: keyArb,
    member: keyArb,
    context: dotsArb,
  }),
)

/** A Yjs update of a few short text inserts by one client. */
const yjsUpdateArb = (maxInserts: number): fc.Arbitrary<Uint8Array> =>
  fc
    .tuple(fc.integer({ min: 1, max: 1000 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: maxInserts }))
    .map(([client, texts]) => {
      const doc = new Y.Doc()
      doc.clientID = client
      for (const text of texts) doc.getText('t').insert(0, text)
      return Y.encodeStateAsUpdate(doc)
    })
const docArb = (maxInserts: number) =>
  fc
    .array(yjsUpdateArb(maxInserts), { maxLength: 2 })
    .map((updates) =>
      updates.reduce((state, update) => applyDoc(state, { type: 'doc.update', name: 'd', update }), DOC_EMPTY),
    )

const changeArb: fc.Arbitrary<Change> = fc.record({
  dot: dotArb,
  deps: vcArb,
  hlc: hlcArb,
  ops: fc.array(opArb, { minLength: 1, maxLength: 4 }),
})

/**
 * Compact changes of every op type, for the properties that decode every prefix: msgpackr spends
 * ~20 µs on each refused decode, so bytes × runs is what the run time is made of.
 */
const shortDotsArb = fc.array(dotArb, { maxLength: 2 })
const compactChangeArb: fc.Arbitrary<Change> = fc.record({
  dot: dotArb,
  deps: fc.array(fc.tuple(nodeIdArb, seqArb), { maxLength: 2 }).map((entries) => vcNormalize(entries)),
  hlc: hlcArb,
  ops: fc.array(
    fc.oneof(
      fc.record({
        type: fc.constant('kv.put' as const),
        key: shortKeyArb,
        value: fc.uint8Array({ maxLength: 6 }),
        contentType: shortTextArb,
        context: shortDotsArb,
      }),
      fc.record({ type: fc.constant('kv.del' as const), key: shortKeyArb, context: shortDotsArb }),
      fc.record({
        type: fc.constant('counter.add' as const),
        name: shortKeyArb,
        delta: fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }).filter((d) => d !== 0),
      }),
      fc.record({
        type: fc.constantFrom('set.add' as const, 'set.remove' as const),
        name: shortKeyArb,
        member: shortKeyArb,
        context: shortDotsArb,
      }),
      fc.record({ type: fc.constant('doc.update' as const), name: shortKeyArb, update: yjsUpdateArb(1) }),
    ),
    { minLength: 1, maxLength: 2 },
  ),
})

const siblingArb: fc.Arbitrary<Sibling> = fc.oneof(
  fc.record({ dot: dotArb, hlc: hlcArb, value: bytesArb, contentType: textArb }),
  fc.record({ dot: dotArb, hlc: hlcArb, value: fc.constant(null), contentType: fc.constant(null) }),
)
const registerArb: fc.Arbitrary<RegisterState> = fc.array(siblingArb, { maxLength: 4 }).map(canonicalRegister)
const partArb = fc
  .array(fc.tuple(nodeIdArb, seqArb), { maxLength: 4 })
  .map((entries) => Object.fromEntries(entries) as Record<NodeId, number>)
const counterArb: fc.Arbitrary<CounterState> = fc.record({ p: partArb, n: partArb })
const setArb: fc.Arbitrary<SetState> = fc
  .uniqueArray(fc.record({ member: textArb, dots: fc.array(dotArb, { minLength: 1, maxLength: 3 }) }), {
    selector: (e) => e.member,
    maxLength: 4,
  })
  .map(canonicalSet)
const stateArb: fc.Arbitrary<{ space: Space; state: AnyState }> = fc.oneof(
  docArb(3).map((state) => ({ space: 'doc' as const, state })),
  registerArb.map((state) => ({ space: 'kv' as const, state })),
  counterArb.map((state) => ({ space: 'counter' as const, state })),
  setArb.map((state) => ({ space: 'set' as const, state })),
)
/** Compact states of every space (two siblings, parts or entries at most), as for compact changes. */
const compactStateArb: fc.Arbitrary<{ space: Space; state: AnyState }> = fc.oneof(
  docArb(1).map((state) => ({ space: 'doc' as const, state })),
  fc
    .array(
      fc.oneof(
        fc.record({ dot: dotArb, hlc: hlcArb, value: fc.uint8Array({ maxLength: 6 }), contentType: shortTextArb }),
        fc.record({ dot: dotArb, hlc: hlcArb, value: fc.constant(null), contentType: fc.constant(null) }),
      ),
      { maxLength: 2 },
    )
    .map((siblings) => ({ space: 'kv' as const, state: canonicalRegister(siblings) })),
  fc
    .record({
      p: fc.array(fc.tuple(nodeIdArb, seqArb), { maxLength: 2 }),
      n: fc.array(fc.tuple(nodeIdArb, seqArb), { maxLength: 2 }),
    })
    .map(({ p, n }) => ({
      space: 'counter' as const,
      state: { p: Object.fromEntries(p), n: Object.fromEntries(n) } as CounterState,
    })),
  fc
    .uniqueArray(fc.record({ member: shortTextArb, dots: fc.array(dotArb, { minLength: 1, maxLength: 2 }) }), {
      selector: (e) => e.member,
      maxLength: 2,
    })
    .map((entries) => ({ space: 'set' as const, state: canonicalSet(entries) })),
)

// ---------------------------------------------------------------------------------------------
// Helpers.

/** A deep copy with every byte array (Buffer or not) as a plain Uint8Array, for comparing bytes. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return new Uint8Array(value)
  if (Array.isArray(value)) return value.map(plain)
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, plain(inner)]))
  }
  return value
}

const GUARDS = { kv: isRegisterState, counter: isCounterState, set: isSetState, doc: isDocState } as const

/**
 * Decoding either returns a value that passes the guard, or throws a MeshError with one of the
 * decode codes. Anything else fails, naming what happened.
 */
function expectDecodeOutcome(run: () => unknown, guard: (value: unknown) => boolean): void {
  // Plain checks rather than expect(): this runs for every prefix of every case.
  let value: unknown
  try {
    value = run()
  } catch (error) {
    if (
      error instanceof MeshError &&
      (error.code === 'MESHKV_ERR_DECODE' || error.code === 'MESHKV_ERR_FRAME_TOO_LARGE')
    )
      return
    throw new Error(
      `decode threw ${error instanceof MeshError ? error.code : String(error)}, not MESHKV_ERR_DECODE or MESHKV_ERR_FRAME_TOO_LARGE`,
      { cause: error },
    )
  }
  if (!guard(value)) throw new Error(`decode returned a value that fails its guard: ${JSON.stringify(value)}`)
}

function expectNoPollution(): void {
  const probe: Record<string, unknown> = {}
  expect(probe['polluted']).toBeUndefined()
  expect(Object.prototype).not.toHaveProperty('polluted')
  expect(Object.keys(Object.prototype)).toEqual([])
}

function concat(...parts: readonly (Uint8Array | readonly number[])[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => [...part]))
}

// ---------------------------------------------------------------------------------------------

describe('round trips', () => {
  it('decodeChange(encodeChange(c)) equals c for any valid change, byte values as Uint8Array', () => {
    fc.assert(
      fc.property(changeArb, (change) => {
        const decoded = decodeChange(encodeChange(change))
        expect(plain(decoded)).toStrictEqual(plain(change))
        for (const op of decoded.ops) if (op.type === 'kv.put') expect(isBytes(op.value)).toBe(true)
      }),
      PROPERTY,
    )
  })

  it('the compact format (codec/change.ts) reads back through the peer decoder too, and format-1 log entries still read', () => {
    fc.assert(
      fc.property(changeArb, (change) => {
        const bytes = encodeChange(change)
        expect(plain(decodePeerChange(bytes, RECORD_BYTES_MAX_DEFAULT))).toStrictEqual(plain(change))
        // A clock as nodes make it (normalized: sorted by id) decodes with its keys in the same
        // order, the origin's own entry (left out on the wire) included: the simulator's oracle
        // compares changes as JSON, and caught a decoder that put that entry last.
        const entries = Object.entries(change.deps).filter(([node]) => node !== change.dot.node) as [NodeId, number][]
        const normal = { ...change, deps: vcNormalize([...entries, [change.dot.node, change.dot.seq - 1]]) }
        expect(JSON.stringify(decodeChange(Uint8Array.from(encodeChange(normal))).deps)).toBe(
          JSON.stringify(normal.deps),
        )
        // What an older meshkv wrote to its log (a map with field names) still reads from the log,
        // and its bytes are not kept: it goes to peers in the compact format.
        const formatOne = encode(change)
        const fromOldLog = decodeChange(formatOne)
        expect(plain(fromOldLog)).toStrictEqual(plain(change))
        expect(Buffer.from(encodeChange(fromOldLog)).equals(Buffer.from(bytes))).toBe(true)
        expect(meshErrorCode(() => decodePeerChange(formatOne, RECORD_BYTES_MAX_DEFAULT))).toBe('MESHKV_ERR_DECODE')
      }),
      PROPERTY,
    )
  })

  it('a change is encoded once: the same object gives the same bytes, a decoded one the bytes it came from', () => {
    fc.assert(
      fc.property(changeArb, (change) => {
        const bytes = encodeChange(change)
        expect(encodeChange(change)).toBe(bytes)
        const copy = Uint8Array.from(bytes)
        expect(encodeChange(decodeChange(copy))).toBe(copy)
      }),
      PROPERTY,
    )
  })

  it('decodeState(encodeState(s)) equals s for any valid state of its space', () => {
    fc.assert(
      fc.property(stateArb, ({ space, state }) => {
        const decoded = decodeState(space, encodeState(state))
        expect(plain(decoded)).toStrictEqual(plain(state))
        expect(GUARDS[space](decoded)).toBe(true)
      }),
      PROPERTY,
    )
  })

  it('round trips every change and key state of replication histories', () => {
    fc.assert(
      fc.property(historyArb({ maxSteps: 20 }), (history) => {
        for (const change of history.changes) {
          expect(isChange(change)).toBe(true)
          expect(plain(decodeChange(encodeChange(change)))).toStrictEqual(plain(change))
        }
        for (const replica of history.replicas) {
          for (const [key, state] of replica.states) {
            const space = spaceOf(key)
            expect(plain(decodeState(space, encodeState(state)))).toStrictEqual(plain(state))
          }
        }
      }),
      PROPERTY,
    )
  })

  it('decodes a record whatever was encoded since (decoding reads no packer state)', () => {
    fc.assert(
      fc.property(changeArb, fc.array(changeArb, { minLength: 1, maxLength: 3 }), (first, later) => {
        const bytes = encodeChange(first)
        for (const other of later) encodeChange(other)
        expect(plain(decodeChange(bytes))).toStrictEqual(plain(first))
      }),
      PROPERTY,
    )
  })
})

describe('hostile bytes', () => {
  it('refuses a change whose key, name or member no node could have written: empty, ill-formed, over the protocol bound', () => {
    const base = { dot: { node: '00000000000000aa' as NodeId, seq: 1 }, deps: {}, hlc: { wallMs: 1, logical: 0 } }
    const bad: Op[] = [
      { type: 'kv.put', key: '', value: new Uint8Array([1]), contentType: 'x', context: [] },
      { type: 'kv.del', key: 'a\uD800b', context: [] },
      { type: 'counter.add', name: '', delta: 1 },
      { type: 'set.add', name: 's', member: '', context: [] },
      {
        type: 'kv.put',
        key: 'k'.repeat(KEY_BYTES_PROTOCOL_MAX + 1),
        value: new Uint8Array([1]),
        contentType: 'x',
        context: [],
      },
    ]
    for (const op of bad) {
      expect(isChange({ ...base, ops: [op] })).toBe(false)
      // MessagePack cannot carry a lone surrogate at all (it arrives as U+FFFD, well-formed).
      if (op.type === 'kv.del') continue
      expect(meshErrorCode(() => decodeChange(encode({ ...base, ops: [op] })))).toBe('MESHKV_ERR_DECODE')
    }
    expect(
      isChange({
        ...base,
        ops: [
          {
            type: 'kv.put',
            key: 'k'.repeat(KEY_BYTES_PROTOCOL_MAX),
            value: new Uint8Array([1]),
            contentType: 'x',
            context: [],
          },
        ],
      }),
    ).toBe(true)
  })

  it('refuses deps that name a node twice (the origin too, given or marked absent); takes each origin position', () => {
    const [a, b, c] = ['00000000000000a1', '00000000000000b2', '00000000000000c3'].map((id) => Buffer.from(id, 'hex'))
    const record = (deps: unknown[]): Uint8Array =>
      encode([2, b, 3, 1_700_000_000_000, 0, deps, [[0, 'k', Uint8Array.of(1), 0, []]]])
    for (const deps of [
      [a, 1, a, 2],
      [a, 1, c, 1, a, 1],
      [b, 0, b, 0],
      [b, 1, b, 0],
      [a, 1, b, 0, b, 2],
    ])
      expect(meshErrorCode(() => decodePeerChange(record(deps), RECORD_BYTES_MAX_DEFAULT))).toBe('MESHKV_ERR_DECODE')
    // The origin (b, seq 3) left out: its entry seq - 1 goes where the order of ids has it.
    const order = (deps: unknown[]): string =>
      JSON.stringify(decodePeerChange(record(deps), RECORD_BYTES_MAX_DEFAULT).deps)
    expect(order([a, 1, c, 1])).toBe('{"00000000000000a1":1,"00000000000000b2":2,"00000000000000c3":1}')
    expect(order([c, 1])).toBe('{"00000000000000b2":2,"00000000000000c3":1}')
    expect(order([a, 1])).toBe('{"00000000000000a1":1,"00000000000000b2":2}')
    expect(order([a, 1, c, 1, b, 0])).toBe('{"00000000000000a1":1,"00000000000000c3":1}')
    expect(order([c, 1, b, 1])).toBe('{"00000000000000c3":1,"00000000000000b2":1}')
  })

  it('every truncation of an encoded change is refused with MESHKV_ERR_DECODE (or is itself a valid change)', () => {
    fc.assert(
      fc.property(compactChangeArb, (change) => {
        const bytes = encodeChange(change)
        withoutStacks(() => {
          for (let length = 0; length < bytes.length; length++)
            expectDecodeOutcome(() => decodeChange(bytes.subarray(0, length)), isChange)
        })
      }),
      PROPERTY,
    )
  })

  it('every truncation of an encoded state is refused (or is itself a valid state)', () => {
    fc.assert(
      fc.property(compactStateArb, ({ space, state }) => {
        const bytes = encodeState(state)
        withoutStacks(() => {
          for (let length = 0; length < bytes.length; length++)
            expectDecodeOutcome(() => decodeState(space, bytes.subarray(0, length)), GUARDS[space])
        })
      }),
      PROPERTY,
    )
  })

  it('random garbage decodes to a guarded value or MESHKV_ERR_DECODE, and pollutes nothing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expectDecodeOutcome(() => decodeChange(bytes), isChange)
        for (const space of ['kv', 'counter', 'set'] as const)
          expectDecodeOutcome(() => decodeState(space, bytes), GUARDS[space])
        expectNoPollution()
      }),
      PROPERTY,
    )
  })

  it('valid encodings with bytes overwritten, inserted or appended never decode to a half-built object', () => {
    const editArb = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert')), {
      minLength: 1,
      maxLength: 4,
    })
    fc.assert(
      fc.property(changeArb, editArb, (change, edits) => {
        const bytes = [...encodeChange(change)]
        for (const [at, byte, how] of edits) {
          const position = at % (bytes.length + 1)
          if (how === 'set' && position < bytes.length) bytes[position] = byte
          else bytes.splice(position, 0, byte)
        }
        expectDecodeOutcome(() => decodeChange(Uint8Array.from(bytes)), isChange)
        expectNoPollution()
      }),
      PROPERTY,
    )
  })

  it('trailing bytes after one record are refused', () => {
    fc.assert(
      fc.property(changeArb, fc.uint8Array({ minLength: 1, maxLength: 8 }), (change, extra) => {
        const bytes = encodeChange(change)
        expect(meshErrorCode(() => decodeChange(concat(bytes, extra)))).toBe('MESHKV_ERR_DECODE')
        expect(meshErrorCode(() => decodeChange(concat(bytes, bytes)))).toBe('MESHKV_ERR_DECODE')
      }),
      PROPERTY,
    )
  })

  it('wrongly shaped but valid MessagePack gives MESHKV_ERR_DECODE', () => {
    const good: Change = {
      dot: { node: '00000000000000aa' as NodeId, seq: 1 },
      deps: {},
      hlc: { wallMs: 1, logical: 0 },
      ops: [{ type: 'counter.add', name: 'c', delta: 1 }],
    }
    expect(decodeChange(encode(good))).toEqual(good)
    const badChanges: unknown[] = [
      { dot: 5 },
      null,
      [],
      'change',
      42,
      { ...good, ops: [] },
      { ...good, ops: [{ type: 'counter.add', name: 'c', delta: 0 }] },
      { ...good, ops: [{ type: 'counter.add', name: 'c', delta: 1.5 }] },
      { ...good, ops: [{ type: 'kv.put', key: 'k', value: 'not bytes', contentType: 'x', context: [] }] },
      { ...good, ops: [{ type: 'kv.del', key: 'k' }] },
      { ...good, ops: [{ type: 'nope' }] },
      { ...good, dot: { node: 'zz', seq: 1 } },
      { ...good, dot: { node: '00000000000000aa', seq: 0 } },
      { ...good, deps: { '00000000000000aa': 0 } },
      { ...good, deps: [] },
      { ...good, hlc: { wallMs: -1, logical: 0 } },
      { ...good, hlc: undefined },
    ]
    for (const value of badChanges)
      expect(
        meshErrorCode(() => decodeChange(encode(value))),
        JSON.stringify(value),
      ).toBe('MESHKV_ERR_DECODE')
    const dot = { node: '00000000000000aa', seq: 1 }
    const hlc = { wallMs: 1, logical: 0 }
    const badStates: [Space, unknown][] = [
      ['kv', { siblings: [{ dot, hlc, value: null, contentType: 'text/plain' }] }],
      ['kv', { siblings: [{ dot, hlc, value: new Uint8Array(1), contentType: null }] }],
      ['kv', { siblings: {} }],
      ['kv', good],
      ['counter', { p: { '00000000000000aa': 0 }, n: {} }],
      ['counter', { p: { '00000000000000aa': -1 }, n: {} }],
      ['counter', { p: {} }],
      ['counter', { p: [], n: {} }],
      ['set', { entries: [{ member: 'm', dots: [] }] }],
      ['set', { entries: [{ member: 5, dots: [dot] }] }],
      ['set', { entries: {} }],
    ]
    for (const [space, value] of badStates)
      expect(
        meshErrorCode(() => decodeState(space, encode(value))),
        JSON.stringify(value),
      ).toBe('MESHKV_ERR_DECODE')
    // A state of one space is not a state of another.
    expect(meshErrorCode(() => decodeState('set', encodeState({ p: {}, n: {} })))).toBe('MESHKV_ERR_DECODE')
  })

  it('input that is not bytes gives MESHKV_ERR_DECODE', () => {
    for (const value of ['bytes', null, undefined, 7, [1, 2], new ArrayBuffer(4), { length: 1 }]) {
      expect(meshErrorCode(() => decodeChange(value as unknown as Uint8Array))).toBe('MESHKV_ERR_DECODE')
    }
  })

  it('deeply nested input gives MESHKV_ERR_DECODE, not a stack overflow escaping', () => {
    const depth = 200_000
    const nested = new Uint8Array(depth + 1).fill(0x91)
    nested[depth] = 0xc0
    expect(meshErrorCode(() => decodeChange(nested))).toBe('MESHKV_ERR_DECODE')
  })
})

describe('size limits', () => {
  it('oversized input gives MESHKV_ERR_FRAME_TOO_LARGE before it is parsed', () => {
    expect(meshErrorCode(() => decodeChange(new Uint8Array(RECORD_BYTES_MAX_DEFAULT + 1)))).toBe(
      'MESHKV_ERR_FRAME_TOO_LARGE',
    )
    const oversized = new Uint8Array(STATE_BYTES_MAX + 1)
    for (const space of ['kv', 'counter', 'set'] as const) {
      expect(meshErrorCode(() => decodeState(space, oversized))).toBe('MESHKV_ERR_FRAME_TOO_LARGE')
    }
  })

  it('a record passes a limit of its own size and fails one byte below, encoding and decoding', () => {
    fc.assert(
      fc.property(changeArb, fc.nat(64), (change, slack) => {
        const bytes = encodeChange(change)
        expect(plain(decodeChange(bytes, bytes.length))).toStrictEqual(plain(change))
        expect([...encodeChange(change, bytes.length + slack)]).toEqual([...bytes])
        expect(meshErrorCode(() => decodeChange(bytes, bytes.length - 1))).toBe('MESHKV_ERR_FRAME_TOO_LARGE')
        expect(meshErrorCode(() => encodeChange(change, bytes.length - 1))).toBe('MESHKV_ERR_FRAME_TOO_LARGE')
      }),
      PROPERTY,
    )
  })

  it('a state with a value over the limit is refused by encodeState with MESHKV_ERR_FRAME_TOO_LARGE', () => {
    const state: RegisterState = {
      siblings: [
        {
          dot: { node: '00000000000000aa' as NodeId, seq: 1 },
          hlc: { wallMs: 1, logical: 0 },
          value: new Uint8Array(2048),
          contentType: 'x',
        },
      ],
    }
    expect(meshErrorCode(() => encodeState(state, 1024))).toBe('MESHKV_ERR_FRAME_TOO_LARGE')
  })
})

describe('__proto__ keys', () => {
  // fixmap(1) { "__proto__": fixmap(1) { "polluted": true } }, written by hand.
  const key = (text: string): number[] => [0xa0 | text.length, ...Buffer.from(text)]
  const protoMap = Uint8Array.from([0x81, ...key('__proto__'), 0x81, ...key('polluted'), 0xc3])

  it('does not pollute Object.prototype, nor give the decoded object another prototype', () => {
    const decoded = decodeChecked(
      protoMap,
      (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null,
      'probe',
    )
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype)
    expect(decoded['polluted']).toBeUndefined()
    expect(Object.hasOwn(decoded, '__proto__')).toBe(false)
    expectNoPollution()
    expect(meshErrorCode(() => decodeChange(protoMap))).toBe('MESHKV_ERR_DECODE')
    expectNoPollution()
  })

  it('is refused inside a change or a state where only node ids are keys', () => {
    const good = {
      dot: { node: '00000000000000aa', seq: 1 },
      hlc: { wallMs: 1, logical: 0 },
      ops: [{ type: 'counter.add', name: 'c', delta: 1 }],
    }
    const withProtoDeps = JSON.parse(`{"deps": {"__proto__": {"00000000000000aa": 1}}}`) as Record<string, unknown>
    const change: Record<string, unknown> = { ...good, ...withProtoDeps }
    expect(Object.hasOwn(change['deps'] as object, '__proto__')).toBe(true)
    expect(meshErrorCode(() => decodeChange(encode(change)))).toBe('MESHKV_ERR_DECODE')
    const counter = JSON.parse(`{"p": {"__proto__": {"00000000000000aa": 5}}, "n": {}}`) as unknown
    expect(meshErrorCode(() => decodeState('counter', encode(counter)))).toBe('MESHKV_ERR_DECODE')
    expectNoPollution()
  })

  it('keeps __proto__ as an ordinary string where strings are data (keys, members)', () => {
    const state = canonicalSet([{ member: '__proto__', dots: [{ node: '00000000000000aa' as NodeId, seq: 1 }] }])
    expect(decodeState('set', encodeState(state))).toEqual(state)
    expectNoPollution()
  })
})

describe('document ops and states from a peer', () => {
  it('a doc.update op must carry an update a Y.Doc loads; a state must decode as one', () => {
    const good = Uint8Array.of(1, 1, 1, 0, 4, 1, 1, 116, 2, 104, 105, 0) // inserts "hi" into text t
    const damaged = Uint8Array.of(1, 1, 1, 0, 4, 0, 1, 116, 2, 104, 105, 0) // its parent field broken
    expect(isOp({ type: 'doc.update', name: 'd', update: good })).toBe(true)
    expect(isOp({ type: 'doc.update', name: 'd', update: damaged })).toBe(false)
    expect(isOp({ type: 'doc.update', name: 'd', update: Uint8Array.of(7, 7) })).toBe(false)
    expect(isDocState({ update: good, base: 12 })).toBe(true)
    expect(isDocState({ update: Uint8Array.of(9, 9, 9), base: 3 })).toBe(false)
    expect(isDocState({ update: good })).toBe(false)
  })
})
