/**
 * Peer frames: the handshake and replication messages two nodes exchange (the protocol is written
 * out in replication/protocol.ts). Every frame is one MessagePack value of at most
 * `FRAME_BYTES_MAX`; decoding checks size, then MessagePack, then shape.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { isDot, isNodeId, isSeq, isVectorClock } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import { decodePeerChange, encodeChange, nodeIdOf, rawId } from './change.js'
import { decodePlain, encode } from './msgpack.js'
import { isBytes, isChange, isKey, isRecord, rebuildChange } from './guards.js'

/**
 * The peer protocol version, sent in the handshake's `challenge` and `hello`; a node refuses a
 * peer that speaks another. It lives with the frames because both the transport (which checks it)
 * and replication (whose messages it versions) import this room and not each other. Version 2:
 * the handshake proofs cover the cluster id (a version 1 node's proofs would not match). Version 3:
 * a snapshot chunk may carry a part of a state (`SnapshotChunkEntry`), which a version 2 node
 * would refuse as a wrong shape. Version 4: the `doc` key space (`doc.update` ops, `doc` states in
 * snapshots), which a version 3 node would refuse, stalling the origin's changes there. Version 5:
 * the `awareness` message (Yjs presence relayed between nodes), which a version 4 node would take
 * for a wrong shape and close the link over. Version 6: a `changes` frame carries each change as
 * its bytes in the compact change format (change.ts), and an `ack` carries only the entries that
 * moved since the last `ack` or `sync` this node sent on the link; a version 5 node would read
 * neither. Version 7: `changes` and `ack`, nearly every frame on a busy link, are positional
 * arrays (`COMPACT_CHANGES`, `COMPACT_ACK`) with node ids as 8 raw bytes, and a `changes` frame
 * says whether its sender waits for acks (`ack`), and a change whose `deps` equal its origin's
 * previous change's on the link goes without them (link-codec.ts); a version 6 node would take
 * them for a wrong shape.
 */
export const PROTOCOL_VERSION = 7
/**
 * The oldest version this node still speaks, so a cluster can be upgraded one node at a time: a
 * link runs the lower of its two sides' versions (`linkVersion`). On a version 5 link `changes`
 * carry format-1 changes (maps) and every `ack` carries the whole clock; on a version 6 link
 * `changes` and `ack` are maps, and every ack is sent as soon as it is durable.
 */
export const PROTOCOL_VERSION_MIN = 5

/** The version a link runs: the lower of the two; a peer older than `PROTOCOL_VERSION_MIN` is refused. */
export function linkVersion(peerVersion: number): number {
  return Math.min(peerVersion, PROTOCOL_VERSION)
}

/** Largest peer frame (ws `maxPayload`). */
export const FRAME_BYTES_MAX = 4 * 1024 * 1024
/**
 * Largest frame before the handshake is done. The largest honest one is a hello with a URL of
 * URL_BYTES_MAX, a cluster id of CLUSTER_ID_BYTES_MAX and an instance id (about 2.4 KiB); anything bigger from an
 * unauthenticated peer is refused unread, so a stranger cannot make a node hold 4 MiB frames.
 */
export const HANDSHAKE_FRAME_BYTES_MAX = 3 * 1024
export const NONCE_BYTES = 32
/**
 * A process's instance id (random, fixed for its transport's life), sent in `challenge` and
 * `hello`: one node id with two instances is two live processes (a cloned data directory).
 * Optional on the wire, so protocol 3 nodes without it still link (and are never called a clone).
 */
export const INSTANCE_BYTES = 8
export const CLUSTER_ID_BYTES_MAX = 128
export const URL_BYTES_MAX = 2048
export const PEERS_MAX = 1024

export interface ChallengeMessage {
  readonly type: 'challenge'
  readonly version: number
  readonly clusterId: string
  readonly nodeId: NodeId
  readonly nonce: Uint8Array
  /** The acceptor's instance id (INSTANCE_BYTES), absent from older nodes. */
  readonly instance?: Uint8Array
}

