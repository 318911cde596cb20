/**
 * How values, versions and causal tokens travel in HTTP: values as JSON, text or base64 by their
 * content type; versions as quoted entity tags; headers read as single strings.
 */
import type { FastifyRequest } from 'fastify'
import { MeshError } from '../errors.js'
import { decodeValue } from '../node/index.js'

export const CAUSAL_TOKEN_HEADER = 'x-causal-token'

/** A value in a JSON answer: parsed JSON for JSON types, text for text types, otherwise base64. */
export type EncodedValue = { value: unknown } | { valueBase64: string }

export function encodeValue(value: Uint8Array, contentType: string): EncodedValue {
  let decoded: unknown
  try {
    decoded = decodeValue({ value, contentType })
  } catch {
    // Bytes stored under a JSON type that do not parse (possible through the embedded API) are
    // shown as what they are rather than failing the whole answer.
    decoded = value
  }
  if (decoded instanceof Uint8Array) return { valueBase64: toBuffer(value).toString('base64') }
  return { value: decoded }
}

/** A Buffer view over the same bytes, without copying. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

export function entityTag(version: string): string {
  return `"${version}"`
}

/**
 * The entity tags of an `If-Match` / `If-None-Match` header: `'*'`, or the versions listed (quotes
 * and a weak `W/` prefix taken off; a bare version is accepted too). `undefined` when absent.
 */
export function parseEntityTags(header: string | undefined): '*' | string[] | undefined {
  if (header === undefined) return undefined
  const text = header.trim()
  if (text === '*') return '*'
  const tags = text
    .split(',')
    .map((tag) => tag.trim().replace(/^W\//, ''))
    .map((tag) => (tag.length >= 2 && tag.startsWith('"') && tag.endsWith('"') ? tag.slice(1, -1) : tag))
  if (tags.some((tag) => tag.length === 0 || tag.includes('"'))) {
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      'an entity tag header must be * or quoted versions separated by commas',
    )
  }
  return tags
}

/** A version sent in a header, quoted or bare (`X-Context`). */
export function parseVersionHeader(header: string | undefined, name: string): string | undefined {
  const tags = parseEntityTags(header)
  if (tags === undefined) return undefined
  if (tags === '*' || tags.length !== 1)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `${name} takes exactly one version`)
  return tags[0]
}

/** One request header as a string (the first, if repeated), `undefined` when absent or empty. */
export function headerOf(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  const first = Array.isArray(value) ? value[0] : value
  return first === undefined || first === '' ? undefined : first
}

/** Query strings send absent fields as empty ones (`?start=`): both mean "not given". */
export function given(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/** The causal token a read waits for: `?after=` first, else the `X-Causal-Token` request header. */
export function afterOf(request: FastifyRequest, query: { after?: string }): string | undefined {
  return given(query.after) ?? headerOf(request, CAUSAL_TOKEN_HEADER)
}
