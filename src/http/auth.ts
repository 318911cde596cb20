/**
 * Who may call what (docs/architecture.md, "Tokens and roles"). Every route declares its access in
 * its own options, `config: { access, keyOf? }`: `open`, or the least role a token needs (`read` <
 * `write` < `admin`), and for key routes the key or name the request touches. A route without
 * `access` stops the app at startup, so no route is open by omission.
 *
 * With a root token (`buildApp(node, { rootToken })`), auth is on:
 * - `onRequest`, before the body is read: `Authorization: Bearer <token>` must be the root token
 *   (admin, every key; compared in constant time) or a cluster token the node knows
 *   (`node.tokens.authenticate`), else 401 `MESHKV_ERR_UNAUTHENTICATED` with `WWW-Authenticate`.
 *   A request that matches no route needs a token too: 401 comes before 404.
 * - `preValidation`, once the path, query and body are parsed and before the handler: the role
 *   must reach the route's, and a prefix-limited token must touch only keys under its prefix,
 *   else 403 `MESHKV_ERR_FORBIDDEN`. A denied request never reaches the node.
 * Without a root token the app takes every request (protected mode in the CLI keeps that local).
 *
 * Tokens never reach a log: the request serializer logs no headers, and the app's own logger
 * redacts `authorization` as well, in case a serializer does.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AccessRole } from '../api/access.js'
import { ROOT_TOKEN_BYTES_MIN } from '../api/access.js'
import { MeshError } from '../errors.js'
import type { MeshNode, Principal, YjsAccess } from '../node/index.js'

/** Who may call a route: anyone (`open`), or a token of at least this role. */
export type RouteAccess = AccessRole | 'open'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route; every route says (see auth.ts). */
    access?: RouteAccess
    /** The key, name or key prefix the request touches; undefined when it names none (a list without `prefix`). */
    keyOf?: (request: FastifyRequest) => string | undefined
    /** The token may come as `?token=` when no Authorization header does: a page a browser opens (ui.ts). */
    tokenInQuery?: boolean
  }
}

export const ROOT_PRINCIPAL: Principal = Object.freeze({ id: 'root', role: 'admin', prefix: null })
/** What the app's logger never writes, whatever serializers it is given. */
export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'request.headers.authorization',
  'headers.authorization',
]
const CHALLENGE = 'Bearer realm="meshkv"'
const BEARER = /^Bearer +([\x21-\x7e]+) *$/i
const RANK: Readonly<Record<AccessRole, number>> = { read: 0, write: 1, admin: 2 }

const principals = new WeakMap<FastifyRequest, Principal>()

export interface RouteAccessEntry {
  method: string
  url: string
  access: RouteAccess
}

const tables = new WeakMap<FastifyInstance, RouteAccessEntry[]>()

/** Every route of an app with the access it declared (complete once the app is ready). */
export function routeAccessTable(app: FastifyInstance): readonly RouteAccessEntry[] {
  return tables.get(app) ?? []
}

/** Who the request acts as, once auth has let it in; undefined when auth is off (or the route is open). */
export function principalOf(request: FastifyRequest): Principal | undefined {
  return principals.get(request)
}

/** The key routes' `keyOf`: the key is the rest of the path. */
export const keyParam = (request: FastifyRequest): string | undefined => field(request.params, '*')
/** The counter and set routes' `keyOf`: the name in the path. */
export const nameParam = (request: FastifyRequest): string | undefined => field(request.params, 'name')
/** The list and watch routes' `keyOf`: `?prefix=`, which must lie under the token's prefix. */
export const prefixQuery = (request: FastifyRequest): string | undefined => field(request.query, 'prefix')
/** `POST /v1/tokens`: a prefix-limited admin makes tokens only under its own prefix. */
export const prefixBody = (request: FastifyRequest): string | undefined => field(request.body, 'prefix')

/**
 * Requests auth refused, by why: no bearer token (`missing`), one the node does not know or no
 * longer knows (`invalid`: a typo, a revoked token, a guess), or a token whose role or prefix
 * does not reach the request (`forbidden`). For metrics.
 */
export interface AuthRefusals {
  missing: number
  invalid: number
  forbidden: number
}

/**
 * Checks every route's access declaration; with a root token, turns auth on and counts what it
 * refuses in `refused`. Call before any route is added.
 */
