/**
 * The change format (store format 2, peer protocol 6): one change is one MessagePack array of
 * positional fields, and these bytes are what the log holds AND what crosses the wire.
 *
 *   [2, origin, seq, wallMs, logical, deps, ops]
 *   origin   the node id as its 8 raw bytes (not 16 hex characters)
 *   deps     the origin's vector clock, flat: [id, seq, id, seq, …] (ids as 8 raw bytes), without
 *            the origin's own entry when it is seq - 1, as it is for every change a node makes
 *            (the decoder puts it back; an absent own entry past seq 1 is sent as [origin, 0])
 *   ops      one array per op, led by its code:
 *            [0, key, value, contentType, context]   kv.put (contentType: 0 bytes, 1 text, 2 JSON, or the string)
 *            [1, key, context]                       kv.del
 *            [2, name, delta]                        counter.add
 *            [3, name, member, context]              set.add
 *            [4, name, member, context]              set.remove
 *            [5, name, update]                       doc.update
 *   context  dots, flat: [id, seq, id, seq, …]
 *
 * Why: the format-1 change (a MessagePack map with field names, hex ids) cost about 2.2× its
 * payload on the wire, and was encoded again for every peer it went to. Now a change is encoded
 * once, when it is made: `encodeChange` keeps the bytes of every change it encoded or decoded (a
 * WeakMap; changes are never mutated), so the store writes a received change's bytes to its log
 * as they came, a session sends log entries as they are, and a frame only wraps them.
 *
 * A log written by an older meshkv holds format-1 entries (maps): `decodeChange` still reads them
 * (and does not keep their bytes, so they go out in format 2). A peer's change must be format 2
 * (`decodePeerChange`). Decoding builds fresh objects field by field, checking each: nothing a
 * peer adds rides along, and every leaf is a checked number, string or byte string, so no
 * MessagePack extension can slip an exotic object into a change.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { isSeq } from '../clock/index.js'
import type { Change, Op } from '../crdt/index.js'
import { isYjsUpdate } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import { isBytes, isChange, isKey, rebuildChange } from './guards.js'
import { RECORD_BYTES_MAX_DEFAULT, decodeChecked, encode, strangerUnpackr } from './msgpack.js'

const FORMAT = 2
const KV_PUT = 0
const KV_DEL = 1
const COUNTER_ADD = 2
const SET_ADD = 3
const SET_REMOVE = 4
const DOC_UPDATE = 5
/** Content types sent as a small number (api/media.ts names them; codec may not import api/). */
const CONTENT_TYPES: readonly string[] = ['application/octet-stream', 'text/plain; charset=utf-8', 'application/json']

/** The bytes of every change encoded or decoded (format 2), so none is encoded twice. */
const encoded = new WeakMap<Change, Uint8Array>()
/** Node ids as raw bytes: a handful of ids per cluster, each converted once. */
const idBytes = new Map<string, Uint8Array>()
const ID_CACHE_MAX = 4096

/** A node id's 8 raw bytes (what the change format and version 7's `ack` carry). */
export function rawId(node: NodeId): Uint8Array {
  let bytes = idBytes.get(node)
  if (bytes === undefined) {
    if (idBytes.size >= ID_CACHE_MAX) idBytes.clear()
    bytes = Buffer.from(node, 'hex')
    idBytes.set(node, bytes)
  }
  return bytes
}

function flatDots(dots: readonly Dot[]): unknown[] {
  const flat: unknown[] = []
  for (const dot of dots) flat.push(rawId(dot.node), dot.seq)
  return flat
}

function opRecord(op: Op): unknown[] {
  switch (op.type) {
    case 'kv.put': {
      const code = CONTENT_TYPES.indexOf(op.contentType)
      return [KV_PUT, op.key, op.value, code === -1 ? op.contentType : code, flatDots(op.context)]
    }
    case 'kv.del':
      return [KV_DEL, op.key, flatDots(op.context)]
    case 'counter.add':
      return [COUNTER_ADD, op.name, op.delta]
    case 'set.add':
      return [SET_ADD, op.name, op.member, flatDots(op.context)]
    case 'set.remove':
      return [SET_REMOVE, op.name, op.member, flatDots(op.context)]
    case 'doc.update':
      return [DOC_UPDATE, op.name, op.update]
  }
}

