/**
 * Client tokens over HTTP (admin only): `POST /v1/tokens` `{"role", "prefix"?, "name"?}` makes one
 * and answers 201 with the token, shown this once; `GET /v1/tokens` lists them (never a secret);
 * `DELETE /v1/tokens/:id` revokes one on every node. Tokens live in the cluster (node/tokens.ts).
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ACCESS_ROLES } from '../api/access.js'
import { prefixBody } from './auth.js'
import type { AppContext } from './context.js'
import { useJsonBodies } from './json-body.js'
import { WriteQuery, concernOf } from './schemas.js'

const CreateBody = Type.Object(
  {
    role: Type.Enum([...ACCESS_ROLES]),
    prefix: Type.Optional(Type.String()),
    name: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
)

const TokenParams = Type.Object({ id: Type.String() })

export async function tokenRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const node = options.context.node
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  useJsonBodies(fastify, false)

  app.post(
    '/v1/tokens',
    { config: { access: 'admin', keyOf: prefixBody }, schema: { body: CreateBody, querystring: WriteQuery } },
    async (request, reply) => {
      const { role, prefix, name } = request.body
      const created = await node.tokens.create({ role, prefix, name }, concernOf(request.query))
      return reply.code(201).send(created)
    },
  )

  app.get('/v1/tokens', { config: { access: 'admin' } }, async () => ({ tokens: await node.tokens.list() }))

  app.delete(
    '/v1/tokens/:id',
    { config: { access: 'admin' }, schema: { params: TokenParams, querystring: WriteQuery } },
    async (request) => {
      await node.tokens.revoke(request.params.id, concernOf(request.query))
      return { revoked: request.params.id }
    },
  )
}
