/**
 * A local document write as an op (see crdt/intent.ts): checks an update against the limits and
 * turns a delete into the Yjs update that deletes what the node holds (crdt/doc.ts).
 */
import { MeshError } from '../errors.js'
import type { DocState, DocUpdateOp } from './doc.js'
import { DOC_BYTES_MAX, DOC_UPDATE_BYTES_MAX, applyDoc, docDeleteUpdate, isYjsUpdate, updateIdentity } from './doc.js'
import { tooLarge } from './intent.js'

export type DocIntent =
  | { readonly type: 'doc.update'; readonly name: string; readonly update: Uint8Array }
  | { readonly type: 'doc.delete'; readonly name: string }

/**
 * The op for a document intent, or `null` when it changes nothing: an update the document
 * already holds (same structs, same deletes), or a delete of a document with nothing left.
 * Throws `MESHKV_ERR_DECODE` for bytes that are not a Yjs update, `MESHKV_ERR_VALUE_TOO_LARGE`
 * for an update past its limit, `MESHKV_ERR_STATE_TOO_LARGE` for one that would grow the
 * document past its limit.
 */
export function prepareDocOp(intent: DocIntent, state: DocState): DocUpdateOp | null {
  if (intent.type === 'doc.delete') {
    const update = docDeleteUpdate(state)
    return update === null ? null : { type: 'doc.update', name: intent.name, update }
  }
  const update = intent.update
  if (update.length > DOC_UPDATE_BYTES_MAX)
    throw new MeshError(
      'MESHKV_ERR_VALUE_TOO_LARGE',
      `a document update may hold at most ${DOC_UPDATE_BYTES_MAX} bytes; got ${update.length}`,
      { details: { limitBytes: DOC_UPDATE_BYTES_MAX, actualBytes: update.length } },
    )
  if (!isYjsUpdate(update))
    throw new MeshError('MESHKV_ERR_DECODE', `document ${JSON.stringify(intent.name)}: the body is not a Yjs update`)
  const op: DocUpdateOp = { type: 'doc.update', name: intent.name, update }
  const after = mergedOrRefused(intent.name, state, op)
  if (JSON.stringify(updateIdentity(after.update)) === JSON.stringify(updateIdentity(state.update))) return null
  // A state merged from several nodes may be past the limit: an update that does not grow it is let through.
  if (after.update.length > DOC_BYTES_MAX && after.update.length > state.update.length)
    throw tooLarge('bytes', intent.name, DOC_BYTES_MAX, after.update.length)
  return op
}

/** The state after `op`; bytes that decode but do not merge are the client's error, not ours. */
function mergedOrRefused(name: string, state: DocState, op: DocUpdateOp): DocState {
  try {
    return applyDoc(state, op)
  } catch (error) {
    throw new MeshError('MESHKV_ERR_DECODE', `document ${JSON.stringify(name)}: the update does not merge`, {
      cause: error,
    })
  }
}
