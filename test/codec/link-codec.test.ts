/**
 * A link's codec (codec/link-codec.ts) sends a change without its `deps` when they are the bytes
 * of the previous change of the same origin on the link, and the receiving codec puts them back:
 * every change comes out as the exact bytes its origin encoded, whatever the order of origins,
 * the frames they are cut into, and how often each origin's `deps` move.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { encode, encodeChange } from '../../src/codec/index.js'
import { LinkCodec, ORIGINS_MAX, depsRange } from '../../src/codec/link-codec.js'
import type { Frame } from '../../src/codec/peer.js'
import { COMPACT_CHANGES, FRAME_BYTES_MAX, decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import type { Change } from '../../src/crdt/index.js'
import { isMeshError } from '../../src/errors.js'
import { RUNS } from '../helpers/runs.js'

const ORIGINS = ['00000000000000a1', '00000000000000b2', '00000000000000c3'] as NodeId[]

function change(origin: NodeId, seq: number, deps: VectorClock, valueBytes = 16): Change {
  return {
    dot: { node: origin, seq },
    deps: { ...deps, ...(seq > 1 ? { [origin]: seq - 1 } : {}) },
    hlc: { wallMs: 1_700_000_000_000 + seq, logical: seq % 3 },
    ops: [
      {
        type: 'kv.put',
        key: `k-${origin}-${seq}`,
        value: new Uint8Array(valueBytes).fill(seq % 251),
        contentType: 'application/octet-stream',
        context: [],
      },
    ],
  }
}

/** Frames through a pair of codecs; the changes' bytes as the receiver got them. */
function through(sender: LinkCodec, receiver: LinkCodec, frames: Frame[]): { bytes: number; changes: Buffer[] } {
  let bytes = 0
  const changes: Buffer[] = []
  for (const frame of frames) {
    const encoded = sender.encode(frame)
    bytes += encoded.length
    const decoded = receiver.decode(encoded)
    if (decoded.type === 'changes') for (const each of decoded.changes) changes.push(Buffer.from(encodeChange(each)))
  }
  return { bytes, changes }
}

