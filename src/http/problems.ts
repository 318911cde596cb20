/**
 * Every error answer is `application/problem+json` (RFC 9457):
 * `{ type: "urn:meshkv:problem:<CODE>", title, status, detail, code }`, with the status taken from
 * `ERROR_TABLE`. MeshErrors keep their code; fastify's own errors (validation, body parsing, bad
 * URLs) are given the nearest meshkv code; anything else is a 500 MESHKV_ERR_INTERNAL whose
 * detail says nothing of the cause (the cause goes to the log).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ErrorCode } from '../errors.js'
import { isMeshError, statusOf } from '../errors.js'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'
const TYPE_PREFIX = 'urn:meshkv:problem:'
const INTERNAL_DETAIL = 'an unexpected error occurred; the node logged it'

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  /** Structured detail from a MeshError (limits, current version), when it has some. */
  details?: Record<string, unknown>
}

export function problem(code: ErrorCode, detail: string, details?: Record<string, unknown>): Problem {
  return {
    type: TYPE_PREFIX + code,
    title: titleOf(code),
    status: statusOf(code),
    detail,
    code,
    ...(details === undefined ? {} : { details }),
  }
}

/** `MESHKV_ERR_VALUE_TOO_LARGE` → `Value too large`. */
function titleOf(code: ErrorCode): string {
  const words = code
    .replace(/^MESHKV_ERR_/, '')
    .toLowerCase()
    .replaceAll('_', ' ')
  return words.charAt(0).toUpperCase() + words.slice(1)
}

/** fastify's body and URL errors, by their code, with the meshkv code they become. */
const FASTIFY_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'MESHKV_ERR_MALFORMED_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MESHKV_ERR_MALFORMED_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'MESHKV_ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'MESHKV_ERR_INVALID_ARGUMENT',
  FST_ERR_CTP_INVALID_TYPE: 'MESHKV_ERR_INVALID_ARGUMENT',
  FST_ERR_VALIDATION: 'MESHKV_ERR_INVALID_ARGUMENT',
  FST_ERR_BAD_URL: 'MESHKV_ERR_INVALID_ARGUMENT',
}

/** On the key routes the key is the path and the body is the value, so their errors say so. */
function isKvPath(path: string): boolean {
  return path.startsWith('/v1/kv/')
}

/** Routes whose path ends in a key or name: a path that does not decode is a bad key. */
function isNamePath(path: string): boolean {
  return isKvPath(path) || path.startsWith('/v1/counters/') || path.startsWith('/v1/sets/')
}

/**
 * The problem an error becomes, for a request to `path` (its route pattern when it matched one);
 * `internal` says whether it is one to log as a bug.
 */
export function problemOf(error: unknown, path: string): { problem: Problem; internal: boolean } {
  if (isMeshError(error))
    return { problem: problem(error.code, error.message, error.details), internal: error.status >= 500 }
  const fastifyError = error as Partial<FastifyError> | null
  const fastifyCode = typeof fastifyError?.code === 'string' ? FASTIFY_CODES[fastifyError.code] : undefined
  const status = typeof fastifyError?.statusCode === 'number' ? fastifyError.statusCode : 500
  let code: ErrorCode | undefined = fastifyCode
  if (code === undefined && fastifyError?.validation !== undefined) code = 'MESHKV_ERR_INVALID_ARGUMENT'
  if (code === undefined && status >= 400 && status < 500) code = codeOfClientStatus(status)
  if (code === undefined) return { problem: problem('MESHKV_ERR_INTERNAL', INTERNAL_DETAIL), internal: true }
  if (code === 'MESHKV_ERR_BODY_TOO_LARGE' && isKvPath(path)) code = 'MESHKV_ERR_VALUE_TOO_LARGE'
  if (fastifyError?.code === 'FST_ERR_BAD_URL' && isNamePath(path)) code = 'MESHKV_ERR_INVALID_KEY'
  return { problem: problem(code, String(fastifyError?.message ?? code)), internal: false }
}

function codeOfClientStatus(status: number): ErrorCode {
  switch (status) {
    case 404:
      return 'MESHKV_ERR_NOT_FOUND'
    case 413:
      return 'MESHKV_ERR_BODY_TOO_LARGE'
    case 415:
      return 'MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE'
    default:
      return 'MESHKV_ERR_INVALID_ARGUMENT'
  }
}

export function sendProblem(reply: FastifyReply, body: Problem): FastifyReply {
  return reply.code(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body))
}

function answerError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply | undefined {
  const { problem: body, internal } = problemOf(error, request.routeOptions.url ?? request.url)
  if (internal) request.log.error({ err: error }, 'request failed')
  if (reply.sent || reply.raw.headersSent) return undefined
  return sendProblem(reply, body)
}

/** fastify's `frameworkErrors` option: errors met before routing (a URL that does not decode). */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  answerError(error, request, reply)
}

export function installProblems(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => answerError(error, request, reply))
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      problem('MESHKV_ERR_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`),
    ),
  )
}