/**
 * The change's bytes (format 2), encoded on the first call only. Over `limitBytes`: a
 * `MESHKV_ERR_FRAME_TOO_LARGE` (the bytes are kept all the same: the caller decides what is too large).
 */
export function encodeChange(change: Change, limitBytes = RECORD_BYTES_MAX_DEFAULT): Uint8Array {
  let bytes = encoded.get(change)
  if (bytes === undefined) {
    const { dot, hlc } = change
    const deps: unknown[] = []
    for (const [node, seq] of Object.entries(change.deps))
      if (node !== dot.node || seq !== dot.seq - 1) deps.push(rawId(node as NodeId), seq)
    if (dot.seq > 1 && !Object.hasOwn(change.deps, dot.node)) deps.push(rawId(dot.node), 0)
    bytes = encode(
      [FORMAT, rawId(dot.node), dot.seq, hlc.wallMs, hlc.logical, deps, change.ops.map(opRecord)],
      Infinity,
    )
    encoded.set(change, bytes)
  }
  if (bytes.length > limitBytes) {
    throw new MeshError(
      'MESHKV_ERR_FRAME_TOO_LARGE',
      `an encoded change of ${bytes.length} bytes exceeds the limit of ${limitBytes}`,
      { details: { limitBytes, actualBytes: bytes.length } },
    )
  }
  return bytes
}