export interface HelloMessage {
  readonly type: 'hello'
  readonly version: number
  readonly clusterId: string
  readonly nodeId: NodeId
  /** The URL peers can reach the dialer at, or null when it takes no inbound links. */
  readonly url: string | null
  readonly nonce: Uint8Array
  readonly proof: Uint8Array
  /** The dialer's instance id (INSTANCE_BYTES), absent from older nodes. */
  readonly instance?: Uint8Array
}

export interface WelcomeMessage {
  readonly type: 'welcome'
  readonly proof: Uint8Array
}

export type HandshakeMessage = ChallengeMessage | HelloMessage | WelcomeMessage

export interface SyncMessage {
  readonly type: 'sync'
  readonly vc: VectorClock
  /** Node ids this node currently has an authenticated link with. */
  readonly peers: readonly NodeId[]
}

export interface ChangesMessage {
  readonly type: 'changes'
  readonly changes: readonly Change[]
  /**
   * The sender waits for acks (a write with a write concern past `w=1` is in flight there): the
   * receiver acks these changes as soon as they are durable, where it otherwise gathers acks for a
   * few milliseconds (replication/acks.ts). Version 7; absent, false.
   */
  readonly ack?: boolean
}

export interface AckMessage {
  readonly type: 'ack'
  readonly vc: VectorClock
}

/**
 * A sender tells the receiver it needs a snapshot: `lacks` is the first change the receiver lacks
 * that this node's log no longer holds, or null when the receiver is brand new and the history long.
 */
export interface SnapshotNeededMessage {
  readonly type: 'snapshot-needed'
  readonly lacks: Dot | null
}

/** The receiver consents to one snapshot from this sender; only then may an offer come. */
export interface SnapshotRequestMessage {
  readonly type: 'snapshot-request'
}

/** A sender offers a snapshot (states as of `vc`); nothing is streamed until the receiver accepts. */
export interface SnapshotOfferMessage {
  readonly type: 'snapshot-offer'
  readonly vc: VectorClock
  /** Keys the snapshot holds, for progress: an estimate (the exact count may follow in a chunk). */
  readonly keys: number
}

/** The receiver takes the offered snapshot, or refuses it (it is receiving another one). */
export interface SnapshotReplyMessage {
  readonly type: 'snapshot-reply'
  readonly accept: boolean
}

/**
 * One entry of a snapshot chunk: `[space, key, encoded state]`, or a part of a state too large for
 * one chunk, `[space, key, bytes, true]`: more parts of the same key follow (in this chunk or the
 * next ones), the last one without the flag. The receiver concatenates them (`StateAssembler`).
 */
export type SnapshotChunkEntry = readonly [string, string, Uint8Array] | readonly [string, string, Uint8Array, true]

/** Encoded states of the snapshot, in key order per space; `seq` counts chunks from 1. */
export interface SnapshotChunkMessage {
  readonly type: 'snapshot-chunk'
  readonly seq: number
  readonly states: readonly SnapshotChunkEntry[]
  /**
   * The exact number of keys the snapshot holds, in one chunk once the sender has counted them
   * (the offer's `keys` is an estimate). Optional: older nodes neither send nor read it.
   */
  readonly keys?: number
}

/** The receiver has the chunks up to `seq` on its disk (flow control: a few chunks in flight). */
export interface SnapshotAckMessage {
  readonly type: 'snapshot-ack'
  readonly seq: number
}

/** The last chunk was sent: the receiver joins the snapshot, then sends `sync`. */
export interface SnapshotEndMessage {
  readonly type: 'snapshot-end'
  readonly chunks: number
}

export type SnapshotMessage =
  | SnapshotNeededMessage
  | SnapshotRequestMessage
  | SnapshotOfferMessage
  | SnapshotReplyMessage
  | SnapshotChunkMessage
  | SnapshotAckMessage
  | SnapshotEndMessage

/**
 * A y-protocols awareness update from a Yjs room's clients on the sender (node/yjs-rooms.ts),
 * relayed to the same room's clients on the receiver and never stored or passed on.
 */
