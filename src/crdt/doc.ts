/**
 * The `doc` key space: a Yjs document. Its state is one Yjs update (format v1) that holds every
 * update applied to it, merged; an op carries one Yjs update; apply and join are both the Yjs
 * merge (`Y.mergeUpdates`), which is commutative, associative and idempotent over the document's
 * structs and delete set. So the join needs no causal context: a doc is a grow-only union, and
 * a snapshot that lacks a doc leaves it as it is (storage/snapshot-join.ts, `joinAbsent`).
 *
 * Delete: a delete is itself a Yjs update, made at the origin from the state it holds: a delete
 * set covering every item it holds. Like a set's observed remove, it removes what its writer
 * saw; an update concurrent with it (not in its state) survives, and a later update re-creates
 * the document. The state keeps its struct ids (a Yjs client that still holds the document must
 * be able to sync against it), so a deleted document stays as a small tombstone.
 *
 * Compaction: `Y.mergeUpdates` keeps deleted content; loading the state into a `Y.Doc` with gc
 * and encoding it again replaces deleted content by GC ranges. That costs a full load, so a
 * state is compacted when it has doubled since its last compaction (`base`): the cost stays
 * proportional to the bytes written. Compacted and uncompacted states are the same document
 * (same structs, same deletes), so nodes that compacted at different times still agree: the
 * digest compares `docIdentity`, never the bytes.
 */
import * as Y from 'yjs'

export interface DocState {
  /** The merged Yjs update (v1). */
  readonly update: Uint8Array
  /** Size of `update` right after its last compaction: local bookkeeping, not document content. */
  readonly base: number
}

export interface DocUpdateOp {
  readonly type: 'doc.update'
  readonly name: string
  /** A Yjs update (v1). */
  readonly update: Uint8Array
}

/** The empty Yjs update: no structs, empty delete set. */
const EMPTY_UPDATE = Uint8Array.of(0, 0)

export const DOC_EMPTY: DocState = Object.freeze({ update: EMPTY_UPDATE, base: EMPTY_UPDATE.length })

/** States are compacted once past this size and twice their size after the last compaction. */
const COMPACT_BYTES_MIN = 16 * 1024

/**
 * Per-key limits a local update may not push a document past (docs/consistency.md, "Per-key
 * limits"); one update is also bounded so it fits one change. Merges are never refused.
 */
export const DOC_BYTES_MAX = 8 * 1024 * 1024
export const DOC_UPDATE_BYTES_MAX = 1024 * 1024

export function applyDoc(state: DocState, op: DocUpdateOp): DocState {
  return mergeDocUpdate(state, op.update)
}

export function joinDoc(a: DocState, b: DocState): DocState {
  if (isEmptyUpdate(b.update)) return a
  if (isEmptyUpdate(a.update)) return b
  return mergeDocUpdate(a, b.update)
}

function mergeDocUpdate(state: DocState, update: Uint8Array): DocState {
  if (isEmptyUpdate(update)) return state
  const merged = isEmptyUpdate(state.update) ? Y.mergeUpdates([update]) : Y.mergeUpdates([state.update, update])
  if (merged.length < COMPACT_BYTES_MIN || merged.length < 2 * state.base) return { update: merged, base: state.base }
  return compactDoc({ update: merged, base: state.base })
}

/** The same document with deleted content dropped (GC ranges in its place). */
export function compactDoc(state: DocState): DocState {
  const doc = loadDoc(state.update)
  const update = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return { update, base: update.length }
}

export function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 2 && update[0] === 0 && update[1] === 0
}

/** Whether `bytes` decode as a Yjs update, without loading it (for stored states). Never throws. */
export function decodesAsYjsUpdate(bytes: Uint8Array): boolean {
  try {
    Y.decodeUpdate(bytes)
    return true
  } catch {
    return false
  }
}

/**
 * Whether `bytes` are a Yjs update (v1) that a Y.Doc takes: some damaged updates decode as
 * structs yet fail to load, and one of those merged into a state would break every later read
 * of it. Costs a load of the update alone. Never throws.
 */
