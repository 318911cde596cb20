/**
 * The key space over HTTP: `PUT|GET|DELETE /v1/kv/<key>` and `GET /v1/kv` (listing).
 *
 * The key is the rest of the path, percent-decoded, and may hold `/`. Values travel as raw bytes
 * with their own Content-Type, so this scope replaces fastify's body parsers with one catch-all
 * that hands the handler a Buffer (and checks, for a JSON type, that the bytes are JSON).
 * Versions are entity tags: `ETag: "<version>"`, `If-Match`, `If-None-Match`, `X-Context`.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type, type Static } from 'typebox'
import { MeshError, isMeshError } from '../errors.js'
import type { MeshNode } from '../node/index.js'
import type { Entry, SiblingView, WriteResult } from '../node/index.js'
import { BYTES_TYPE, isJsonType } from '../api/media.js'
import { LIST_LIMIT_MAX } from '../node/index.js'
import type { AppContext } from './context.js'
import { keyParam, prefixQuery } from './auth.js'
import type { EncodedValue } from './encoding.js'
import {
  CAUSAL_TOKEN_HEADER,
  afterOf,
  encodeValue,
  entityTag,
  given,
  headerOf,
  parseEntityTags,
  parseVersionHeader,
  toBuffer,
} from './encoding.js'
import {
  FlagString,
  IntegerString,
  WriteQuery,
  afterProperties,
  concernOf,
  queryFlag,
  queryInteger,
  readConcernOf,
  timeoutOf,
} from './schemas.js'

/** How often a write with `If-Match: *` re-reads the key when concurrent writes keep moving its version. */
const IF_MATCH_ANY_ATTEMPTS = 5

const GetQuery = Type.Object({ siblings: Type.Optional(FlagString), ...afterProperties })

const ListQuery = Type.Object({
  prefix: Type.Optional(Type.String()),
  start: Type.Optional(Type.String()),
  end: Type.Optional(Type.String()),
  limit: Type.Optional(IntegerString),
  cursor: Type.Optional(Type.String()),
  reverse: Type.Optional(FlagString),
  ...afterProperties,
})

/** The key is the rest of the path: fastify names a wildcard's match `*`. */
const KeyParams = Type.Object({ '*': Type.String() })

/** Who may call each route (auth.ts), with its schemas; the write route's are inline, for its body limit. */
const listRoute = { config: { access: 'read', keyOf: prefixQuery }, schema: { querystring: ListQuery } } as const
const getRoute = {
  config: { access: 'read', keyOf: keyParam },
  schema: { params: KeyParams, querystring: GetQuery },
} as const
const delRoute = {
  config: { access: 'write', keyOf: keyParam },
  schema: { params: KeyParams, querystring: WriteQuery },
} as const

export async function kvRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  useValueBodies(fastify)

  app.get('/v1/kv', listRoute, async (request) => {
    const query = request.query
    const page = await node.list({
      prefix: query.prefix,
      start: given(query.start),
      end: given(query.end),
      limit: queryInteger(query.limit, 'limit', 1, LIST_LIMIT_MAX),
      cursor: given(query.cursor),
      reverse: queryFlag(query.reverse),
      after: afterOf(request, query),
      timeoutMs: timeoutOf(query),
    })
    return { items: page.items.map(listItem), next: page.next }
  })

  app.get('/v1/kv/*', getRoute, async (request, reply) => {
    const key = request.params['*']
    const siblings = queryFlag(request.query.siblings)
    const entry = await node.get(key, {
      siblings,
      after: afterOf(request, request.query),
      timeoutMs: timeoutOf(request.query),
      ...readConcernOf(request.query),
    })
    if (entry === undefined) throw notFound(key)
    reply.header('etag', entityTag(entry.version))
    if (entry.siblingCount > 1) reply.header('x-siblings', String(entry.siblingCount))
    if (matchesNoneOf(headerOf(request, 'if-none-match'), entry.version)) return reply.code(304).send()
    if (siblings) return { key, version: entry.version, siblings: (entry.siblings ?? []).map(siblingItem) }
    return reply.type(entry.contentType).send(toBuffer(entry.value))
  })

  // The body is the value's bytes, from the catch-all parser above: it has no schema, so its type
  // is given here, and the others are derived from their schemas as everywhere else.
  app.put<{ Body: Buffer | undefined; Params: Static<typeof KeyParams>; Querystring: Static<typeof WriteQuery> }>(
    '/v1/kv/*',
    {
      bodyLimit: node.limits.valueBytesMax,
      config: { access: 'write', keyOf: keyParam },
      schema: { params: KeyParams, querystring: WriteQuery },
    },
    async (request, reply) => {
      const key = request.params['*']
      const concern = concernOf(request.query)
      const ifNoneMatch = parseEntityTags(headerOf(request, 'if-none-match'))
      if (ifNoneMatch !== undefined && ifNoneMatch !== '*')
        throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a write takes only If-None-Match: *')
      const context = parseVersionHeader(headerOf(request, 'x-context'), 'X-Context')
      const contentType = headerOf(request, 'content-type') ?? BYTES_TYPE
      const value = request.body ?? Buffer.alloc(0)
      const result = await withIfMatch(node, key, headerOf(request, 'if-match'), (ifMatch) =>
        node.put(key, value, { contentType, context, ifMatch, ifNoneMatch: ifNoneMatch === '*', ...concern }),
      )
      return sendWritten(reply, { key, version: result.version, token: result.token }, result)
    },
  )

  app.delete('/v1/kv/*', delRoute, async (request, reply) => {
    const key = request.params['*']
    const concern = concernOf(request.query)
    const context = parseVersionHeader(headerOf(request, 'x-context'), 'X-Context')
    const result = await withIfMatch(node, key, headerOf(request, 'if-match'), (ifMatch) =>
      node.del(key, { context, ifMatch, ...concern }),
    )
    if (!result.changed) throw notFound(key)
    return sendWritten(reply, { key, deleted: true, token: result.token }, result)
  })
}

