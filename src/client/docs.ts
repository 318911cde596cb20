/**
 * The requests and answers of the client's document calls (`/v1/docs/:name`, src/http/docs.ts),
 * kept apart from `MeshClient` so it stays a list of calls. An update is idempotent (the Yjs
 * merge is), so a post is retried on the next node like a read; a delete removes what the node
 * that takes it holds, so it is not.
 */
import { BYTES_TYPE } from '../api/index.js'
import { MeshError } from '../errors.js'
import { concernQuery, namePath, readQuery } from './paths.js'
import type { RequestSpec } from './transport.js'
import type { ClientConcernOptions, ClientDocTypeKind, ClientDocReadOptions, ClientDocWriteResult } from './types.js'
import { booleanField, stringField } from './wire.js'

type Headers = Record<string, string | undefined>

/** `GET` of the state as an update (`sv`: only what its holder lacks) or, with `types`, as JSON. */
export function docReadSpec(
  name: string,
  options: ClientDocReadOptions & { format: 'update' | 'json'; types?: Readonly<Record<string, ClientDocTypeKind>> },
  headers: Headers,
): RequestSpec {
  if (options.sv !== undefined && !(options.sv instanceof Uint8Array))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'sv is a Yjs state vector (a Uint8Array)')
  const sv = options.sv === undefined ? undefined : Buffer.from(options.sv).toString('base64url')
  const types = options.types === undefined ? [] : Object.entries(options.types)
  return {
    method: 'GET',
    path: namePath('docs', name),
    query: {
      format: options.format === 'json' ? 'json' : undefined,
      sv,
      types: types.length === 0 ? undefined : types.map(([type, kind]) => `${type}:${kind}`).join(','),
      ...readQuery(options),
    },
    headers,
    idempotent: true,
    signal: options.signal,
  }
}

/** `POST` of one update, or `DELETE`. */
export function docWriteSpec(name: string, update: Uint8Array | null, options: ClientConcernOptions): RequestSpec {
  if (update !== null && (!(update instanceof Uint8Array) || update.length === 0))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a document update is a non-empty Uint8Array (a Yjs update)')
  return {
    method: update === null ? 'DELETE' : 'POST',
    path: namePath('docs', name),
    query: concernQuery(options),
    ...(update === null ? {} : { headers: { 'content-type': BYTES_TYPE }, body: update }),
    idempotent: update !== null,
    signal: options.signal,
  }
}

export function docWritten(body: Record<string, unknown>): ClientDocWriteResult {
  return { name: stringField(body, 'name'), changed: booleanField(body, 'changed'), token: stringField(body, 'token') }
}