export interface AwarenessMessage {
  readonly type: 'awareness'
  readonly room: string
  readonly update: Uint8Array
}

/** Largest awareness update relayed between nodes (a few cursors and names are a few hundred bytes). */
export const AWARENESS_BYTES_MAX = 64 * 1024
/** Largest room name an awareness message carries (a document name is a key). */
const ROOM_BYTES_MAX = 64 * 1024

export type PeerMessage = SyncMessage | ChangesMessage | AckMessage | SnapshotMessage | AwarenessMessage

export type Frame = HandshakeMessage | PeerMessage

function isShortString(value: unknown, bytesMax: number): value is string {
  return typeof value === 'string' && Buffer.byteLength(value) <= bytesMax
}

function isNonce(value: unknown): value is Uint8Array {
  return isBytes(value) && value.length === NONCE_BYTES
}

function isInstance(value: unknown): boolean {
  return value === undefined || (isBytes(value) && value.length === INSTANCE_BYTES)
}

export function isFrame(value: unknown, version = PROTOCOL_VERSION): value is Frame {
  if (!isRecord(value)) return false
  switch (value['type']) {
    case 'challenge':
      return (
        Number.isSafeInteger(value['version']) &&
        isShortString(value['clusterId'], CLUSTER_ID_BYTES_MAX) &&
        isNodeId(value['nodeId']) &&
        isNonce(value['nonce']) &&
        isInstance(value['instance'])
      )
    case 'hello':
      return (
        Number.isSafeInteger(value['version']) &&
        isShortString(value['clusterId'], CLUSTER_ID_BYTES_MAX) &&
        isNodeId(value['nodeId']) &&
        (value['url'] === null || isShortString(value['url'], URL_BYTES_MAX)) &&
        isNonce(value['nonce']) &&
        isBytes(value['proof']) &&
        isInstance(value['instance'])
      )
    case 'welcome':
      return isBytes(value['proof'])
    case 'sync':
      return (
        isVectorClock(value['vc']) &&
        Array.isArray(value['peers']) &&
        value['peers'].length <= PEERS_MAX &&
        value['peers'].every(isNodeId)
      )
    case 'changes':
      // Each entry is one change's bytes, decoded and checked by `decodeFrame` (version 5: a map).
      // Version 7 sends it positionally (`COMPACT_CHANGES`), and so does every sender it links with.
      return (
        version < 7 &&
        Array.isArray(value['changes']) &&
        value['changes'].length > 0 &&
        value['changes'].every(version >= 6 ? isBytes : isChange)
      )
    case 'ack':
      return version < 7 && isVectorClock(value['vc'])
    case 'snapshot-needed':
      return value['lacks'] === null || isDot(value['lacks'])
    case 'snapshot-request':
      return true
    case 'snapshot-offer':
      return isVectorClock(value['vc']) && isCount(value['keys'])
    case 'snapshot-reply':
      return typeof value['accept'] === 'boolean'
    case 'snapshot-chunk':
      return (
        isCount(value['seq']) &&
        (value['keys'] === undefined || isCount(value['keys'])) &&
        Array.isArray(value['states']) &&
        value['states'].every(isSnapshotState)
      )
    case 'snapshot-ack':
      return isCount(value['seq'])
    case 'snapshot-end':
      return isCount(value['chunks'])
    case 'awareness':
      return (
        isShortString(value['room'], ROOM_BYTES_MAX) &&
        isBytes(value['update']) &&
        value['update'].length <= AWARENESS_BYTES_MAX
      )
    default:
      return false
  }
}

/**
 * A message this node is about to send is well formed: its wire shape (`isFrame`), except that a
 * `changes` message holds changes (`isChange`), which `encodeFrame` turns into their bytes.
 */
