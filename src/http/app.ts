/**
 * The HTTP face of one node: `buildApp(node)` returns a fastify instance with every route, ready
 * for `listen` (the CLI listens) or `inject` (the tests). It builds only on the node's public API.
 *
 * Every answer carries `X-Causal-Token` (after a write, the write's token); every error is a
 * problem (`problems.ts`). `closeApp(app)` is the graceful end: `/readyz` turns 503, new
 * connections are refused and open ones drained (`drain.ts`), watch streams end, in-flight
 * requests finish, then the server closes. The node stays open: its owner closes it after the
 * app.
 */
import type { IncomingMessage } from 'node:http'
import type { ServerOptions as HttpsServerOptions } from 'node:https'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from 'fastify'
import Fastify from 'fastify'
import type { TlsMaterial } from '../api/index.js'
import { positiveIntegerSetting } from '../api/index.js'
import type { MeshNode } from '../node/index.js'
import { YjsRooms } from '../node/index.js'
import { REDACTED_LOG_PATHS, installAuth, yjsAccess } from './auth.js'
import type { AppContext } from './context.js'
import { counterRoutes } from './counters.js'
import { docRoutes } from './docs.js'
import { ConnectionDrain } from './drain.js'
import { exportRoutes } from './export.js'
import { uiRoutes } from './ui.js'
import { clusterUiRoutes } from './ui-cluster.js'
import { CAUSAL_TOKEN_HEADER } from './encoding.js'
import { healthRoutes } from './health.js'
import { kvRoutes } from './kv.js'
import { createMetrics, installMetrics } from './metrics.js'
import { lazyChildLogger } from './request-logger.js'
import { answerFrameworkError, installProblems, problem, sendProblem } from './problems.js'
import { AJV_OPTIONS } from './schemas.js'
import { setRoutes } from './sets.js'
import { watchRoutes } from './watch.js'
import { memberRoutes } from './members.js'
import { tokenRoutes } from './tokens.js'

export const HEARTBEAT_MS_DEFAULT = 15_000
/** Largest body of a non-key route (counters, sets). Key routes take up to the node's value limit. */
export const BODY_BYTES_MAX_DEFAULT = 1024 * 1024
/**
 * Longest path parameter fastify will match (its default, 100, would turn a long counter name
 * into a 404). Node's HTTP parser already bounds the whole request line; the node checks names.
 */
const PARAM_CHARS_MAX = 64 * 1024
export const CONNECTIONS_MAX_DEFAULT = 1024
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000
export const WATCH_STREAMS_MAX_DEFAULT = 256
/** How often Node checks for requests past their timeouts (its default, 30 s, would double a 30 s timeout). */
const TIMEOUT_CHECK_MS_MAX = 1000
/** Longest a client may take over its TLS handshake, in ms. */
const TLS_HANDSHAKE_MS_MAX = 10_000

export interface AppOptions {
  /** fastify's `logger`: `true`, pino options, or a pino logger to use as it is. Default off. */
  logger?: boolean | object
  /** How often an idle watch stream sends a heartbeat comment. Default 15 000. */
  heartbeatMs?: number
  /** Largest request body outside the key routes, in bytes. Default 1 MiB. */
  bodyBytesMax?: number
  /**
   * The node's root token (an `admin` token that lives only in this node's configuration). With
   * it, every route but `/livez` and `/readyz` needs `Authorization: Bearer <token>`: the root
   * token or one made through `POST /v1/tokens` on any node. Without it, the app takes every
   * request (protected mode, in the CLI, then serves loopback only).
   */
  rootToken?: string
  /** Serve HTTPS (and WSS for peers, on the same port) with this certificate and key. */
  tls?: TlsMaterial
  /** Open client connections at once; more are closed as they arrive. Default 1024. */
  connectionsMax?: number
  /** How long a request may take to arrive in full, in ms (watch streams excepted). Default 30 000. */
  requestTimeoutMs?: number
  /** Watch streams open at once; more answer 503 `MESHKV_ERR_BUSY`. Default 256. */
  watchStreamsMax?: number
}

const contexts = new WeakMap<FastifyInstance, AppContext>()
const drains = new WeakMap<FastifyInstance, ConnectionDrain>()

