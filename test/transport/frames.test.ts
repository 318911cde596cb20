/**
 * Peer frames are plain data: what only a MessagePack extension can make (BigInt, undefined,
 * Date, Set, RegExp, Error, typed arrays) is a MESHKV_ERR_DECODE, never an object in a change.
 */
import { describe, expect, it } from 'vitest'
import { isPlainData } from '../../src/codec/index.js'
import { encode, encodeChange } from '../../src/codec/index.js'
import {
  AWARENESS_BYTES_MAX,
  COMPACT_ACK,
  COMPACT_CHANGES,
  PROTOCOL_VERSION,
  decodeFrame,
  encodeFrame,
} from '../../src/codec/peer.js'
import { isMeshError } from '../../src/errors.js'
import { changeFrom, exoticFrames, freshNodeId, withRaw } from './helpers.js'

function decodeError(bytes: Uint8Array): string {
  try {
    decodeFrame(bytes)
  } catch (error) {
    return isMeshError(error) ? error.code : 'not a MeshError'
  }
  return 'decoded'
}

describe('peer frames with MessagePack extensions', () => {
  it('are refused with MESHKV_ERR_DECODE, each of them', () => {
    const frames = exoticFrames(freshNodeId())
    expect(Object.keys(frames).length).toBeGreaterThanOrEqual(8)
    for (const [what, bytes] of Object.entries(frames)) expect(decodeError(bytes), what).toBe('MESHKV_ERR_DECODE')
  })

  it('while the same frames with a plain value decode', () => {
    const node = freshNodeId()
    expect(decodeFrame(encodeFrame({ type: 'ack', vc: {}, extra: 5 } as never))).toMatchObject({ type: 'ack' })
    const frame = { type: 'changes', changes: [changeFrom(node)] } as const
    // Binary comes back as a Buffer: compare what the decoded frame encodes to.
    expect(Buffer.from(encodeFrame(decodeFrame(encodeFrame(frame))))).toEqual(Buffer.from(encodeFrame(frame)))
  })

  it('a 64-bit integer decodes as a number (never a BigInt), and the guards refuse an unsafe one', () => {
    const node = freshNodeId()
    const uint64 = (value: bigint): Uint8Array => {
      const bytes = Buffer.alloc(9)
      bytes[0] = 0xcf
      bytes.writeBigUInt64BE(value, 1)
      return bytes
    }
    const ack = { type: 'ack', vc: { [node]: '\u0001slot' } }
    expect(decodeFrame(withRaw(ack, uint64(5n)))).toEqual({ type: 'ack', vc: { [node]: 5 } })
    expect(decodeError(withRaw(ack, uint64(2n ** 63n)))).toBe('MESHKV_ERR_DECODE')
  })
})

describe('isPlainData', () => {
  it('takes plain values and refuses exotic ones, however deep', () => {
    expect(isPlainData({ a: [1, 'x', null, true, Buffer.from([1])], b: Object.create(null) as object })).toBe(true)
    for (const value of [undefined, 1n, new Date(0), new Set(), new Map(), /a/u, new Error('x'), new Uint8Array(1)]) {
      expect(isPlainData({ deep: [[{ value }]] }), String(value)).toBe(false)
    }
    let nested: unknown = 1n
    for (let depth = 0; depth < 100_000; depth += 1) nested = [nested]
    expect(isPlainData(nested)).toBe(false)
  })
})

describe('awareness frames (protocol version 5)', () => {
  it('decode up to AWARENESS_BYTES_MAX of update and a text room, and are refused past it or without a room', () => {
    const fits = { type: 'awareness', room: 'pad', update: new Uint8Array(AWARENESS_BYTES_MAX) } as const
    expect(decodeFrame(encodeFrame(fits))).toMatchObject({ type: 'awareness', room: 'pad' })
    const over = { ...fits, update: new Uint8Array(AWARENESS_BYTES_MAX + 1) }
    expect(decodeError(encodeFrame(over))).toBe('MESHKV_ERR_DECODE')
    expect(decodeError(encodeFrame({ ...fits, room: 5 } as never))).toBe('MESHKV_ERR_DECODE')
    expect(decodeError(encodeFrame({ ...fits, update: 'text' } as never))).toBe('MESHKV_ERR_DECODE')
  })
})

