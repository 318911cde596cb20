/**
 * The node's document API (the `doc` key space, crdt/doc.ts): the seam that the HTTP routes use
 * and that a Yjs sync room (a websocket provider) can use as it is. A write commits one Yjs
 * update as one change and waits for its write concern like any write; a read returns the state
 * as a Yjs update (or only what a peer with a given state vector lacks), or as JSON.
 */
import * as Y from 'yjs'
import { encodeCausalToken } from '../clock/index.js'
import type { DocIntent, DocState, DocTypeKind } from '../crdt/index.js'
import { docDiff, docHasContent, docJson, docStateVector } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { CommitResult } from '../storage/index.js'
import type { Limits } from './options.js'
import type { ConcernOptions, ReadOptions, WriteResult } from './types.js'
import { checkKey } from './values.js'

export interface DocReadOptions extends ReadOptions {
  /** A Yjs state vector: answer only what a peer holding it lacks (`Y.diffUpdate`). */
  sv?: Uint8Array
}

export interface DocRead {
  /** The state as one Yjs update (v1), or the diff against `sv`. */
  update: Uint8Array
  /** The state vector of the whole state (what a peer needs to ask for the rest). */
  stateVector: Uint8Array
  /** Whether the document holds content that is not deleted (false for one never written or deleted). */
  exists: boolean
}

/** What the document API needs of the node. */
export interface DocParts {
  readonly limits: Limits
  commit(intents: readonly DocIntent[], options: ConcernOptions): Promise<CommitResult>
  read(name: string, options: ReadOptions): Promise<DocState>
}

export function checkDocName(name: unknown, limits: Limits): string {
  return checkKey(name, limits, 'document name')
}

/** Applies a Yjs update (`MESHKV_ERR_DECODE` for bytes that are not one). */
export async function applyDocUpdate(
  parts: DocParts,
  name: string,
  update: Uint8Array,
  options: ConcernOptions = {},
): Promise<WriteResult> {
  checkDocName(name, parts.limits)
  if (!(update instanceof Uint8Array))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a document update is a Uint8Array (a Yjs update, v1)')
  return written(await parts.commit([{ type: 'doc.update', name, update }], options))
}

/** Deletes what this node holds of the document (crdt/doc.ts, "Delete"). */
export async function deleteDoc(parts: DocParts, name: string, options: ConcernOptions = {}): Promise<WriteResult> {
  checkDocName(name, parts.limits)
  return written(await parts.commit([{ type: 'doc.delete', name }], options))
}

export async function readDoc(parts: DocParts, name: string, options: DocReadOptions = {}): Promise<DocRead> {
  checkDocName(name, parts.limits)
  const sv = options.sv
  if (sv !== undefined) checkStateVector(sv)
  const state = await parts.read(name, options)
  return {
    update: sv === undefined ? state.update : docDiff(state, sv),
    stateVector: docStateVector(state),
    exists: docHasContent(state),
  }
}

/** The document's top-level types as JSON (crdt/doc-json.ts), or undefined when it does not exist. */
export async function readDocJson(
  parts: DocParts,
  name: string,
  options: ReadOptions & { types?: ReadonlyMap<string, DocTypeKind> } = {},
): Promise<Record<string, unknown> | undefined> {
  checkDocName(name, parts.limits)
  const state = await parts.read(name, options)
  // Without hints the JSON holds exactly the types with live content: no second load to ask.
  if (options.types === undefined || options.types.size === 0) {
    const json = docJson(state)
    return Object.keys(json).length === 0 ? undefined : json
  }
  return docHasContent(state) ? docJson(state, options.types) : undefined
}

function checkStateVector(sv: Uint8Array): void {
  try {
    Y.decodeStateVector(sv)
  } catch (error) {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'sv is not a Yjs state vector', { cause: error })
  }
}

function written(result: CommitResult): WriteResult {
  return { version: String(result.lsn), token: encodeCausalToken(result.vc), changed: result.change !== null }
}
