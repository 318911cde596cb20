/**
 * The on-disk layout's pure helpers: key encodings sort as the store relies on (numerically, by
 * bytes) and parse back, and the writes of a state and of a clock are exactly what the layout
 * table says.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Hlc, VectorClock } from '../../src/clock/index.js'
import { toNodeId } from '../../src/clock/index.js'
import type { RegisterState, Sibling } from '../../src/crdt/index.js'
import { emptyState } from '../../src/crdt/index.js'
import { compareKeys } from '../../src/storage/backend.js'
import {
  clockWrites,
  dotIndexKey,
  dotIndexStart,
  lsnKey,
  parseLsnKey,
  parseStateId,
  stateId,
  stateWrites,
} from '../../src/storage/layout.js'

const NODE = toNodeId('a1a1a1a1a1a1a1a1')
const OTHER = toNodeId('b2b2b2b2b2b2b2b2')
const HLC: Hlc = { wallMs: 1_700_000_000_000, logical: 0 }
const counting = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })

function sibling(seq: number, value: string | null): Sibling {
  return {
    dot: { node: NODE, seq },
    hlc: HLC,
    value: value === null ? null : new Uint8Array(Buffer.from(value)),
    contentType: value === null ? null : 'text/plain',
  }
}

describe('layout: key encodings', () => {
  it('log keys sort in LSN order and parse back', () => {
    fc.assert(
      fc.property(counting, counting, (a, b) => {
        expect(parseLsnKey(lsnKey(a))).toBe(a)
        expect(Math.sign(compareKeys(lsnKey(a), lsnKey(b)))).toBe(Math.sign(a - b))
      }),
      { numRuns: 1000 },
    )
  })

  it('refuses a log key that is no LSN', () => {
    expect(() => parseLsnKey('zz')).toThrow('meshkv invariant broken')
    expect(() => parseLsnKey(lsnKey(0))).toThrow('meshkv invariant broken')
  })

  it('dot index keys sort by origin, then seq, all after the origin start', () => {
    fc.assert(
      fc.property(counting, counting, (a, b) => {
        const keyA = dotIndexKey({ node: NODE, seq: a })
        expect(Math.sign(compareKeys(keyA, dotIndexKey({ node: NODE, seq: b })))).toBe(Math.sign(a - b))
        expect(compareKeys(dotIndexStart(NODE), keyA)).toBeLessThan(0)
        expect(compareKeys(keyA, dotIndexStart(OTHER))).toBeLessThan(0)
      }),
      { numRuns: 1000 },
    )
  })

  it('state ids parse back to their space and key, whatever the key holds', () => {
    fc.assert(
      fc.property(fc.constantFrom('kv', 'counter', 'set' as const), fc.string(), (space, key) => {
        expect(parseStateId(stateId(space, key))).toEqual({ space, key })
      }),
      { numRuns: 1000 },
    )
    expect(parseStateId(stateId('kv', 'a\0b'))).toEqual({ space: 'kv', key: 'a\0b' })
  })
})

describe('layout: writes', () => {
  it('deletes an empty state, and indexes a kv state only when it is all tombstones', () => {
    expect(stateWrites('kv', 'k', emptyState('kv'))).toEqual([{ type: 'del', sub: 'kv', key: 'k' }])
    expect(stateWrites('set', 's', emptyState('set'))).toEqual([{ type: 'del', sub: 'set', key: 's' }])
    const live: RegisterState = { siblings: [sibling(1, null), sibling(2, 'v')] }
    expect(stateWrites('kv', 'k', live).map((write) => [write.type, write.sub])).toEqual([['put', 'kv']])
    const dead: RegisterState = { siblings: [sibling(1, null), sibling(2, null)] }
    expect(stateWrites('kv', 'k', dead).map((write) => [write.type, write.sub, write.key])).toEqual([
      ['put', 'kv', 'k'],
      ['put', 'tombs', 'k'],
    ])
  })

  it('writes the clock entries that moved and no others', () => {
    const before = { [NODE]: 3, [OTHER]: 1 } as VectorClock
    const after = { [NODE]: 3, [OTHER]: 4 } as VectorClock
    const third = toNodeId('c3c3c3c3c3c3c3c3')
    const writes = clockWrites(before, { ...after, [third]: 1 } as VectorClock)
    expect(
      writes.map((write) => [write.sub, write.key, write.type === 'put' && Buffer.from(write.value).toString()]),
    ).toEqual([
      ['vc', OTHER, '4'],
      ['vc', third, '1'],
    ])
    expect(clockWrites(after, after)).toEqual([])
  })
})