export function installAuth(
  app: FastifyInstance,
  node: MeshNode,
  rootToken: string | undefined,
  refused: AuthRefusals,
): void {
  const table: RouteAccessEntry[] = []
  tables.set(app, table)
  app.addHook('onRoute', (route) => {
    const access = route.config?.access
    if (access === undefined)
      throw new MeshError('MESHKV_ERR_CONFIG', `route ${String(route.method)} ${route.url} declares no access`)
    for (const method of [route.method].flat()) table.push({ method, url: route.url, access })
  })
  if (rootToken === undefined) return
  const root = digestOf(checkRootToken(rootToken))

  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.config.access === 'open') return
    const principal = await identify(node, root, request.headers.authorization ?? queryBearer(request))
    if (principal === undefined) {
      refused[request.headers.authorization === undefined ? 'missing' : 'invalid']++
      reply.header('www-authenticate', CHALLENGE)
      throw new MeshError(
        'MESHKV_ERR_UNAUTHENTICATED',
        'this request needs a valid token: Authorization: Bearer <token>',
      )
    }
    principals.set(request, principal)
  })

  app.addHook('preValidation', async (request: FastifyRequest, _reply: FastifyReply) => {
    const access = request.routeOptions.config.access
    // No access declared: the not-found handler, which any authenticated caller may reach.
    if (access === undefined || access === 'open') return
    const principal = principals.get(request)
    if (principal === undefined) throw new MeshError('MESHKV_ERR_UNAUTHENTICATED', 'this request needs a valid token')
    try {
      checkAccess(principal, access, request)
    } catch (error) {
      refused.forbidden++
      throw error
    }
  })
}

function checkRootToken(rootToken: unknown): string {
  if (typeof rootToken !== 'string' || Buffer.byteLength(rootToken) < ROOT_TOKEN_BYTES_MIN)
    throw new MeshError('MESHKV_ERR_CONFIG', `the root token must be at least ${ROOT_TOKEN_BYTES_MIN} bytes`)
  return rootToken
}

async function identify(node: MeshNode, root: Buffer, header: string | undefined): Promise<Principal | undefined> {
  const text = header === undefined ? undefined : BEARER.exec(header)?.[1]
  if (text === undefined) return undefined
  return identifyToken(node, root, text)
}

/** `?token=` as a bearer header, on a route that takes one there (a link a browser opens sends no header). */
function queryBearer(request: FastifyRequest): string | undefined {
  if (request.routeOptions.config.tokenInQuery !== true) return undefined
  const token = (request.query as { token?: unknown } | undefined)?.token
  return typeof token === 'string' ? `Bearer ${token}` : undefined
}

/**
 * Who may join a Yjs room (node/yjs-rooms.ts): with a root token, the token travels as `?token=`
 * (browsers cannot set WebSocket headers); none or an unknown one is 401, a prefix that does not
 * cover the room 403, and a `read` token joins read-only. Without a root token, everyone writes.
 */
export function yjsAccess(node: MeshNode, rootToken: string | undefined): YjsAccess {
  if (rootToken === undefined) return () => Promise.resolve({ readOnly: false })
  const root = digestOf(checkRootToken(rootToken))
  return async (token, room) => {
    const principal = token === null ? undefined : await identifyToken(node, root, token)
    if (principal === undefined) return 401
    if (principal.prefix !== null && !room.startsWith(principal.prefix)) return 403
    return { readOnly: principal.role === 'read' }
  }
}

/** Who a bare token acts as, or undefined for one the node does not know. `root` is the root token's digest. */
async function identifyToken(node: MeshNode, root: Buffer, text: string): Promise<Principal | undefined> {
  // Digests have one length, so the comparison takes the same time whatever was sent.
  if (timingSafeEqual(digestOf(text), root)) return ROOT_PRINCIPAL
  return node.tokens.authenticate(text)
}

/** The role must reach the route's; on a route that names keys, a prefix-limited token must stay under its prefix. */
function checkAccess(principal: Principal, access: AccessRole, request: FastifyRequest): void {
  if (RANK[principal.role] < RANK[access])
    throw new MeshError('MESHKV_ERR_FORBIDDEN', `a ${principal.role} token may not do this (it needs ${access})`)
  const keyOf = request.routeOptions.config.keyOf
  if (principal.prefix === null || keyOf === undefined) return
  const key = keyOf(request)
  if (key === undefined || !key.startsWith(principal.prefix))
    throw new MeshError(
      'MESHKV_ERR_FORBIDDEN',
      `this token may only touch keys and names starting with ${JSON.stringify(principal.prefix)}`,
    )
}

function digestOf(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

function field(source: unknown, name: string): string | undefined {
  if (typeof source !== 'object' || source === null) return undefined
  const value = (source as Record<string, unknown>)[name]
  return typeof value === 'string' ? value : undefined
}
