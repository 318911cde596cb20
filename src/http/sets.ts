/**
 * Sets over HTTP: `POST /v1/sets/:name` with `{"add": [...], "remove": [...]}` as one atomic
 * change; `GET /v1/sets/:name` lists the members, `?member=x` asks about one.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import type { AppContext } from './context.js'
import { nameParam } from './auth.js'
import { CAUSAL_TOKEN_HEADER, afterOf } from './encoding.js'
import { useJsonBodies } from './json-body.js'
import { NameParams, WriteQuery, afterProperties, concernOf, readConcernOf, timeoutOf } from './schemas.js'

const Members = Type.Array(Type.String())

/** At least one of `add` and `remove`, nothing else. */
const UpdateBody = Type.Object(
  { add: Type.Optional(Members), remove: Type.Optional(Members) },
  { additionalProperties: false, anyOf: [{ required: ['add'] }, { required: ['remove'] }] },
)

const GetQuery = Type.Object({ member: Type.Optional(Type.String()), ...afterProperties })

export async function setRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  useJsonBodies(fastify, false)

  app.post(
    '/v1/sets/:name',
    {
      config: { access: 'write', keyOf: nameParam },
      schema: { params: NameParams, body: UpdateBody, querystring: WriteQuery },
    },
    async (request, reply) => {
      const name = request.params.name
      const set = node.set(name)
      const result = await set.update({ add: request.body.add, remove: request.body.remove }, concernOf(request.query))
      // Read after the write: the members include it (and any write that committed since).
      const current = await set.members()
      reply.header(CAUSAL_TOKEN_HEADER, result.token)
      return { name, members: current, token: result.token }
    },
  )

  const getRoute = {
    config: { access: 'read', keyOf: nameParam },
    schema: { params: NameParams, querystring: GetQuery },
  } as const
  app.get('/v1/sets/:name', getRoute, async (request) => {
    const name = request.params.name
    const read = {
      after: afterOf(request, request.query),
      timeoutMs: timeoutOf(request.query),
      ...readConcernOf(request.query),
    }
    const member = request.query.member
    if (member !== undefined) return { name, member, has: await node.set(name).has(member, read) }
    return { name, members: await node.set(name).members(read) }
  })
}
