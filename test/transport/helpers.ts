/**
 * Tools for transport tests: a recorder of a transport's events (waited on with `vi.waitFor`), fresh
 * node ids, and peer messages carrying real changes.
 */
import { randomBytes } from 'node:crypto'
import { vi } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { toNodeId } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import { encode } from '../../src/codec/index.js'
import { COMPACT_CHANGES, encodeFrame } from '../../src/codec/peer.js'
import { Packr } from 'msgpackr'
import type { Change } from '../../src/crdt/index.js'
import type { PeerLink, Transport, TransportEvents } from '../../src/transport/transport.js'

export type Refusal = Parameters<TransportEvents['refused']>[0]
export type Conflict = Parameters<TransportEvents['conflict']>[0]

export function freshNodeId(): NodeId {
  return toNodeId(randomBytes(8).toString('hex'))
}

/** `value`, or a throw naming `what` while it is still undefined (a `vi.waitFor` check). */
export function found<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`still waiting for ${what}`)
  return value
}

/** A link with what it received and how it closed. */
export interface LinkRecord {
  readonly link: PeerLink
  readonly messages: PeerMessage[]
  readonly closes: { code: number; reason: string }[]
}

/** Everything a transport reported. */
export class Recorder {
  readonly links: LinkRecord[] = []
  readonly refusals: Refusal[] = []
  readonly conflicts: Conflict[] = []

  /** `messages: false` leaves `onMessage` to the test (to test listeners that come late). */
  constructor(transport: Transport, recordMessages = true) {
    transport.on('link', (link) => {
      const record: LinkRecord = { link, messages: [], closes: [] }
      if (recordMessages) link.onMessage((message) => record.messages.push(message))
      link.onClose((code, reason) => record.closes.push({ code, reason }))
      this.links.push(record)
    })
    transport.on('refused', (info) => this.refusals.push(info))
    transport.on('conflict', (info) => this.conflicts.push(info))
  }

  get open(): LinkRecord[] {
    return this.links.filter((record) => !record.link.closed)
  }

  /** The one open link, once there is exactly one. */
  async oneOpen(ms: number, what: string): Promise<LinkRecord> {
    return vi.waitFor(() => found(this.open.length === 1 ? this.open[0] : undefined, what), { timeout: ms })
  }

  async refusal(code: string, ms: number, what: string): Promise<Refusal> {
    return vi.waitFor(
      () =>
        found(
          this.refusals.find((refusal) => refusal.code === code),
          what,
        ),
      { timeout: ms },
    )
  }
}

let seq = 0

/** A real change (one kv.put) from `node`. */
export function changeFrom(node: NodeId, bytes = 8): Change {
  seq += 1
  return {
    dot: { node, seq },
    deps: seq > 1 ? ({ [node]: seq - 1 } as Change['deps']) : {},
    hlc: { wallMs: 1_700_000_000_000 + seq, logical: 0 },
    ops: [
      {
        type: 'kv.put',
        key: `key-${seq}`,
        value: new Uint8Array(bytes).fill(seq % 256),
        contentType: 'application/octet-stream',
        context: [],
      },
    ],
  }
}

/** sync, two changes frames and an ack, as one side would send them. */
export function conversation(from: NodeId, to: NodeId): PeerMessage[] {
  const first = changeFrom(from)
  const second = changeFrom(from)
  const third = changeFrom(from)
  return [
    { type: 'sync', vc: first.dot.seq > 1 ? ({ [from]: first.dot.seq - 1 } as Change['deps']) : {}, peers: [to] },
    { type: 'changes', changes: [first, second] },
    { type: 'changes', changes: [third] },
    { type: 'ack', vc: { [from]: third.dot.seq } as Change['deps'] },
  ]
}

/** Two frames are the same message when they encode to the same bytes. */
export function sameMessages(a: readonly PeerMessage[], b: readonly PeerMessage[]): boolean {
  if (a.length !== b.length) return false
  return a.every((message, index) => {
    const other = b[index]
    return other !== undefined && Buffer.from(encodeFrame(message)).equals(Buffer.from(encodeFrame(other)))
  })
}

/** Encodes `frame` with the value at the string `'\u0001slot'` replaced by the raw MessagePack `raw`. */
export function withRaw(frame: object, raw: Uint8Array): Uint8Array {
  return splice(Buffer.from(encodeFrame(frame as PeerMessage)), raw)
}

function splice(bytes: Buffer, raw: Uint8Array): Uint8Array {
  const slot = Buffer.from(encode('\u0001slot'))
  const at = bytes.indexOf(slot)
  if (at === -1) throw new Error('no slot in the frame')
  return Buffer.concat([bytes.subarray(0, at), raw, bytes.subarray(at + slot.length)])
}

/**
 * Peer frames that are well-shaped except for one value only a MessagePack extension (or a BigInt)
 * can make: in a field no guard looks at (so only the plain-data check can refuse it) and in a
 * change. Each must close the link with 1008.
 */
export function exoticFrames(node: NodeId): Record<string, Uint8Array> {
  const exotic = new Packr({ useRecords: false, moreTypes: true, structuredClone: false })
  // A map frame takes fields it does not know (a newer node may add some): the place to hide a value.
  const carrier = { type: 'snapshot-request', extra: '\u0001slot' }
  // A change (the compact format of codec/change.ts) whose counter delta is the slot, in a
  // version 7 `changes` frame.
  const change = [2, Buffer.from(node, 'hex'), 1, 1, 0, [], [[2, 'n', '\u0001slot']]]
  const counter = (raw: Uint8Array): Uint8Array => encode([COMPACT_CHANGES, 0, withRawValue(change, raw)], Infinity)
  return {
    'a BigInt (extension 0x42) in an extra field': withRaw(carrier, Uint8Array.from([0xd4, 0x42, 0x05])),
    'a BigInt (extension 0x42) as a counter delta': counter(Uint8Array.from([0xd4, 0x42, 0x05])),
    'undefined (extension 0)': withRaw(carrier, Uint8Array.from([0xd4, 0x00, 0x00])),
    'a Date (timestamp extension -1)': withRaw(carrier, Uint8Array.from([0xd6, 0xff, 0, 0, 0, 1])),
    'a Set (extension 0x73)': exotic.pack({ ...carrier, extra: new Set([1]) }),
    'a RegExp (extension 0x78)': exotic.pack({ ...carrier, extra: /a+/u }),
    'an Error (extension 0x65)': exotic.pack({ ...carrier, extra: new Error('x') }),
    'a Float64Array (extension 0x74)': exotic.pack({ ...carrier, extra: new Float64Array([1]) }),
  }
}

/** `value` encoded as MessagePack, with the string `'\u0001slot'` in it replaced by the raw MessagePack `raw`. */
export function withRawValue(value: unknown, raw: Uint8Array): Uint8Array {
  return splice(Buffer.from(encode(value, Infinity)), raw)
}
