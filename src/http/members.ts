/**
 * Membership routes: `GET /v1/members` (the replicated member set, with each member's state as
 * this node sees it), `DELETE /v1/members/:nodeId` (forget a dead member for good), and the
 * members-only `GET /v1/internal/state/:space/*` that quorum reads ask (signed with the cluster
 * secret; see node/quorum.ts).
 */
import type { FastifyInstance } from 'fastify'
import { PEER_AUTH_HEADER, STATE_MEDIA_TYPE } from '../node/index.js'
import type { AppContext } from './context.js'

export async function memberRoutes(app: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const { node } = options.context

  app.get('/v1/members', async () => ({ members: await node.members() }))

  app.delete<{ Params: { nodeId: string } }>('/v1/members/:nodeId', async (request) => {
    await node.forget(request.params.nodeId)
    return { forgotten: request.params.nodeId, members: await node.members() }
  })

  app.get<{ Params: { space: string; '*': string } }>('/v1/internal/state/:space/*', async (request, reply) => {
    const bytes = await node.localState(request.params.space, request.params['*'], request.headers[PEER_AUTH_HEADER])
    return reply.type(STATE_MEDIA_TYPE).send(Buffer.from(bytes))
  })
}
