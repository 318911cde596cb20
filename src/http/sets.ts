/**
 * Sets over HTTP: `POST /v1/sets/:name` with `{"add": [...], "remove": [...]}` as one atomic
 * change; `GET /v1/sets/:name` lists the members, `?member=x` asks about one.
 */
import type { FastifyInstance } from 'fastify'
import type { AppContext } from './context.js'
import { CAUSAL_TOKEN_HEADER, afterOf } from './encoding.js'
import { useJsonBodies } from './json-body.js'
import type { AfterQuery, NameParams, WriteQuery } from './schemas.js'
import { afterProperties, concernOf, nameParams, readConcernOf, timeoutOf, writeQuery } from './schemas.js'

const members = { type: 'array', items: { type: 'string' } } as const

const updateBody = {
  type: 'object',
  properties: { add: members, remove: members },
  additionalProperties: false,
  anyOf: [{ required: ['add'] }, { required: ['remove'] }],
} as const

interface UpdateBody {
  add?: string[]
  remove?: string[]
}

const getQuery = {
  type: 'object',
  properties: { member: { type: 'string' }, ...afterProperties },
} as const

interface GetQuery extends AfterQuery {
  member?: string
}

export async function setRoutes(app: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  useJsonBodies(app, false)

  app.post<{ Params: NameParams; Body: UpdateBody; Querystring: WriteQuery }>(
    '/v1/sets/:name',
    { schema: { params: nameParams, body: updateBody, querystring: writeQuery } },
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

  app.get<{ Params: NameParams; Querystring: GetQuery }>(
    '/v1/sets/:name',
    { schema: { params: nameParams, querystring: getQuery } },
    async (request) => {
      const name = request.params.name
      const read = {
        after: afterOf(request, request.query),
        timeoutMs: timeoutOf(request.query),
        ...readConcernOf(request.query),
      }
      const member = request.query.member
      if (member !== undefined) return { name, member, has: await node.set(name).has(member, read) }
      return { name, members: await node.set(name).members(read) }
    },
  )
}
