/**
 * Yjs documents over HTTP (the `doc` key space, crdt/doc.ts):
 * - `GET /v1/docs/:name`: the state as one Yjs update (`application/octet-stream`); with
 *   `?sv=<base64 state vector>` only what a peer holding that state vector lacks; with
 *   `?format=json` the top-level types as JSON (`?types=body:text,meta:map` names their kinds,
 *   crdt/doc-json.ts). The state vector of the whole state rides in `X-State-Vector` (base64).
 *   A document with no live content (never written, or deleted) is a 404.
 * - `POST /v1/docs/:name`: applies the body, a Yjs update (v1), as one change.
 * - `DELETE /v1/docs/:name`: deletes the content this node holds (an update written
 *   concurrently elsewhere stays: the delete is an observed remove).
 * Reads take `after`, `timeout_ms` and `r`; writes `w` and `timeout_ms`, as on every route.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { Type, type Static } from 'typebox'
import { MeshError } from '../errors.js'
import type { WriteResult } from '../node/index.js'
import { DOC_UPDATE_BYTES_MAX, parseTypeHints } from '../node/index.js'
import { BYTES_TYPE } from '../api/media.js'
import type { AppContext } from './context.js'
import { nameParam } from './auth.js'
import { CAUSAL_TOKEN_HEADER, afterOf, given, toBuffer } from './encoding.js'
import { NameParams, WriteQuery, afterProperties, concernOf, readConcernOf, timeoutOf } from './schemas.js'

export const STATE_VECTOR_HEADER = 'x-state-vector'

const GetQuery = Type.Object({
  sv: Type.Optional(Type.String({ maxLength: 1024 * 1024 })),
  format: Type.Optional(Type.Enum(['json', 'update'])),
  types: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
  ...afterProperties,
})

/** Room for a whole update: the node refuses one past DOC_UPDATE_BYTES_MAX with a clear error. */
const BODY_BYTES_MAX = DOC_UPDATE_BYTES_MAX + 1024

export async function docRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  // The body is a Yjs update whatever its declared type (clients send octet-stream, or nothing).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))

  const getRoute = {
    config: { access: 'read', keyOf: nameParam },
    schema: { params: NameParams, querystring: GetQuery },
  } as const
  app.get('/v1/docs/:name', getRoute, async (request, reply) => {
    const name = request.params.name
    const query = request.query
    const read = { after: afterOf(request, query), timeoutMs: timeoutOf(query), ...readConcernOf(query) }
    if (query.format === 'json') {
      if (query.sv !== undefined) throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'sv is for format=update only')
      const types = given(query.types) === undefined ? undefined : parseTypeHints(query.types as string)
      const json = await node.docJson(name, { ...read, ...(types === undefined ? {} : { types }) })
      if (json === undefined) throw notFound(name)
      return json
    }
    const sv = given(query.sv) === undefined ? undefined : fromBase64(query.sv as string)
    const doc = await node.docState(name, { ...read, ...(sv === undefined ? {} : { sv }) })
    if (!doc.exists) throw notFound(name)
    reply.header(STATE_VECTOR_HEADER, Buffer.from(doc.stateVector).toString('base64'))
    return reply.type(BYTES_TYPE).send(toBuffer(doc.update))
  })

  app.post<{ Body: Buffer | undefined; Params: Static<typeof NameParams>; Querystring: Static<typeof WriteQuery> }>(
    '/v1/docs/:name',
    {
      bodyLimit: BODY_BYTES_MAX,
      config: { access: 'write', keyOf: nameParam },
      schema: { params: NameParams, querystring: WriteQuery },
    },
    async (request, reply) => {
      const name = request.params.name
      const body = request.body
      if (body === undefined || body.length === 0)
        throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'the body must be a Yjs update (v1)')
      const result = await node.applyDocUpdate(name, body, concernOf(request.query))
      return written(reply, name, result)
    },
  )

  const delRoute = {
    config: { access: 'write', keyOf: nameParam },
    schema: { params: NameParams, querystring: WriteQuery },
  } as const
  app.delete('/v1/docs/:name', delRoute, async (request, reply) => {
    const name = request.params.name
    return written(reply, name, await node.deleteDoc(name, concernOf(request.query)))
  })
}

function written(reply: FastifyReply, name: string, result: WriteResult): Record<string, unknown> {
  reply.header(CAUSAL_TOKEN_HEADER, result.token)
  return { name, changed: result.changed, token: result.token }
}

/** Standard or URL-safe base64, padded or not; anything else is refused rather than half-read. */
function fromBase64(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'sv must be a base64 Yjs state vector')
  return Buffer.from(text, 'base64')
}

function notFound(name: string): MeshError {
  return new MeshError('MESHKV_ERR_NOT_FOUND', `document ${JSON.stringify(name)} does not exist`)
}