/** One catch-all body parser: a value is its bytes, whatever its content type. */
function useValueBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    try {
      checkJsonBody(request, body as Buffer)
      done(null, body)
    } catch (error) {
      done(error as Error, undefined)
    }
  })
}

/** A body declared as JSON must be JSON (well-formed UTF-8 too), though it is stored as the bytes sent. */
function checkJsonBody(request: FastifyRequest, body: Buffer): void {
  const contentType = headerOf(request, 'content-type')
  if (contentType === undefined || !isJsonType(contentType)) return
  try {
    JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch (error) {
    throw new MeshError(
      'MESHKV_ERR_MALFORMED_JSON',
      `the body is not well-formed JSON but its content type is ${contentType}`,
      { cause: error },
    )
  }
}

function sendWritten(reply: FastifyReply, body: Record<string, unknown>, result: WriteResult): Record<string, unknown> {
  reply.header(CAUSAL_TOKEN_HEADER, result.token)
  reply.header('etag', entityTag(result.version))
  return body
}

/**
 * Runs a write under the request's `If-Match`. A version is passed to the node as it is; `*` only
 * asks that the key exist, so the write is pinned to the version the key has now, and re-read when
 * a concurrent write moved that version in between (the key still exists, so `*` still holds).
 */
async function withIfMatch(
  node: MeshNode,
  key: string,
  header: string | undefined,
  write: (ifMatch: string | undefined) => Promise<WriteResult>,
): Promise<WriteResult> {
  const tags = parseEntityTags(header)
  if (tags === undefined) return write(undefined)
  if (tags !== '*') {
    if (tags.length !== 1) throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'If-Match takes one version or *')
    return write(tags[0])
  }
  for (let attempt = 1; ; attempt++) {
    const entry = await node.get(key)
    if (entry === undefined)
      throw new MeshError('MESHKV_ERR_PRECONDITION_FAILED', `key ${JSON.stringify(key)} does not exist (If-Match: *)`)
    try {
      return await write(entry.version)
    } catch (error) {
      if (!isMeshError(error, 'MESHKV_ERR_PRECONDITION_FAILED') || attempt >= IF_MATCH_ANY_ATTEMPTS) throw error
    }
  }
}

function matchesNoneOf(header: string | undefined, version: string): boolean {
  const tags = parseEntityTags(header)
  if (tags === undefined) return false
  return tags === '*' || tags.includes(version)
}

function notFound(key: string): MeshError {
  return new MeshError('MESHKV_ERR_NOT_FOUND', `key ${JSON.stringify(key)} does not exist`)
}

function listItem(
  entry: Entry,
): { key: string; contentType: string; version: string; siblings: number } & EncodedValue {
  return {
    key: entry.key,
    contentType: entry.contentType,
    version: entry.version,
    siblings: entry.siblingCount,
    ...encodeValue(entry.value, entry.contentType),
  }
}

function siblingItem(sibling: SiblingView): Record<string, unknown> {
  const item = { contentType: sibling.contentType, deleted: sibling.deleted, hlc: sibling.hlc, node: sibling.node }
  if (sibling.value === null || sibling.contentType === null) return item
  return { ...item, ...encodeValue(sibling.value, sibling.contentType) }
}
