/**
 * The HTTP baseline: a bare fastify server doing what a node's key routes do, with an in-memory
 * Map instead of a node. PUT /v1/kv/* stores the body (any content type, as a Buffer) and answers
 * `{ key, version }`; GET /v1/kv/* answers the bytes with their content type, or 404. No logger.
 * Prints `{"port":N}` once listening.
 */
import Fastify from 'fastify'

const app = Fastify({ logger: false })
const map = new Map<string, { value: Buffer; contentType: string; version: number }>()
let version = 0

app.removeAllContentTypeParsers()
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))

app.put<{ Params: { '*': string }; Body: Buffer | undefined }>('/v1/kv/*', async (request, reply) => {
  const key = request.params['*']
  const entry = {
    value: request.body ?? Buffer.alloc(0),
    contentType: request.headers['content-type'] ?? 'application/octet-stream',
    version: ++version,
  }
  map.set(key, entry)
  reply.header('etag', `"${entry.version}"`)
  return { key, version: String(entry.version) }
})

app.get<{ Params: { '*': string } }>('/v1/kv/*', async (request, reply) => {
  const entry = map.get(request.params['*'])
  if (entry === undefined) return reply.code(404).send({ code: 'NOT_FOUND' })
  reply.header('etag', `"${entry.version}"`)
  return reply.type(entry.contentType).send(entry.value)
})

await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
process.stdout.write(
  `${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`,
)
const stop = (): void => void app.close().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
