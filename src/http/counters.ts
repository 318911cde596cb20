/**
 * Counters over HTTP: `POST /v1/counters/:name` with `{"delta": n}` (1 when the body is empty)
 * adds; `GET /v1/counters/:name` reads (0 for a counter never written).
 */
import type { FastifyInstance } from 'fastify'
import type { AppContext } from './context.js'
import { CAUSAL_TOKEN_HEADER, afterOf } from './encoding.js'
import { useJsonBodies } from './json-body.js'
import type { AfterQuery, NameParams, WriteQuery } from './schemas.js'
import { concernOf, nameParams, readConcernOf, readQuery, timeoutOf, writeQuery } from './schemas.js'

const addBody = {
  type: 'object',
  properties: { delta: { type: 'integer', not: { const: 0 } } },
  additionalProperties: false,
} as const

interface AddBody {
  delta?: number
}

export async function counterRoutes(app: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  useJsonBodies(app, true)
  // No body at all (or an empty one) is `{}`: add 1. fastify would otherwise validate `undefined`.
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.body === undefined) request.body = {}
    done()
  })

  app.post<{ Params: NameParams; Body: AddBody; Querystring: WriteQuery }>(
    '/v1/counters/:name',
    { schema: { params: nameParams, body: addBody, querystring: writeQuery } },
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

  app.get<{ Params: NameParams; Querystring: AfterQuery }>(
    '/v1/counters/:name',
    { schema: { params: nameParams, querystring: readQuery } },
    async (request) => {
      const name = request.params.name
      const value = await node
        .counter(name)
        .value({
          after: afterOf(request, request.query),
          timeoutMs: timeoutOf(request.query),
          ...readConcernOf(request.query),
        })
      return { name, value }
    },
  )
}
