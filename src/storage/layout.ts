/**
 * The store's on-disk layout in one place: which sublevel holds what, how its keys are made, and
 * the small reads and writes of those records. Every other store file goes through these helpers,
 * so a change of format is a change of this file (and of `STORE_FORMAT`).
 *
 * Keys are UTF-8 strings; values are msgpack unless the table says otherwise.
 *
 * | sublevel          | key                                | value                                |
 * |-------------------|------------------------------------|--------------------------------------|
 * | meta              | `format`                           | utf8 `STORE_FORMAT`                  |
 * | meta              | `nodeId`                           | utf8 node id (16 hex digits)         |
 * | meta              | `lsn`                              | utf8 decimal: the last LSN written   |
 * | meta              | `hlc`                              | `{ wallMs, logical }`                |
 * | meta              | `snapshot`                         | `{ vc, phase }`: a snapshot being    |
 * |                   |                                    | joined (or filled in: phase 0)       |
 * | meta              | `user:<name>`                      | utf8: a node-level fact (`setMeta`)  |
 * | log               | LSN as 16 hex digits               | the change                           |
 * | dots              | `<node>:<seq as 16 hex digits>`    | utf8 decimal LSN of that change (a   |
 * |                   |                                    | sparse index: `isIndexed`)           |
 * | vc                | node id                            | utf8 decimal seq                     |
 * | kv, counter, set  | the user's key                     | the key's state                      |
 * | tombs             | the user's key                     | empty: its kv state was all          |
 * |                   |                                    | tombstones when written              |
 * | stage             | `<space>\0<key>`                   | a state of a snapshot being received |
 *
 * Hex numbers are zero-padded so byte order is numeric order: the log iterates by LSN and the
 * dot index by origin, then seq. A `tombs` entry may outlive its reason (the key was written
 * again); garbage collection checks the state before it purges anything.
 */
import type { Dot, Hlc, NodeId, VectorClock } from '../clock/index.js'
import { HLC_ZERO, isHlc, isNodeId, isVectorClock, nodeIdFromBytes, vcGet, vcNormalize } from '../clock/index.js'
import { decodeChecked, decodeState, encode, encodeState } from '../codec/index.js'
import type { AnyState, RegisterState, Space, StateOf } from '../crdt/index.js'
import { emptyState, isEmptyState } from '../crdt/index.js'
import { MeshError, assert } from '../errors.js'
import type { Backend, BackendReader, BackendWrite, Range, Sub } from './backend.js'

/**
 * Format 2 (meshkv with peer protocol 6): log entries in the compact change format
 * (codec/change.ts). A format-1 store (log entries as MessagePack maps) is read as it is, since
 * `decodeChange` reads both, and marked format 2 when it opens: from then on it holds entries an
 * older meshkv cannot read, and that meshkv refuses it rather than misreading it.
 */
const STORE_FORMAT = '2'
/** Formats this meshkv opens; older ones are marked `STORE_FORMAT` at open. */
const FORMATS_READ: readonly string[] = ['1', STORE_FORMAT]

/** What a node keeps in memory of its durable position: restored from `meta` and `vc` at open. */
export interface StoreHead {
  readonly vc: VectorClock
  readonly lsn: number
  readonly hlc: Hlc
}

// ---------------------------------------------------------------------------------------------
// Key encodings.

/** A key of one space, as one string (the group overlay's and the stage's key). */
export function stateId(space: Space, key: string): string {
  return `${space}\0${key}`
}

export function parseStateId(id: string): { space: Space; key: string } {
  const at = id.indexOf('\0')
  return { space: id.slice(0, at) as Space, key: id.slice(at + 1) }
}

export function lsnKey(lsn: number): string {
  return lsn.toString(16).padStart(16, '0')
}

export function parseLsnKey(key: string): number {
  const lsn = Number.parseInt(key, 16)
  assert(Number.isSafeInteger(lsn) && lsn >= 1, `bad log key ${key}`)
  return lsn
}

export function dotIndexKey(dot: Dot): string {
  return `${dot.node}:${dot.seq.toString(16).padStart(16, '0')}`
}

/** The seq of a dot index key. */
export function parseIndexedSeq(key: string): number {
  return Number.parseInt(key.slice(key.lastIndexOf(':') + 1), 16)
}

