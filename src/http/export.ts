/**
 * `GET /v1/export?prefix=&types=kv,counter,set,doc`: a consistent export of this node, streamed as
 * NDJSON (api/export-format.ts; docs/operations.md, "Backup and restore"). It needs `read` on the
 * prefix, as a listing does: without a prefix, a token limited to one is refused. The cluster's
 * reserved sets (members, forgotten members, token hashes) go only to an admin exporting
 * everything, which is what makes the file full and so restorable.
 *
 * The stream is one store snapshot, held until the answer ends; an error midway cuts the
 * connection, and the reader, missing the trailer, knows the file is incomplete. An export under
 * way holds one of the app's `watchStreamsMax` stream places (a full app answers 503
 * `MESHKV_ERR_BUSY`, and `meshkv_http_watch_streams` counts it), and like a watch stream it is
 * ended when the app closes.
 */
import { Readable } from 'node:stream'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { EXPORT_MEDIA_TYPE, parseExportTypes } from '../api/index.js'
import { MeshError } from '../errors.js'
import { prefixQuery, principalOf } from './auth.js'
import type { AppContext } from './context.js'
import { reserveStream } from './watch.js'

const ExportQuery = Type.Object({ prefix: Type.Optional(Type.String()), types: Type.Optional(Type.String()) })

export async function exportRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const { context } = options
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const route = { config: { access: 'read', keyOf: prefixQuery }, schema: { querystring: ExportQuery } } as const
  app.get('/v1/export', route, async (request, reply) => {
    const types = parseExportTypes(request.query.types)
    const prefix = request.query.prefix ?? ''
    const principal = principalOf(request)
    // Auth off (no principal) serves everything anyway; with auth on, only an unlimited admin.
    const reserved = principal === undefined || (principal.role === 'admin' && principal.prefix === null)
    if (context.closing) throw new MeshError('MESHKV_ERR_NOT_READY', 'the node is shutting down')
    const controller = reserveStream(context)
    const stream = Readable.from(context.node.export({ prefix, types, reserved }), { objectMode: false })
    const ended = new Promise<void>((resolve) => stream.once('close', resolve))
    context.streams.set(controller, ended)
    controller.signal.addEventListener('abort', () => stream.destroy())
    void ended.then(() => context.streams.delete(controller))
    reply.type(EXPORT_MEDIA_TYPE)
    return reply.send(stream)
  })
}
