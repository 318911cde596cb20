/**
 * `GET /v1/watch?prefix=&since=`: the node's changes as server-sent events.
 *
 *     id: <cursor>\nevent: <put|del|counter|set.add|set.remove|doc>\ndata: <WatchEvent as JSON>\n\n
 *
 * A `doc` event's `update` (a Yjs update) is base64.
 *
 * A client resumes with `Last-Event-ID` (or `?since=`) set to the last `id` it saw. An idle stream
 * sends `: heartbeat` comments so proxies keep it open and clients notice a dead node. An error
 * after the stream began ends it with `event: error` and a problem as data. The stream stops
 * following the node when the client goes away, and when the app closes.
 */
import type { ServerResponse } from 'node:http'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { MeshError } from '../errors.js'
import type { MeshNode } from '../node/index.js'
import type { WatchEvent } from '../node/index.js'
import { decodeWatchCursor } from '../node/index.js'
import type { AppContext } from './context.js'
import { prefixQuery } from './auth.js'
import { CAUSAL_TOKEN_HEADER, encodeValue, given, headerOf } from './encoding.js'
import { problemOf } from './problems.js'

export const WATCH_ROUTE = '/v1/watch'
/** Longest wait for the node to say whether a resume cursor is still in its log. */
const CURSOR_CHECK_MS_MAX = 1000

const WatchQuery = Type.Object({ prefix: Type.Optional(Type.String()), since: Type.Optional(Type.String()) })

/**
 * A place among the app's watch streams, or `MESHKV_ERR_BUSY` when all `watchStreamsMax` are
 * taken. An export under way (export.ts) holds one too: both are long answers a client keeps open.
 */
export function reserveStream(context: AppContext): AbortController {
  if (context.streams.size >= context.watchStreamsMax) {
    context.load.refused.watch++
    throw new MeshError(
      'MESHKV_ERR_BUSY',
      `this node already serves ${context.watchStreamsMax} watch streams (the most it keeps open); retry later`,
      { details: { resource: 'watch', max: context.watchStreamsMax } },
    )
  }
  const controller = new AbortController()
  context.streams.set(controller, Promise.resolve())
  return controller
}

export async function watchRoutes(fastify: FastifyInstance, options: { context: AppContext }): Promise<void> {
  const context = options.context
  const node = context.node
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()

  const watchRoute = { config: { access: 'read', keyOf: prefixQuery }, schema: { querystring: WatchQuery } } as const
  app.get(WATCH_ROUTE, watchRoute, async (request, reply) => {
    if (context.closing) throw new MeshError('MESHKV_ERR_NOT_READY', 'the node is shutting down')
    // A watch reports a closed node only on its first step, once the stream has begun: ask first.
    if (!node.ready) throw new MeshError('MESHKV_ERR_NOT_READY', 'the node is not ready')
    const since = headerOf(request, 'last-event-id') ?? given(request.query.since)
    if (since !== undefined) decodeWatchCursor(since)
    // The stream takes its place now, before anything is awaited, so concurrent requests cannot
    // all pass the check; it gives the place back if it never starts.
    const controller = reserveStream(context)
    try {
      await checkCursor(node, since)
    } catch (error) {
      context.streams.delete(controller)
      throw error
    }
    const events = node.watch({ prefix: request.query.prefix ?? '', since, signal: controller.signal })
    // Start following before the headers go out, so a write the client makes once it sees them is
    // never missed.
    const first = events.next()
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      // A stream ends when its client or the app goes; its connection is not worth keeping then.
      connection: 'close',
      [CAUSAL_TOKEN_HEADER]: node.token(),
    })
    res.flushHeaders()
    res.on('close', () => controller.abort())
    const streamed = pump(res, first, events, controller.signal, context.heartbeatMs).finally(() => {
      context.streams.delete(controller)
      controller.abort()
      context.observe(WATCH_ROUTE, request.method, 200, reply.elapsedTime / 1000)
    })
    context.streams.set(controller, streamed)
  })
}

/**
 * A resume cursor below what the log still holds is refused with 410 before the stream starts.
 * The node checks that on the first step of a watch, so follow from the cursor once, without a
 * prefix, until it yields or fails. A cursor at or past the node's last LSN cannot have expired.
 */
async function checkCursor(node: MeshNode, since: string | undefined): Promise<void> {
  if (since === undefined) return
  // A cursor inside a change (`L.i`) follows the log from just before change L.
  const position = decodeWatchCursor(since)
  const after = position.op === null ? position.lsn : position.lsn - 1
  if (after >= node.status().lsn) return
  const probe = new AbortController()
  const first = node.watch({ since, signal: probe.signal }).next()
  first.catch(() => undefined)
  let timer: NodeJS.Timeout | undefined
  const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, CURSOR_CHECK_MS_MAX)))
  try {
    await Promise.race([first, waited])
  } finally {
    clearTimeout(timer)
    probe.abort()
  }
}

async function pump(
  res: ServerResponse,
  first: Promise<IteratorResult<WatchEvent>>,
  events: AsyncGenerator<WatchEvent>,
  signal: AbortSignal,
  heartbeatMs: number,
): Promise<void> {
  const heartbeat = setInterval(() => write(res, ': heartbeat\n\n'), heartbeatMs)
  try {
    for (let next = await first; next.done !== true; next = await events.next()) {
      if (!write(res, formatEvent(next.value))) await drained(res, signal)
    }
  } catch (error) {
    if (!signal.aborted) write(res, formatError(error))
  } finally {
    clearInterval(heartbeat)
    if (!res.writableEnded) res.end()
  }
}

function write(res: ServerResponse, text: string): boolean {
  if (res.writableEnded || res.destroyed) return true
  return res.write(text)
}

/** Waits until a slow client has taken what was written (or has gone). */
function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
    signal.addEventListener('abort', done)
  })
}

export function formatEvent(event: WatchEvent): string {
  return `id: ${event.cursor}\nevent: ${event.type}\ndata: ${JSON.stringify(eventData(event))}\n\n`
}

function eventData(event: WatchEvent): Record<string, unknown> {
  if (event.type === 'doc') return { ...event, update: Buffer.from(event.update).toString('base64') }
  if (event.type !== 'put') return event
  const { value, ...rest } = event
  return { ...rest, ...encodeValue(value, event.contentType) }
}

function formatError(error: unknown): string {
  const { problem } = problemOf(error, WATCH_ROUTE)
  return `event: error\ndata: ${JSON.stringify(problem)}\n\n`
}
