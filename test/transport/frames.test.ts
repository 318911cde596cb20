/**
 * Peer frames are plain data: what only a MessagePack extension can make (BigInt, undefined,
 * Date, Set, RegExp, Error, typed arrays) is a MESHKV_ERR_DECODE, never an object in a change.
 */
import { describe, expect, it } from 'vitest'
import { isPlainData } from '../../src/codec/index.js'
import { AWARENESS_BYTES_MAX, decodeFrame, encodeFrame } from '../../src/codec/peer.js'
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