export function isOutgoingMessage(message: PeerMessage): boolean {
  if (isHandshakeMessage(message)) return false
  // The message as a version 6 map would carry it (version 7 only lays `changes` and `ack` out
  // positionally, from the same fields).
  if (message.type !== 'changes') return isFrame(message, 6)
  return (
    Array.isArray(message.changes) &&
    message.changes.length > 0 &&
    message.changes.every(isChange) &&
    (message.ack === undefined || typeof message.ack === 'boolean')
  )
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

function isSnapshotState(value: unknown): boolean {
  return (
    Array.isArray(value) &&
    (value.length === 3 || (value.length === 4 && value[3] === true)) &&
    typeof value[0] === 'string' &&
    isKey(value[1]) &&
    isBytes(value[2])
  )
}

/** Bytes a chunk entry costs beyond its key and state bytes (array header, space, flag): an upper bound. */
const CHUNK_ENTRY_OVERHEAD = 24

/**
 * Packs a snapshot's states into chunks of at most `statesMax` entries and about `bytesMax`
 * bytes. A state larger than a chunk goes as parts (`[space, key, bytes, true]` …, then the last
 * part as a plain entry), each in a chunk of its own, so no state is too big to move: a chunk
 * never grows past `bytesMax` plus one key, far under a frame. Pure: the sender feeds it states
 * in order and sends each chunk it hands back.
 */
export class SnapshotChunker {
  readonly #statesMax: number
  readonly #bytesMax: number
  #entries: SnapshotChunkEntry[] = []
  #bytes = 0

  constructor(limits: { statesMax: number; bytesMax: number }) {
    this.#statesMax = limits.statesMax
    this.#bytesMax = limits.bytesMax
  }

  /** Adds one state; returns the chunks it filled, in order (often none). */
  push(space: string, key: string, bytes: Uint8Array): SnapshotChunkEntry[][] {
    const full: SnapshotChunkEntry[][] = []
    const keyBytes = Buffer.byteLength(key) + CHUNK_ENTRY_OVERHEAD
    // What one part may hold in an empty chunk: at least a byte, so a tiny limit still moves on.
    const capacity = Math.max(1, this.#bytesMax - keyBytes)
    let offset = 0
    for (;;) {
      const rest = bytes.length - offset
      if (rest > this.#bytesMax - this.#bytes - keyBytes) {
        if (this.#entries.length > 0) {
          full.push(this.#take())
          continue
        }
        if (rest > capacity) {
          this.#entries.push([space, key, bytes.subarray(offset, offset + capacity), true])
          offset += capacity
          full.push(this.#take())
          continue
        }
      }
      this.#entries.push([space, key, offset === 0 ? bytes : bytes.subarray(offset)])
      this.#bytes += keyBytes + rest
      if (this.#entries.length >= this.#statesMax || this.#bytes >= this.#bytesMax) full.push(this.#take())
      return full
    }
  }

  /** The last chunk, or null when nothing is left. */
  finish(): SnapshotChunkEntry[] | null {
    return this.#entries.length > 0 ? this.#take() : null
  }

  #take(): SnapshotChunkEntry[] {
    const entries = this.#entries
    this.#entries = []
    this.#bytes = 0
    return entries
  }
}

/**
 * The receiving side of `SnapshotChunker`: joins the parts of a state back together, holding at
 * most `bytesMax` bytes of one state. A part followed by another key, a state past `bytesMax`,
 * or a snapshot that ends in the middle of a state is a protocol error (the receiver closes 1008).
 */
export class StateAssembler {
  readonly #bytesMax: number
  #pending: { space: string; key: string; parts: Uint8Array[]; bytes: number } | null = null

  constructor(bytesMax: number) {
    this.#bytesMax = bytesMax
  }

  /** Takes one entry; returns a whole state once its last part is in, else null. */
  take(entry: SnapshotChunkEntry): readonly [string, string, Uint8Array] | null {
    const [space, key, bytes] = entry
    const pending = this.#pending
    if (pending !== null && (pending.space !== space || pending.key !== key))
      throw new MeshError('MESHKV_ERR_DECODE', `a snapshot state in parts was cut off by ${JSON.stringify(key)}`)
    const total = (pending?.bytes ?? 0) + bytes.length
    if (total > this.#bytesMax) {
      throw new MeshError('MESHKV_ERR_FRAME_TOO_LARGE', `a snapshot state is larger than ${this.#bytesMax} bytes`, {
        details: { limitBytes: this.#bytesMax, actualBytes: total },
      })
    }
    if (entry.length === 4) {
      if (pending === null) this.#pending = { space, key, parts: [bytes], bytes: total }
      else {
        pending.parts.push(bytes)
        pending.bytes = total
      }
      return null
    }
    if (pending === null) return [space, key, bytes]
    this.#pending = null
    return [space, key, Buffer.concat([...pending.parts, bytes], total)]
  }

  /** Whether a state is waiting for more parts (at the snapshot's end, a protocol error). */
  get pending(): boolean {
    return this.#pending !== null
  }
}

/**
 * Version 7's positional frames, the two a busy link carries nearly all the time (a map with
 * field names cost 27 bytes around one change, and an ack 38 bytes for one moved entry):
 *
 *   [COMPACT_CHANGES, ack, change, change, …]   ack: 1 when the sender waits for acks, else 0;
 *                                               each change its bytes (change.ts), or
 *                                               [its bytes without deps] (link-codec.ts)
 *   [COMPACT_ACK, id, seq, id, seq, …]          the entries that moved, ids as 8 raw bytes
 *
 * Every other frame stays a map with a `type`. On a version 7 link a `changes` or `ack` map is a
 * wrong shape, as is a positional frame on an older link.
 */
export const COMPACT_CHANGES = 1
export const COMPACT_ACK = 2
/**
 * What a change goes as in a version 7 `changes` frame: its bytes, or what a link's codec makes
 * of them (link-codec.ts: `[bytes]`, the bytes without `deps`).
 */
export type EntryOf = (change: Uint8Array) => Uint8Array | [Uint8Array]
/** The bytes of a change from its entry in a `changes` frame (`cut`: `[bytes]`), or a throw. */
export type WholeOf = (entry: Uint8Array, cut: boolean) => Uint8Array

function compactFrame(frame: ChangesMessage | AckMessage, entryOf: EntryOf | undefined): unknown[] {
  if (frame.type === 'changes') {
    const entries: unknown[] = [COMPACT_CHANGES, frame.ack === true ? 1 : 0]
    for (const change of frame.changes)
      entries.push(entryOf === undefined ? encodeChange(change) : entryOf(encodeChange(change)))
    return entries
  }
  const flat: unknown[] = [COMPACT_ACK]
  for (const [node, seq] of Object.entries(frame.vc)) flat.push(rawId(node as NodeId), seq)
  return flat
}

/** A positional frame's message, or null for a wrong shape (each change is decoded by `decodeFrame`). */
function compactMessage(value: unknown[]): Frame | null {
  const [code, flag] = value
  if (code === COMPACT_CHANGES) {
    if (value.length < 3 || (flag !== 0 && flag !== 1)) return null
    const changes = value.slice(2)
    if (!changes.every(isEntry)) return null
    return { type: 'changes', changes: changes as unknown as Change[], ack: flag === 1 }
  }
  if (code !== COMPACT_ACK || value.length % 2 !== 1) return null
  const vc: Record<string, number> = {}
  for (let at = 1; at < value.length; at += 2) {
    const node = nodeIdOf(value[at])
    const seq = value[at + 1]
    if (node === null || !isSeq(seq) || Object.hasOwn(vc, node)) return null
    vc[node] = seq
  }
  return { type: 'ack', vc: vc as VectorClock }
}

/** An entry of a version 7 `changes` frame: a change's bytes, or them without `deps` (`[bytes]`). */
function isEntry(value: unknown): boolean {
  return isBytes(value) || (Array.isArray(value) && value.length === 1 && isBytes(value[0]))
}

/**
 * A frame's bytes on a link of `version` (handshake frames are the same in every version).
 * `entryOf` is a link codec's say on each change of a version 7 `changes` frame (link-codec.ts).
 */
export function encodeFrame(frame: Frame, version = PROTOCOL_VERSION, entryOf?: EntryOf): Uint8Array {
  if ((frame.type === 'changes' || frame.type === 'ack') && version >= 7)
    return encode(compactFrame(frame, entryOf), FRAME_BYTES_MAX)
  // A change goes as the bytes it was encoded to once (change.ts): the frame only wraps them.
  if (frame.type === 'changes' && version >= 6)
    return encode({ type: 'changes', changes: frame.changes.map((change) => encodeChange(change)) }, FRAME_BYTES_MAX)
  // The `ack` flag is version 7's: an older node is never asked.
  if (frame.type === 'changes' && frame.ack !== undefined)
    return encode({ type: 'changes', changes: frame.changes }, FRAME_BYTES_MAX)
  return encode(frame, FRAME_BYTES_MAX)
}

/**
 * Peer frames are plain data: an extension, a BigInt or `undefined` is a decode error (`decodePlain`).
 * `wholeOf` is a link codec's: it gets each entry of a version 7 `changes` frame, in order, and
 * gives the change's bytes; without it, a change without its `deps` is a decode error.
 */
export function decodeFrame(bytes: Uint8Array, version = PROTOCOL_VERSION, wholeOf?: WholeOf): Frame {
  let message: Frame | null = null
  const isFrameOf = (value: unknown): value is Frame => {
    if (Array.isArray(value)) message = version >= 7 ? compactMessage(value) : null
    else message = isFrame(value, version) ? value : null
    return message !== null
  }
  decodePlain(bytes, isFrameOf, 'peer frame', FRAME_BYTES_MAX)
  const frame = message as unknown as Frame
  if (frame.type !== 'changes') return frame
  // Each change is checked field by field and built as fresh objects of known fields only.
  if (version < 6) return { type: 'changes', changes: frame.changes.map(rebuildChange) }
  const entries = frame.changes as unknown as (Uint8Array | [Uint8Array])[]
  const changes = entries.map((entry) => {
    const cut = !isBytes(entry)
    if (cut && wholeOf === undefined)
      throw new MeshError('MESHKV_ERR_DECODE', 'peer frame: a change without its deps outside a link')
    const whole = wholeOf === undefined ? (entry as Uint8Array) : wholeOf(cut ? entry[0] : entry, cut)
    return decodePeerChange(whole, FRAME_BYTES_MAX)
  })
  return frame.ack === undefined ? { type: 'changes', changes } : { type: 'changes', changes, ack: frame.ack }
}

export function isHandshakeMessage(frame: Frame): frame is HandshakeMessage {
  return frame.type === 'challenge' || frame.type === 'hello' || frame.type === 'welcome'
}

/**
 * An authenticated link to one peer, as a transport hands it to the node. Declared here, in the
 * lowest room both `transport/` (which makes links) and `replication/` (which uses them) may
 * import, so the shape is written once.
 */
export interface PeerLink {
  /** The authenticated node id of the other side. */
  readonly nodeId: NodeId
  /** The URL the other side can be dialed at (its own, as it said), or null. */
  readonly url: string | null
  /** `dialed` when this side opened the link, `accepted` when the other did. */
  readonly direction: 'dialed' | 'accepted'
  /** A unique id for this link (a node may have one link per peer at a time). */
  readonly id: string
  /** The protocol version the link runs (`linkVersion`); absent: `PROTOCOL_VERSION`. */
  readonly version?: number
  /**
   * Queues a message. Returns false when the link is closed. A sender that outpaces the link
   * should await `drained()`; a peer that never reads is disconnected (4429) once the queue
   * passes its bound, never grows memory without limit.
   */
  send(message: PeerMessage): boolean
  /** Resolves when the send queue is below its high-water mark (or the link closed). */
  drained(): Promise<void>
  /**
   * Stops (true) or resumes (false) reading what the peer sends: the receiver's backpressure
   * (replication/inbound.ts). Messages already read are still delivered. Optional: a link
   * without it is read as fast as it delivers.
   */
  pauseReading?(paused: boolean): void
  onMessage(listener: (message: PeerMessage) => void): void
  /** Called once when the link ends, for any reason. */
  onClose(listener: (code: number, reason: string) => void): void
  close(code?: number, reason?: string): void
  readonly closed: boolean
}