export async function buildApp(node: MeshNode, options: AppOptions = {}): Promise<FastifyInstance> {
  const heartbeatMs = positiveIntegerSetting('heartbeatMs', options.heartbeatMs, HEARTBEAT_MS_DEFAULT)
  const bodyBytesMax = positiveIntegerSetting('bodyBytesMax', options.bodyBytesMax, BODY_BYTES_MAX_DEFAULT)
  const bounds = serverBounds(options)
  const app = Fastify({
    ...loggerOptions(options.logger),
    ...httpsOptions(options.tls, bounds.requestTimeoutMs),
    bodyLimit: bodyBytesMax,
    routerOptions: { maxParamLength: PARAM_CHARS_MAX },
    ajv: { customOptions: AJV_OPTIONS },
    // Draining is answered by the onRequest hook below, as a problem.
    return503OnClosing: false,
    // Node's requestTimeout covers receiving a request, not answering it: watch streams live on.
    requestTimeout: bounds.requestTimeoutMs,
    keepAliveTimeout: bounds.requestTimeoutMs,
    http: { connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_MS_MAX, bounds.requestTimeoutMs) },
    // Errors met before routing (a URL that does not decode) skip the hooks: set the token here.
    frameworkErrors: (error, request, reply) => {
      reply.header(CAUSAL_TOKEN_HEADER, node.token())
      answerFrameworkError(error, request, reply)
    },
  }) as unknown as FastifyInstance

  const context: AppContext = {
    node,
    heartbeatMs,
    closing: false,
    streams: new Map(),
    watchStreamsMax: bounds.watchStreamsMax,
    load: { connections: 0, refused: { watch: 0, connections: 0 } },
    authRefused: { missing: 0, invalid: 0, forbidden: 0 },
    observe: () => undefined,
  }
  boundServer(app, bounds, context.load)
  drains.set(app, new ConnectionDrain(app.server))
  const metrics = createMetrics(context)
  context.observe = metrics.observe
  contexts.set(app, context)

  installProblems(app)
  installAuth(app, node, options.rootToken, context.authRefused)
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (!reply.hasHeader(CAUSAL_TOKEN_HEADER)) reply.header(CAUSAL_TOKEN_HEADER, node.token())
    // While draining, an answer closes its connection: the server's close waits for every
    // connection, and one kept alive after its last answer would hold it until the idle timeout.
    if (context.closing) reply.header('connection', 'close')
    done(null, payload)
  })
  installMetrics(app, metrics)
  // While the app drains, new requests are refused as problems (fastify's own 503 is not one).
  app.addHook('onRequest', (_request, reply, done) => {
    if (!context.closing) return done()
    sendProblem(reply, problem('MESHKV_ERR_NOT_READY', 'the node is shutting down'))
  })
  // Live collaboration (y-websocket) on the same port: its own upgrade path, its own auth (?token=).
  const rooms = new YjsRooms(node, { access: yjsAccess(node, options.rootToken) })
  rooms.attach(app.server)
  const unused = trackUnusedConnections(app)
  // End the watch streams before the server closes: they would hold it open. So would a
  // connection that never carried a request (clients open some ahead of need), which Node's
  // close does not count as idle; nothing is in flight on one, so it is ended here.
  app.addHook('preClose', async () => {
    context.closing = true
    rooms.close()
    for (const controller of context.streams.keys()) controller.abort()
    await Promise.all(context.streams.values())
    for (const socket of unused) socket.destroy()
  })

  const routeOptions = { context }
  app.register(kvRoutes, routeOptions)
  app.register(counterRoutes, routeOptions)
  app.register(setRoutes, routeOptions)
  app.register(docRoutes, routeOptions)
  app.register(watchRoutes, routeOptions)
  app.register(memberRoutes, routeOptions)
  app.register(healthRoutes, routeOptions)
  app.register(tokenRoutes, routeOptions)
  app.register(exportRoutes, routeOptions)
  app.register(uiRoutes)
  app.register(clusterUiRoutes)
  return app
}

/**
 * Graceful shutdown: not ready, clients drained off (`drain.ts`), watch streams ended, in-flight
 * requests finished, server closed.
 */
export async function closeApp(app: FastifyInstance): Promise<void> {
  const context = contexts.get(app)
  if (context !== undefined) context.closing = true
  await drains.get(app)?.drain()
  await app.close()
}