export function isYjsUpdate(bytes: Uint8Array): boolean {
  let doc: Y.Doc | undefined
  try {
    Y.decodeUpdate(bytes)
    doc = loadDoc(bytes)
    return true
  } catch {
    return false
  } finally {
    doc?.destroy()
  }
}

export function loadDoc(update: Uint8Array): Y.Doc {
  const doc = new Y.Doc({ gc: true })
  Y.applyUpdate(doc, update)
  return doc
}

type Range = [clock: number, len: number]

export type DocIdentity = [client: number, held: Range[], deleted: Range[]][]

/**
 * What makes a document what it is, independent of how its bytes were merged or compacted: per
 * client, the clock ranges of the structs it holds and the ranges deleted. Two states with equal
 * identities are the same document (a struct id names its content for good). The state is
 * loaded into a Y.Doc first: Yjs deletes some items implicitly as it integrates them (a map
 * value overwritten concurrently), which a merged update does not yet record. Costs a full load.
 */
export function docIdentity(state: DocState): DocIdentity {
  return updateIdentity(compactDoc(state).update)
}

/**
 * The identity as the update's bytes record it, without loading it: equal for every state that
 * was merged from the same updates, and unchanged by an update the state already holds.
 */
export function updateIdentity(update: Uint8Array): DocIdentity {
  const { structs, ds } = Y.decodeUpdate(update)
  const held = new Map<number, Range[]>()
  const deleted = new Map<number, Range[]>()
  const add = (map: Map<number, Range[]>, client: number, range: Range): void => {
    const list = map.get(client) ?? []
    list.push(range)
    map.set(client, list)
  }
  for (const struct of structs) {
    if (struct instanceof Y.Skip) continue
    add(held, struct.id.client, [struct.id.clock, struct.length])
    if (struct instanceof Y.GC) add(deleted, struct.id.client, [struct.id.clock, struct.length])
  }
  for (const [client, items] of ds.clients) for (const item of items) add(deleted, client, [item.clock, item.len])
  const clients = [...new Set([...held.keys(), ...deleted.keys()])].sort((a, b) => a - b)
  return clients.map((client) => [client, normalize(held.get(client) ?? []), normalize(deleted.get(client) ?? [])])
}

/** Sorted, overlapping and touching ranges merged. */
function normalize(ranges: Range[]): Range[] {
  const out: Range[] = []
  for (const [clock, len] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1]
    if (last !== undefined && clock <= last[0] + last[1]) last[1] = Math.max(last[1], clock + len - last[0])
    else if (len > 0) out.push([clock, len])
  }
  return out
}

/**
 * Whether the document holds any content that is not deleted. The bytes' own delete set is a
 * part of the real one, so "all deleted" there is final; otherwise a load settles it.
 */
export function docHasContent(state: DocState): boolean {
  if (isEmptyUpdate(state.update)) return false
  const live = (identity: DocIdentity): boolean => identity.some(([, held, deleted]) => !covers(deleted, held))
  return live(updateIdentity(state.update)) && live(docIdentity(state))
}

/** Whether `outer` (normalized) covers every range of `inner`. */
function covers(outer: readonly Range[], inner: readonly Range[]): boolean {
  return inner.every(([clock, len]) => outer.some(([start, size]) => start <= clock && clock + len <= start + size))
}

/**
 * The update a delete of the whole document writes: a delete set over every item `state` holds,
 * and nothing else. `null` when nothing is left to delete.
 */
export function docDeleteUpdate(state: DocState): Uint8Array | null {
  const doc = loadDoc(state.update)
  let update: Uint8Array | null = null
  doc.on('update', (bytes: Uint8Array) => {
    update = bytes
  })
  doc.transact((transaction) => {
    for (const structs of doc.store.clients.values()) {
      for (const struct of structs) if (struct instanceof Y.Item && !struct.deleted) struct.delete(transaction)
    }
  })
  doc.destroy()
  return update
}

/** The part of the state a peer that has state vector `sv` lacks (`Y.diffUpdate`). */
export function docDiff(state: DocState, sv: Uint8Array): Uint8Array {
  return Y.diffUpdate(state.update, sv)
}

export function docStateVector(state: DocState): Uint8Array {
  return Y.encodeStateVectorFromUpdate(state.update)
}