describe('a link codec', () => {
  it("cuts the deps of an origin's change equal to its previous one, and the receiver puts them back", () => {
    const [a, b, c] = ORIGINS as [NodeId, NodeId, NodeId]
    const deps = { [b]: 7, [c]: 300 }
    const first = change(a, 1, deps)
    const second = change(a, 2, deps)
    const range = depsRange(encodeChange(second))
    expect(range).not.toBeNull()
    const [start, end] = range as [number, number]
    // Two other ids of 8 bytes with their seqs: the bytes a cut saves, less one for the wrapper.
    expect(end - start).toBe(1 + 10 + 1 + 10 + 3)

    const sender = new LinkCodec(7)
    const receiver = new LinkCodec(7)
    const one = sender.encode({ type: 'changes', changes: [first] })
    const two = sender.encode({ type: 'changes', changes: [second] })
    expect(two.length).toBe(encodeFrame({ type: 'changes', changes: [second] }).length - (end - start) + 1)
    for (const [bytes, sent] of [
      [one, first],
      [two, second],
    ] as const) {
      const decoded = receiver.decode(bytes)
      if (decoded.type !== 'changes') throw new Error('not a changes frame')
      expect(Buffer.from(encodeChange(decoded.changes[0] as Change))).toEqual(Buffer.from(encodeChange(sent)))
    }
    // Other deps go whole, and become the ones remembered.
    const moved = change(a, 3, { [b]: 8, [c]: 300 })
    expect(sender.encode({ type: 'changes', changes: [moved] }).length).toBe(
      encodeFrame({ type: 'changes', changes: [moved] }).length,
    )
  })

  it('gives back every change exactly, over random origins, deps and frames (a property)', () => {
    const step = fc.record({
      origin: fc.integer({ min: 0, max: 2 }),
      bump: fc.option(fc.integer({ min: 0, max: 2 }), { freq: 3 }),
      frameEnds: fc.boolean(),
    })
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const seqs = [0, 0, 0]
        // Each origin's clock of the others: moves when `bump` names another node.
        const clocks: Record<string, number>[] = [{}, {}, {}]
        const sent: Buffer[] = []
        const frames: Frame[] = []
        let batch: Change[] = []
        for (const { origin, bump, frameEnds } of steps) {
          const id = ORIGINS[origin] as NodeId
          const clock = clocks[origin] as Record<string, number>
          if (bump !== null && bump !== origin)
            clock[ORIGINS[bump] as string] = (clock[ORIGINS[bump] as string] ?? 0) + 1
          seqs[origin] = (seqs[origin] as number) + 1
          const made = change(id, seqs[origin] as number, clock as VectorClock)
          sent.push(Buffer.from(encodeChange(made)))
          batch.push(made)
          if (frameEnds) {
            frames.push({ type: 'changes', changes: batch })
            batch = []
          }
        }
        if (batch.length > 0) frames.push({ type: 'changes', changes: batch })
        const cut = through(new LinkCodec(7), new LinkCodec(7), frames)
        expect(cut.changes).toEqual(sent)
        // Never more bytes than the frames whole.
        const whole = frames.reduce((sum, frame) => sum + encodeFrame(frame).length, 0)
        expect(cut.bytes).toBeLessThanOrEqual(whole)
      }),
      { numRuns: Math.min(RUNS, 300) },
    )
  })

  it('refuses a cut change with nothing to put back, on a link and outside one', () => {
    const [a, b] = ORIGINS as [NodeId, NodeId]
    const bytes = Buffer.from(encodeChange(change(a, 2, { [b]: 1 })))
    const [start, end] = depsRange(bytes) as [number, number]
    const frame = encode(
      [COMPACT_CHANGES, 0, [Buffer.concat([bytes.subarray(0, start), bytes.subarray(end)])]],
      Infinity,
    )
    const codeOf = (decode: () => unknown): string => {
      try {
        decode()
        return 'decoded'
      } catch (error) {
        return isMeshError(error) ? error.code : String(error)
      }
    }
    expect(codeOf(() => new LinkCodec(7).decode(frame))).toBe('MESHKV_ERR_DECODE')
    expect(codeOf(() => decodeFrame(frame))).toBe('MESHKV_ERR_DECODE')
    // A cut entry that is not a change at all.
    const garbage = encode([COMPACT_CHANGES, 0, [Buffer.from([0x97, 1, 2])]], Infinity)
    expect(codeOf(() => new LinkCodec(7).decode(garbage))).toBe('MESHKV_ERR_DECODE')
  })

  it('a frame that fails to encode is not remembered: the next change goes whole', () => {
    const [a, b] = ORIGINS as [NodeId, NodeId]
    const deps = { [b]: 1 }
    const sender = new LinkCodec(7)
    const big = (seq: number): Change => change(a, seq, deps, Math.ceil(FRAME_BYTES_MAX / 2) + 1024)
    expect(() => sender.encode({ type: 'changes', changes: [big(1), big(2)] })).toThrow(/exceeds the limit/u)
    const next = change(a, 3, deps)
    expect(sender.encode({ type: 'changes', changes: [next] }).length).toBe(
      encodeFrame({ type: 'changes', changes: [next] }).length,
    )
  })

  it('remembers at most ORIGINS_MAX origins each way, and both sides agree on which', () => {
    const sender = new LinkCodec(7)
    const receiver = new LinkCodec(7)
    const other = ORIGINS[0] as NodeId
    const origin = (index: number): NodeId => (index + 0x1000).toString(16).padStart(16, '0') as NodeId
    const count = ORIGINS_MAX + 3
    const firsts = Array.from({ length: count }, (_, index) => change(origin(index), 1, { [other]: 1 }))
    const seconds = Array.from({ length: count }, (_, index) => change(origin(index), 2, { [other]: 1 }))
    const sent = [...firsts, ...seconds].map((each) => Buffer.from(encodeChange(each)))
    const frames: Frame[] = []
    for (let at = 0; at < 2 * count; at += 500)
      frames.push({ type: 'changes', changes: [...firsts, ...seconds].slice(at, at + 500) })
    const { bytes, changes } = through(sender, receiver, frames)
    expect(changes).toEqual(sent)
    // The second changes of the first ORIGINS_MAX origins went cut; the 3 past it whole.
    const whole = frames.reduce((sum, frame) => sum + encodeFrame(frame).length, 0)
    const saved = (depsRange(encodeChange(seconds[0] as Change)) as [number, number]).reduce((x, y) => y - x) - 1
    expect(whole - bytes).toBe(ORIGINS_MAX * saved)
  })

  it('on a version 6 link cuts nothing', () => {
    const [a, b] = ORIGINS as [NodeId, NodeId]
    const frame: Frame = { type: 'changes', changes: [change(a, 1, { [b]: 1 }), change(a, 2, { [b]: 1 })] }
    expect(Buffer.from(new LinkCodec(6).encode(frame))).toEqual(Buffer.from(encodeFrame(frame, 6)))
  })
})
