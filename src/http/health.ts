/**
 * Health for orchestrators and people: `/livez` (the process answers), `/readyz` (the node takes
 * requests: open, and the app not shutting down), `/v1/status` (the node's own account as JSON).
 */
import type { FastifyInstance } from 'fastify'
import { MeshError } from '../errors.js'
import type { AppContext } from './context.js'

export async function healthRoutes(app: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const context = options.context
  const live = async (): Promise<{ status: 'ok' }> => ({ status: 'ok' })
  const open = { config: { access: 'open' } } as const
  app.get('/livez', open, live)
  // Kubernetes names /livez; /healthz is kept for tools that expect it. Both answer the same.
  app.get('/healthz', open, live)

  app.get('/readyz', open, async () => {
    if (context.closing) throw new MeshError('MESHKV_ERR_NOT_READY', 'the node is shutting down')
    if (!context.node.ready) throw new MeshError('MESHKV_ERR_NOT_READY', 'the node is not ready')
    return { ready: true }
  })

  app.get('/v1/status', { config: { access: 'admin' } }, async () => ({
    ...context.node.status(),
    peers: await context.node.peers(),
    gc: await context.node.gcStatus(),
  }))

  // A hash of the whole state: equal on two nodes exactly when their states are equal.
  app.get('/v1/digest', { config: { access: 'admin' } }, async () => {
    const { digest, vc, keys } = await context.node.digest()
    return { digest, vc, keys }
  })
}