/** A change read from this node's own log: format 2, or format 1 as an older meshkv wrote it. */
export function decodeChange(bytes: Uint8Array, limitBytes?: number): Change {
  const first = bytes instanceof Uint8Array ? (bytes[0] ?? 0) : 0
  // A MessagePack map (fixmap 0x80-0x8f, map16 0xde, map32 0xdf) is a format-1 entry.
  if ((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)
    return rebuildChange(decodeChecked(bytes, isChange, 'change', limitBytes))
  return decodeFormat2(bytes, 'change', limitBytes, undefined)
}

/** A change from a peer (one entry of a `changes` frame): format 2 only. */
export function decodePeerChange(bytes: Uint8Array, limitBytes: number): Change {
  return decodeFormat2(bytes, 'peer change', limitBytes, strangerUnpackr)
}

function decodeFormat2(
  bytes: Uint8Array,
  what: string,
  limitBytes: number | undefined,
  unpackr: typeof strangerUnpackr | undefined,
): Change {
  decodeChecked(bytes, isChangeRecord, what, limitBytes, unpackr)
  const decoded = lastDecoded as Change
  lastDecoded = null
  encoded.set(decoded, bytes)
  return decoded
}

/** The change `isChangeRecord` built from the record it accepted (one guard for every decode, no closure each). */
let lastDecoded: Change | null = null

function isChangeRecord(value: unknown): value is unknown[] {
  lastDecoded = changeOf(value)
  return lastDecoded !== null
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

/** Node ids by their raw bytes (high 32 bits, then low): a decoded id costs two lookups, no allocation. */
const idsByBytes = new Map<number, Map<number, NodeId>>()
let idsByBytesCount = 0

/** A node id from its 8 raw bytes, or null for anything else. */
export function nodeIdOf(value: unknown): NodeId | null {
  if (!isBytes(value) || value.length !== 8) return null
  const high =
    (value[0] as number) * 0x1000000 +
    ((value[1] as number) << 16) +
    (((value[2] as number) << 8) | (value[3] as number))
  const low =
    (value[4] as number) * 0x1000000 +
    ((value[5] as number) << 16) +
    (((value[6] as number) << 8) | (value[7] as number))
  let lows = idsByBytes.get(high)
  const known = lows?.get(low)
  if (known !== undefined) return known
  if (idsByBytesCount >= ID_CACHE_MAX) {
    idsByBytes.clear()
    idsByBytesCount = 0
    lows = undefined
  }
  const id = Buffer.from(value).toString('hex') as NodeId
  if (lows === undefined) idsByBytes.set(high, (lows = new Map()))
  lows.set(low, id)
  idsByBytesCount++
  return id
}

function dotsOf(value: unknown): Dot[] | null {
  if (!Array.isArray(value) || value.length % 2 !== 0) return null
  const dots: Dot[] = []
  for (let i = 0; i < value.length; i += 2) {
    const node = nodeIdOf(value[i])
    const seq: unknown = value[i + 1]
    if (node === null || !isSeq(seq)) return null
    dots.push({ node, seq })
  }
  return dots
}

/**
 * A change's deps: its flat entries, plus the origin's own entry (seq - 1) unless it is given. The
 * origin's entry goes where a normalized clock (sorted by node id, `vcNormalize`) has it, so a
 * decoded change is the very object its origin made, key order included.
 */
function depsOf(value: unknown, origin: NodeId, seq: number): VectorClock | null {
  if (!Array.isArray(value) || value.length % 2 !== 0) return null
  // The origin's entry, when given, is often last (an absent one: `encodeChange`).
  let ownGiven = false
  for (let i = 0; i < value.length; i += 2) if (nodeIdOf(value[i]) === origin) ownGiven = true
  // Built in one pass, in the order given (a normalized clock's, by node id), with the origin's
  // entry placed where that order has it: no Set, no entry arrays, no splice.
  const vc: Record<string, number> = {}
  let ownPlaced = ownGiven || seq <= 1
  let ownSeen = false
  for (let i = 0; i < value.length; i += 2) {
    const node = nodeIdOf(value[i])
    const entry: unknown = value[i + 1]
    if (node === null || Object.hasOwn(vc, node) || (node === origin && ownSeen)) return null
    if (node === origin) ownSeen = true
    if (node === origin && entry === 0) continue // the origin's entry is absent, not seq - 1
    if (!isSeq(entry)) return null
    if (!ownPlaced && node > origin) {
      vc[origin] = seq - 1
      ownPlaced = true
    }
    vc[node] = entry
  }
  if (!ownPlaced) vc[origin] = seq - 1
  return vc as VectorClock
}

function changeOf(value: unknown): Change | null {
  if (!Array.isArray(value) || value.length !== 7 || value[0] !== FORMAT) return null
  const [, origin, seq, wallMs, logical, depsFlat, opsFlat] = value as unknown[]
  const node = nodeIdOf(origin)
  if (node === null || !isSeq(seq) || !isCount(wallMs) || !isCount(logical)) return null
  const deps = depsOf(depsFlat, node, seq)
  if (deps === null) return null
  if (!Array.isArray(opsFlat) || opsFlat.length === 0) return null
  const ops: Op[] = []
  for (const record of opsFlat) {
    const op = opOf(record)
    if (op === null) return null
    ops.push(op)
  }
  return { dot: { node, seq }, deps, hlc: { wallMs, logical }, ops }
}

function contentTypeOf(value: unknown): string | null {
  if (typeof value === 'string') return value
  return typeof value === 'number' ? (CONTENT_TYPES[value] ?? null) : null
}

function opOf(value: unknown): Op | null {
  if (!Array.isArray(value)) return null
  const fields = value as unknown[]
  const [code, name, a, b, c] = fields
  if (!isKey(name)) return null
  switch (code) {
    case KV_PUT: {
      const contentType = contentTypeOf(b)
      const context = dotsOf(c)
      if (fields.length !== 5 || !isBytes(a) || contentType === null || context === null) return null
      return { type: 'kv.put', key: name, value: a, contentType, context }
    }
    case KV_DEL: {
      const context = dotsOf(a)
      return fields.length === 3 && context !== null ? { type: 'kv.del', key: name, context } : null
    }
    case COUNTER_ADD:
      return fields.length === 3 && typeof a === 'number' && Number.isSafeInteger(a) && a !== 0
        ? { type: 'counter.add', name, delta: a }
        : null
    case SET_ADD:
    case SET_REMOVE: {
      const context = dotsOf(b)
      if (fields.length !== 4 || !isKey(a) || context === null) return null
      return { type: code === SET_ADD ? 'set.add' : 'set.remove', name, member: a, context }
    }
    case DOC_UPDATE:
      return fields.length === 3 && isBytes(a) && isYjsUpdate(a) ? { type: 'doc.update', name, update: a } : null
    default:
      return null
  }
}