describe('positional frames (protocol version 7)', () => {
  const raw = (node: string): Buffer => Buffer.from(node, 'hex')

  it('changes and ack are arrays: a change costs 4 bytes of frame, an ack of one entry 15', () => {
    expect(PROTOCOL_VERSION).toBe(7)
    const node = freshNodeId()
    const change = changeFrom(node, 100)
    const bytes = encodeChange(change)
    const frame = encodeFrame({ type: 'changes', changes: [change] })
    // fixarray, the code, the flag, then the change's bytes as a bin8 (2 bytes of header).
    expect(Buffer.from(frame)).toEqual(
      Buffer.concat([Buffer.from([0x93, COMPACT_CHANGES, 0, 0xc4, bytes.length]), bytes]),
    )
    // Binary comes back as a Buffer: compare what the decoded frame encodes to.
    const decoded = decodeFrame(frame)
    expect(decoded).toMatchObject({ type: 'changes', ack: false })
    expect(Buffer.from(encodeFrame(decoded))).toEqual(Buffer.from(frame))
    expect(decodeFrame(encodeFrame({ type: 'changes', changes: [change], ack: true }))).toMatchObject({ ack: true })

    const ack = encodeFrame({ type: 'ack', vc: { [node]: 300 } as never })
    expect(Buffer.from(ack)).toEqual(
      Buffer.concat([Buffer.from([0x93, COMPACT_ACK, 0xc4, 8]), raw(node), Buffer.from([0xcd, 1, 44])]),
    )
    expect(decodeFrame(ack)).toEqual({ type: 'ack', vc: { [node]: 300 } })
    expect(decodeFrame(encodeFrame({ type: 'ack', vc: {} }))).toEqual({ type: 'ack', vc: {} })
  })

  it('a version 6 link still carries them as maps, without the ack flag; each version refuses the other shape', () => {
    const node = freshNodeId()
    const change = changeFrom(node)
    const asMap = encodeFrame({ type: 'changes', changes: [change], ack: true }, 6)
    const decoded = decodeFrame(asMap, 6)
    expect(Object.keys(decoded)).toEqual(['type', 'changes'])
    expect(Buffer.from(encodeFrame(decoded, 6))).toEqual(Buffer.from(asMap))
    const ackMap = encodeFrame({ type: 'ack', vc: { [node]: 2 } as never }, 6)
    expect(decodeFrame(ackMap, 6)).toEqual({ type: 'ack', vc: { [node]: 2 } })
    for (const bytes of [asMap, ackMap]) expect(decodeError(bytes)).toBe('MESHKV_ERR_DECODE')
    for (const bytes of [encodeFrame({ type: 'changes', changes: [change] }), encodeFrame({ type: 'ack', vc: {} })])
      expect(() => decodeFrame(bytes, 6)).toThrow(/wrong shape/u)
    // Version 5 takes the flag off too (its changes are maps).
    expect(Object.keys(decodeFrame(encodeFrame({ type: 'changes', changes: [change], ack: true }, 5), 5))).toEqual([
      'type',
      'changes',
    ])
  })

  it('refuses positional frames of the wrong shape, each of them', () => {
    const node = freshNodeId()
    const other = freshNodeId()
    const change = encodeChange(changeFrom(node))
    const wrong: Record<string, unknown[]> = {
      'no changes': [COMPACT_CHANGES, 0],
      'a flag that is not 0 or 1': [COMPACT_CHANGES, 2, change],
      'a boolean flag': [COMPACT_CHANGES, true, change],
      'a change that is not bytes': [COMPACT_CHANGES, 0, 'change'],
      'a change that does not decode': [COMPACT_CHANGES, 0, Buffer.from([0x93, 1, 2, 3])],
      'an unknown code': [3, 0, change],
      'an ack id of 7 bytes': [COMPACT_ACK, raw(node).subarray(0, 7), 1],
      'an ack id as hex': [COMPACT_ACK, node, 1],
      'an ack without its seq': [COMPACT_ACK, raw(node)],
      'an ack seq of 0': [COMPACT_ACK, raw(node), 0],
      'an ack seq that is not an integer': [COMPACT_ACK, raw(node), 1.5],
      'an ack naming one node twice': [COMPACT_ACK, raw(node), 1, raw(other), 1, raw(node), 2],
      'an empty array': [],
    }
    for (const [what, value] of Object.entries(wrong))
      expect(decodeError(encode(value, Infinity)), what).toBe('MESHKV_ERR_DECODE')
    // The same shapes, made right, decode.
    expect(decodeFrame(encode([COMPACT_CHANGES, 1, change], Infinity))).toMatchObject({ type: 'changes', ack: true })
    expect(decodeFrame(encode([COMPACT_ACK, raw(node), 1, raw(other), 2], Infinity))).toEqual({
      type: 'ack',
      vc: { [node]: 1, [other]: 2 },
    })
  })
})