/**
 * The dot index is sparse: a change has an entry when it is the first of its origin this store
 * stages since it opened (or after its previous one failed), when the change before it of its
 * origin is more than DOT_INDEX_GAP entries back in the log, and at every DOT_INDEX_STRIDE-th
 * seq. So the changes of an origin between two entries are each at most DOT_INDEX_GAP entries
 * after the one before, and at most DOT_INDEX_STRIDE - 1 of them: finding one is reading the
 * entry at or below it and walking at most DOT_INDEX_STRIDE * DOT_INDEX_GAP log entries
 * (log-reads.ts, `lsnInLog`). An index entry per change was a third of a change's writes (a
 * LevelDB operation and its keys, for a lookup made when a peer's session starts, for status and
 * for garbage collection). An older store's index, with every change in it, is read the same way.
 */
export const DOT_INDEX_STRIDE = 64
export const DOT_INDEX_GAP = 64

/** Whether the change `dot` at `lsn` gets an index entry; `previous` is its origin's change before it, if staged here. */
export function isIndexed(dot: Dot, lsn: number, previous: { seq: number; lsn: number } | undefined): boolean {
  return (
    previous === undefined ||
    previous.seq !== dot.seq - 1 ||
    lsn - previous.lsn > DOT_INDEX_GAP ||
    dot.seq % DOT_INDEX_STRIDE === 0
  )
}

/** The first key any index entry of `node` can have. */
export function dotIndexStart(node: NodeId): string {
  return `${node}:`
}

function userMetaKey(name: string): string {
  return `user:${name}`
}

// ---------------------------------------------------------------------------------------------
// Writes.

export function putUtf8(sub: Sub, key: string, text: string): BackendWrite {
  return { type: 'put', sub, key, value: Buffer.from(text, 'utf8') }
}

const EMPTY_BYTES = new Uint8Array(0)

/** The writes that store a key's new state (and index it when it is all tombstones). */
export function stateWrites(space: Space, key: string, state: AnyState): BackendWrite[] {
  if (isEmptyState(space, state)) return [{ type: 'del', sub: space, key }]
  const put: BackendWrite = { type: 'put', sub: space, key, value: encodeState(state as never) }
  return space === 'kv' && isAllTombstones(state as RegisterState)
    ? [put, { type: 'put', sub: 'tombs', key, value: EMPTY_BYTES }]
    : [put]
}

export function isAllTombstones(state: RegisterState): boolean {
  return state.siblings.length > 0 && state.siblings.every((sibling) => sibling.value === null)
}

/** The entries of `vc` that differ from `before`: the clock is written per origin that moved. */
export function clockWrites(before: VectorClock, vc: VectorClock): BackendWrite[] {
  const writes: BackendWrite[] = []
  for (const [node, seq] of Object.entries(vc) as [NodeId, number][])
    if (seq !== vcGet(before, node)) writes.push(putUtf8('vc', node, String(seq)))
  return writes
}

export function hlcWrite(hlc: Hlc): BackendWrite {
  return { type: 'put', sub: 'meta', key: 'hlc', value: encode(hlc) }
}

export function lsnWrite(lsn: number): BackendWrite {
  return putUtf8('meta', 'lsn', String(lsn))
}

export function userMetaWrite(name: string, value: string): BackendWrite {
  return putUtf8('meta', userMetaKey(name), value)
}

/**
 * Phase 0: a brand-new store's states are being written straight into place (a crash removes
 * them: snapshot-intake.ts); phase 1: keys only this node holds are being joined; phase 2: the
 * staged states are.
 */
export type JoinPhase = 0 | 1 | 2

export function snapshotMarkerWrite(vc: VectorClock, phase: JoinPhase): BackendWrite {
  return { type: 'put', sub: 'meta', key: 'snapshot', value: encode({ vc, phase }) }
}

export const SNAPSHOT_MARKER_DELETE: BackendWrite = { type: 'del', sub: 'meta', key: 'snapshot' }

// ---------------------------------------------------------------------------------------------
// Reads.

async function readUtf8(reader: BackendReader, sub: Sub, key: string): Promise<string | undefined> {
  const bytes = await reader.get(sub, key)
  return bytes === undefined ? undefined : Buffer.from(bytes).toString('utf8')
}

export function readUserMeta(reader: BackendReader, name: string): Promise<string | undefined> {
  return readUtf8(reader, 'meta', userMetaKey(name))
}

export async function readState<S extends Space>(reader: BackendReader, space: S, key: string): Promise<StateOf[S]> {
  const bytes = await reader.get(space, key)
  return bytes === undefined ? emptyState(space) : decodeState(space, bytes)
}

/**
 * The states of `space` in `range`, decoded. The entries are asked of `reader` now, not at the
 * first step, so an iteration reads the view that was current when it was asked for.
 */
