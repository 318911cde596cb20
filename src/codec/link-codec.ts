/**
 * One link's frame codec: `encodeFrame` and `decodeFrame` (peer.ts) with a memory per direction.
 *
 * A change carries its origin's vector clock as `deps` (change.ts): about 11 bytes per other node
 * that ever wrote, 22 of the 62 bytes a change costs beyond its key and value on a 3-node
 * cluster. It is nearly always the same as in the origin's previous change: the origin's own
 * entry is left out already, and the others move only when the origin hears of another node's
 * write. So on a version 7 link a change whose `deps` bytes equal those of the previous change
 * of the same origin sent on the same link goes without them, as `[bytes]` (the change's bytes
 * with the `deps` field cut out) instead of `bytes`; the receiver, which remembers the `deps`
 * bytes of each origin's last change on the link, puts them back. The change is still the bytes
 * its origin encoded (the receiver gets them back exactly, and decodes and logs them as any
 * other): only a byte range is left out, no change is decoded or encoded for it.
 *
 * Both sides remember the same thing because they see the same changes in the same order (a link
 * is FIFO, and one lost frame ends the link): the sender a frame's changes once the frame is
 * encoded, the receiver each change as it takes it, at most `ORIGINS_MAX` origins each (past it,
 * new origins are not remembered and go whole). Bytes not in the shape `depsRange` knows (a
 * change from an older log, re-encoded) simply go whole. A cut change from a peer with nothing to
 * put back is a decode error (1008), as any wrong frame.
 */
import { MeshError } from '../errors.js'
import type { Frame } from './peer.js'
import { decodeFrame, encodeFrame } from './peer.js'

/** Origins whose last `deps` a link remembers, each way. */
export const ORIGINS_MAX = 4096
/** The first protocol version that cuts `deps`. */
const CUTTING_VERSION = 7

/** Bytes past `at` of the MessagePack number there (a uint, an int or a float), or -1. */
function skipNumber(bytes: Uint8Array, at: number): number {
  const tag = bytes[at]
  if (tag === undefined) return -1
  if (tag < 0x80 || tag >= 0xe0) return at + 1
  switch (tag) {
    case 0xcc:
    case 0xd0:
      return at + 2
    case 0xcd:
    case 0xd1:
      return at + 3
    case 0xca:
    case 0xce:
    case 0xd2:
      return at + 5
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return at + 9
    default:
      return -1
  }
}

/** Where a change's `deps` starts: after `[2, origin, seq, wallMs, logical`, or -1. */
function depsStart(bytes: Uint8Array): number {
  if (bytes[0] !== 0x97 || bytes[1] !== 0x02 || bytes[2] !== 0xc4 || bytes[3] !== 8) return -1
  let at = 12
  for (let field = 0; field < 3 && at !== -1; field++) at = skipNumber(bytes, at)
  return at
}

/** The byte range `[start, end)` of a change's `deps` (format 2, change.ts), or null. */
export function depsRange(bytes: Uint8Array): [number, number] | null {
  const start = depsStart(bytes)
  const tag = bytes[start]
  if (start === -1 || tag === undefined) return null
  let at: number
  let count: number
  if (tag >= 0x90 && tag <= 0x9f) {
    count = tag & 0x0f
    at = start + 1
  } else if (tag === 0xdc && start + 3 <= bytes.length) {
    count = ((bytes[start + 1] as number) << 8) | (bytes[start + 2] as number)
    at = start + 3
  } else return null
  for (let entry = 0; entry < count && at !== -1; entry++) {
    if (entry % 2 === 1) at = skipNumber(bytes, at)
    else at = bytes[at] === 0xc4 && bytes[at + 1] === 8 ? at + 10 : -1
  }
  return at === -1 || at > bytes.length ? null : [start, at]
}

/** The origin's 8 raw bytes as a map key. */
function originOf(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + 4, 8).toString('latin1')
}

export class LinkCodec {
  /** Per origin, the `deps` bytes of its last change sent on the link. */
  readonly #sent = new Map<string, Buffer>()
  /** Per origin, the `deps` bytes of its last change received on the link. */
  readonly #received = new Map<string, Buffer>()

  /** The version the link runs (`linkVersion`). */
  constructor(readonly version: number) {}

  encode(frame: Frame): Uint8Array {
    if (frame.type !== 'changes' || this.version < CUTTING_VERSION) return encodeFrame(frame, this.version)
    const staged = new Map<string, Buffer>()
    let added = 0
    const bytes = encodeFrame(frame, this.version, (change) => {
      const range = depsRange(change)
      if (range === null) return change
      const origin = originOf(change)
      const deps = change.subarray(range[0], range[1])
      const last = staged.get(origin) ?? this.#sent.get(origin)
      if (last?.equals(deps) === true) return [Buffer.concat([change.subarray(0, range[0]), change.subarray(range[1])])]
      // Remembered as the receiver will: a copy (not a view that would hold a whole frame), and a
      // new origin only while there is room.
      if (last !== undefined) staged.set(origin, Buffer.from(deps))
      else if (this.#sent.size + added < ORIGINS_MAX) {
        added++
        staged.set(origin, Buffer.from(deps))
      }
      return change
    })
    // Only once the frame is made: a frame that fails to encode is not sent, so is not remembered.
    for (const [origin, deps] of staged) this.#sent.set(origin, deps)
    return bytes
  }

  decode(bytes: Uint8Array): Frame {
    if (this.version < CUTTING_VERSION) return decodeFrame(bytes, this.version)
    return decodeFrame(bytes, this.version, (entry, cut) => (cut ? this.#restore(entry) : this.#remember(entry)))
  }

  #remember(change: Uint8Array): Uint8Array {
    const range = depsRange(change)
    if (range === null) return change
    const origin = originOf(change)
    if (this.#received.has(origin) || this.#received.size < ORIGINS_MAX)
      this.#received.set(origin, Buffer.from(change.subarray(range[0], range[1])))
    return change
  }

  #restore(cut: Uint8Array): Uint8Array {
    const at = depsStart(cut)
    const deps = at === -1 ? undefined : this.#received.get(originOf(cut))
    if (deps === undefined)
      throw new MeshError(
        'MESHKV_ERR_DECODE',
        'peer frame: a change without its deps, and no earlier change of its origin',
      )
    return Buffer.concat([cut.subarray(0, at), deps, cut.subarray(at)])
  }
}
