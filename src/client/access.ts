/**
 * What the client needs to get into a cluster that keeps strangers out: the bearer token it sends
 * with every request, a TLS dispatcher that trusts the cluster's own CA, and the token routes'
 * requests and answers (`/v1/tokens`).
 *
 * The token is a secret: no error made here (or anywhere in the client) quotes it.
 */
import type { AccessRole, CreatedToken, TokenInfo } from '../api/index.js'
import { isAccessRole } from '../api/index.js'
import { MeshError } from '../errors.js'
import { asRecord, malformed, stringField } from './wire.js'

/** Longer than any token a node makes by far; longer is a mistake (a whole file pasted). */
export const TOKEN_CHARS_MAX = 4096

/** The `Authorization` header of every request, or none without a token. */
export function authHeaders(token: unknown): Record<string, string> {
  if (token === undefined) return {}
  // Visible ASCII only: a header cannot carry anything else, and a space or line break is a
  // copy-paste accident (a token file's trailing newline is trimmed before it gets here).
  if (
    typeof token !== 'string' ||
    token.length === 0 ||
    token.length > TOKEN_CHARS_MAX ||
    !/^[\x21-\x7e]+$/.test(token)
  )
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `token must be 1 to ${TOKEN_CHARS_MAX} visible ASCII characters (no spaces or line breaks)`,
    )
  return { authorization: `Bearer ${token}` }
}

/** Checks `ca` (PEM text or its bytes) and returns it as text, or undefined without one. */
export function caText(ca: unknown): string | undefined {
  if (ca === undefined) return undefined
  const text = typeof ca === 'string' ? ca : ca instanceof Uint8Array ? new TextDecoder().decode(ca) : undefined
  if (text === undefined || !text.includes('-----BEGIN CERTIFICATE-----'))
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      'ca must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)',
    )
  return text
}

/** What `fetch` takes as `dispatcher` (the type of the undici that Node bundles). */
export type FetchDispatcher = NonNullable<RequestInit['dispatcher']>

/**
 * A dispatcher for `fetch` that trusts `ca` (in place of the system's CAs) for https nodes.
 * undici is loaded only here, so a client without a CA does not pay for loading it (a fifth of a
 * second). The package's undici is newer than Node 20's bundled one, whose types `RequestInit`
 * uses; its Agent still speaks the dispatch protocol Node 20's fetch calls (the https tests use
 * exactly that pair), hence the cast.
 */
export async function caDispatcher(ca: string): Promise<FetchDispatcher> {
  const { Agent } = await import('undici')
  return new Agent({ connect: { ca } }) as unknown as FetchDispatcher
}

export interface CreateTokenRequest {
  role: AccessRole
  prefix?: string
  name?: string
}

/** The JSON body of `POST /v1/tokens`, checked before it goes out. */
export function createTokenBody(options: CreateTokenRequest): string {
  if (typeof options !== 'object' || options === null || !isAccessRole(options.role))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a token role is read, write or admin')
  for (const field of ['prefix', 'name'] as const) {
    const value = options[field]
    if (value !== undefined && typeof value !== 'string')
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `a token ${field} is a string`)
  }
  const { role, prefix, name } = options
  return JSON.stringify({ role, ...(prefix === undefined ? {} : { prefix }), ...(name === undefined ? {} : { name }) })
}

/** `/v1/tokens/<id>`. */
export function tokenPath(id: string): string {
  if (typeof id !== 'string' || id.length === 0)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a token id is a non-empty string')
  return `/v1/tokens/${encodeURIComponent(id)}`
}

export function tokenInfoOf(raw: unknown): TokenInfo {
  const record = asRecord(raw, 'a token')
  const role = record['role']
  if (!isAccessRole(role)) throw malformed('a token role is not read, write or admin')
  return {
    id: stringField(record, 'id'),
    role,
    prefix: nullableString(record, 'prefix'),
    name: nullableString(record, 'name'),
    createdAt: stringField(record, 'createdAt'),
  }
}

export function createdTokenOf(raw: unknown): CreatedToken {
  const record = asRecord(raw, 'the created token')
  return { ...tokenInfoOf(record), token: stringField(record, 'token') }
}

export function tokenListOf(body: Record<string, unknown>): TokenInfo[] {
  const tokens = body['tokens']
  if (!Array.isArray(tokens)) throw malformed('tokens is not a list')
  return tokens.map(tokenInfoOf)
}

function nullableString(record: Record<string, unknown>, field: string): string | null {
  const value = record[field]
  if (value === null || value === undefined) return null
  if (typeof value !== 'string') throw malformed(`the field ${field} is not a string or null`)
  return value
}