function serverBounds(
  options: AppOptions,
): Required<Pick<AppOptions, 'connectionsMax' | 'requestTimeoutMs' | 'watchStreamsMax'>> {
  return {
    connectionsMax: positiveIntegerSetting('connectionsMax', options.connectionsMax, CONNECTIONS_MAX_DEFAULT),
    requestTimeoutMs: positiveIntegerSetting('requestTimeoutMs', options.requestTimeoutMs, REQUEST_TIMEOUT_MS_DEFAULT),
    watchStreamsMax: positiveIntegerSetting('watchStreamsMax', options.watchStreamsMax, WATCH_STREAMS_MAX_DEFAULT),
  }
}

/**
 * A slow client cannot hold a connection: its headers, and its whole request, must arrive within
 * the request timeout (a slowloris is dropped), and past `connectionsMax` open connections Node
 * closes new ones as they arrive, so the node keeps serving the ones it has.
 */
function boundServer(app: FastifyInstance, bounds: ReturnType<typeof serverBounds>, load: AppContext['load']): void {
  const server = app.server
  server.headersTimeout = bounds.requestTimeoutMs
  server.maxConnections = bounds.connectionsMax
  server.on('drop', () => load.refused.connections++)
  server.on('connection', (socket: Socket) => {
    load.connections++
    socket.once('close', () => load.connections--)
  })
}

/** The open connections on which no request has arrived yet. */
function trackUnusedConnections(app: FastifyInstance): Set<Socket> {
  const unused = new Set<Socket>()
  // Over HTTPS a request's socket is the TLS socket, not the TCP one 'connection' hands over.
  const opened = app.server instanceof TlsServer ? 'secureConnection' : 'connection'
  app.server.on(opened, (socket: Socket) => {
    unused.add(socket)
    socket.once('close', () => unused.delete(socket))
  })
  app.server.on('request', (request: IncomingMessage) => unused.delete(request.socket))
  return unused
}

/**
 * fastify's `https` option. With a CA the server asks every client for a certificate and checks
 * it against the CA, but lets clients without one in (`rejectUnauthorized: false`): HTTP clients
 * need none, and the peer path refuses a link whose certificate did not verify (transport/websocket.ts).
 */
function httpsOptions(tls: TlsMaterial | undefined, requestTimeoutMs: number): { https?: HttpsServerOptions } {
  if (tls === undefined) return {}
  const pem = (value: string | Uint8Array): string | Buffer => (typeof value === 'string' ? value : Buffer.from(value))
  const mutual = tls.ca === undefined ? {} : { ca: pem(tls.ca), requestCert: true, rejectUnauthorized: false }
  // The `http` option above does not reach an HTTPS server: the timeout check and a bound on the
  // TLS handshake (Node waits 120 s for one that never finishes) are set here too.
  const bounds = {
    connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_MS_MAX, requestTimeoutMs),
    handshakeTimeout: Math.min(TLS_HANDSHAKE_MS_MAX, requestTimeoutMs),
  }
  return { https: { cert: pem(tls.cert), key: pem(tls.key), ...mutual, ...bounds } }
}

function loggerOptions(
  logger: AppOptions['logger'],
): Pick<FastifyServerOptions, 'logger' | 'childLoggerFactory'> & { loggerInstance?: FastifyBaseLogger } {
  if (logger === undefined || logger === false) return { logger: false }
  // Each request's child logger is made when it first logs (request-logger.ts).
  return { ...baseLogger(logger), childLoggerFactory: lazyChildLogger }
}

function baseLogger(
  logger: Exclude<AppOptions['logger'], undefined | false>,
): Pick<FastifyServerOptions, 'logger'> & { loggerInstance?: FastifyBaseLogger } {
  // The authorization header is redacted whatever the serializers log (pino children take `redact` too).
  if (logger === true) return { logger: { redact: REDACTED_LOG_PATHS } }
  if (isLogger(logger)) return { loggerInstance: logger.child({}, { redact: REDACTED_LOG_PATHS }) }
  return { logger: { redact: REDACTED_LOG_PATHS, ...logger } as FastifyServerOptions['logger'] }
}

function isLogger(value: object): value is FastifyBaseLogger {
  const candidate = value as Partial<Record<'child' | 'info' | 'error', unknown>>
  return (
    typeof candidate.child === 'function' &&
    typeof candidate.info === 'function' &&
    typeof candidate.error === 'function'
  )
}