export function iterateStates<S extends Space>(
  reader: BackendReader,
  space: S,
  range: Range,
): AsyncIterable<[string, StateOf[S]]> {
  return decodeStates(space, reader.iterate(space, range))
}

async function* decodeStates<S extends Space>(
  space: S,
  entries: AsyncIterable<[string, Uint8Array]>,
): AsyncGenerator<[string, StateOf[S]]> {
  for await (const [key, bytes] of entries) yield [key, decodeState(space, bytes)]
}

/** The LSN a dot index entry holds. */
export function parseIndexedLsn(bytes: Uint8Array): number {
  return Number(Buffer.from(bytes).toString('utf8'))
}

/** The index entry of `dot`'s origin with the greatest seq at most `dot.seq`, if any. */
export async function readIndexFloor(
  reader: BackendReader,
  dot: Dot,
): Promise<{ seq: number; lsn: number } | undefined> {
  const range: Range = { gte: dotIndexStart(dot.node), lte: dotIndexKey(dot), reverse: true, limit: 1 }
  for await (const [key, bytes] of reader.iterate('dots', range))
    return { seq: parseIndexedSeq(key), lsn: parseIndexedLsn(bytes) }
  return undefined
}

export async function readLsn(reader: BackendReader): Promise<number> {
  const text = await readUtf8(reader, 'meta', 'lsn')
  const lsn = text === undefined ? 0 : Number(text)
  if (!Number.isSafeInteger(lsn) || lsn < 0)
    throw new MeshError('MESHKV_ERR_CORRUPT', `the stored log position ${text} is damaged`)
  return lsn
}

export async function readVc(reader: BackendReader): Promise<VectorClock> {
  const entries: [NodeId, number][] = []
  for await (const [node, bytes] of reader.iterate('vc', {})) {
    const seq = Number(Buffer.from(bytes).toString('utf8'))
    if (!isNodeId(node) || !Number.isSafeInteger(seq) || seq < 1)
      throw new MeshError('MESHKV_ERR_CORRUPT', `the stored vector clock entry ${node} is damaged`)
    entries.push([node, seq])
  }
  return vcNormalize(entries)
}

/** The marker of a snapshot join that a crash cut off, if there is one. */
export async function readSnapshotMarker(
  reader: BackendReader,
): Promise<{ vc: VectorClock; phase: JoinPhase } | undefined> {
  const bytes = await reader.get('meta', 'snapshot')
  return bytes === undefined ? undefined : decodeChecked(bytes, isSnapshotMarker, 'snapshot marker')
}

function isSnapshotMarker(value: unknown): value is { vc: VectorClock; phase: JoinPhase } {
  const marker = value as { vc?: unknown; phase?: unknown }
  return (
    typeof value === 'object' &&
    value !== null &&
    isVectorClock(marker.vc) &&
    (marker.phase === 0 || marker.phase === 1 || marker.phase === 2)
  )
}

/**
 * Reads the node's identity and head, making a node id the first time (from `randomBytes`). Data
 * written in a format this meshkv does not read is refused rather than misread; an older format it
 * reads is marked as the current one.
 */
export async function readOrInitMeta(
  backend: Backend,
  randomBytes: (size: number) => Uint8Array,
): Promise<{ nodeId: NodeId; head: StoreHead }> {
  const format = await readUtf8(backend, 'meta', 'format')
  if (format !== undefined && !FORMATS_READ.includes(format)) {
    throw new MeshError(
      'MESHKV_ERR_CORRUPT',
      `the store was written in format ${format}; this meshkv reads formats ${FORMATS_READ.join(' and ')}`,
    )
  }
  if (format !== undefined && format !== STORE_FORMAT)
    await backend.write([putUtf8('meta', 'format', STORE_FORMAT)], { sync: true })
  let nodeId = await readUtf8(backend, 'meta', 'nodeId')
  if (nodeId === undefined) {
    nodeId = nodeIdFromBytes(randomBytes(8))
    await backend.write([putUtf8('meta', 'format', STORE_FORMAT), putUtf8('meta', 'nodeId', nodeId)], { sync: true })
  }
  if (!isNodeId(nodeId))
    throw new MeshError('MESHKV_ERR_CORRUPT', `the stored node id ${JSON.stringify(nodeId)} is damaged`)
  const hlcBytes = await backend.get('meta', 'hlc')
  const hlc = hlcBytes === undefined ? HLC_ZERO : decodeChecked(hlcBytes, isHlc, 'stored clock')
  return { nodeId, head: { vc: await readVc(backend), lsn: await readLsn(backend), hlc } }
}
