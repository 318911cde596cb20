/**
 * Counters over HTTP: `POST /v1/counters/:name` with `{"delta": n}` (1 when the body is empty)
 * adds; `GET /v1/counters/:name` reads (0 for a counter never written).
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import type { AppContext } from './context.js'
import { nameParam } from './auth.js'
import { CAUSAL_TOKEN_HEADER, afterOf } from './encoding.js'
import { useJsonBodies } from './json-body.js'
import { NameParams, ReadQuery, WriteQuery, concernOf, readConcernOf, timeoutOf } from './schemas.js'

const AddBody = Type.Object(
  { delta: Type.Optional(Type.Integer({ not: { const: 0 } })) },
  { additionalProperties: false },
)

export async function counterRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  useJsonBodies(fastify, true)
  // No body at all (or an empty one) is `{}`: add 1. fastify would otherwise validate `undefined`.
  fastify.addHook('preValidation', (request, _reply, done) => {
    if (request.body === undefined) request.body = {}
    done()
  })

  app.post(
    '/v1/counters/:name',
    {
      config: { access: 'write', keyOf: nameParam },
      schema: { params: NameParams, body: AddBody, querystring: WriteQuery },
    },
    async (request, reply) => {
      const name = request.params.name
      const value = await node.counter(name).incr(request.body.delta ?? 1, concernOf(request.query))
      // The counter handle answers with the value only; the node's token right after the write
      // covers the write (and perhaps a little more), which is what a later read needs.
      const token = node.token()
      reply.header(CAUSAL_TOKEN_HEADER, token)
      return { name, value, token }
    },
  )

  const getRoute = {
    config: { access: 'read', keyOf: nameParam },
    schema: { params: NameParams, querystring: ReadQuery },
  } as const
  app.get('/v1/counters/:name', getRoute, async (request) => {
    const name = request.params.name
    const value = await node.counter(name).value({
      after: afterOf(request, request.query),
      timeoutMs: timeoutOf(request.query),
      ...readConcernOf(request.query),
    })
    return { name, value }
  })
}
