/**
 * Membership routes: `GET /v1/members` (the replicated member set, with each member's state as
 * this node sees it), `DELETE /v1/members/:nodeId` (forget a dead member for good; one that looks
 * alive only with `?force=true`), and the members-only `GET /v1/internal/state/:space/*` that
 * quorum reads ask (signed with the cluster secret; see node/quorum.ts).
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { PEER_AUTH_HEADER, STATE_MEDIA_TYPE } from '../node/index.js'
import type { AppContext } from './context.js'
import { FlagString, queryFlag } from './schemas.js'

const MemberParams = Type.Object({ nodeId: Type.String() })
/** `?force=true` forgets a member that still looks alive (linked, or heard from recently). */
const ForgetQuery = Type.Object({ force: Type.Optional(FlagString) })
const StateParams = Type.Object({ space: Type.String(), '*': Type.String() })

export async function memberRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const { node } = options.context
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()

  app.get('/v1/members', { config: { access: 'admin' } }, async () => ({ members: await node.members() }))

  const forgetRoute = {
    config: { access: 'admin' },
    schema: { params: MemberParams, querystring: ForgetQuery },
  } as const
  app.delete('/v1/members/:nodeId', forgetRoute, async (request) => {
    await node.forget(request.params.nodeId, { force: queryFlag(request.query.force) })
    return { forgotten: request.params.nodeId, members: await node.members() }
  })

  // Open to clients' auth: peers sign these requests with the cluster secret (node/quorum.ts).
  const stateRoute = { config: { access: 'open' }, schema: { params: StateParams } } as const
  app.get('/v1/internal/state/:space/*', stateRoute, async (request, reply) => {
    const bytes = await node.localState(request.params.space, request.params['*'], request.headers[PEER_AUTH_HEADER])
    return reply.type(STATE_MEDIA_TYPE).send(Buffer.from(bytes))
  })
}
