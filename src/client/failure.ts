/**
 * Turning what can go wrong on the wire into `MeshError`s, and deciding which failures are safe to
 * retry on another node. A write may be retried only when it cannot have been applied: the
 * connection never opened (refused, no route, no such host), or the node answered 503 saying it
 * was not ready (or closing, or recovering after a start) and so did not run the request. A connection that broke after the
 * request went out (reset, closed) may have run it: a write then fails with MESHKV_ERR_UNREACHABLE
 * and `details.maybeApplied`, never silently twice. A read may also be retried after a
 * timeout, since running it twice changes nothing.
 */
import type { ErrorCode } from '../errors.js'
import { MeshError, isErrorCode } from '../errors.js'

/** Socket error codes of a connection that never opened: the request cannot have been run. */
const NOT_DELIVERED_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
])

/**
 * Socket error codes of a connection that broke after the request may have gone out (reset,
 * broken pipe, undici's "other side closed"): the node may have run it and died before answering.
 * A read is retried elsewhere; a write is not, and its error says it may have happened.
 */
const MAYBE_DELIVERED_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])

/**
 * TLS codes of a certificate the client does not trust (or a name it does not cover). The
 * handshake failed before any request went out, so it was not delivered; the message says what
 * to do (give the cluster's CA), since every node of a cluster is likely to fail the same way.
 */
const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/**
 * Codes with which a node says it did not run the request at all. `RECOVERING` is a node just
 * restarted that checks with its peers before it writes (its seq guard): it refuses a write
 * before the write gets a seq, so nothing was written (a rolling restart met it on a round-robin
 * client that reached the node between its listen and its readiness).
 */
const NOT_SERVING_CODES: ReadonlySet<ErrorCode> = new Set([
  'MESHKV_ERR_NOT_READY',
  'MESHKV_ERR_CLOSED',
  'MESHKV_ERR_RECOVERING',
])

/** A problem body is read only this far; a real one is a few hundred bytes. */
export const PROBLEM_BYTES_MAX = 64 * 1024

export type AttemptFailure =
  | { kind: 'not-delivered'; endpoint: string; error: MeshError }
  | { kind: 'maybe-delivered'; endpoint: string; error: MeshError }
  | { kind: 'not-serving'; endpoint: string; error: MeshError }

/** The code of a socket-level cause inside a `fetch` error, when there is one. */
export function socketErrorCode(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string') return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** How an attempt that threw ended: by our timer, and whether a response had begun. */
export interface AttemptContext {
  endpoint: string
  timeoutMs: number
  timedOut: boolean
  /** The response headers had arrived: the node got the request. */
  responded: boolean
}

/** What an attempt that threw means, or undefined when it is not a network failure (a bug: rethrow). */
export function classifyFetchError(error: unknown, attempt: AttemptContext): AttemptFailure | undefined {
  const { endpoint, timeoutMs } = attempt
  if (attempt.timedOut) {
    const message = `no answer from ${endpoint} within ${timeoutMs} ms`
    return {
      kind: 'maybe-delivered',
      endpoint,
      error: new MeshError('MESHKV_ERR_UNREACHABLE', message, { cause: error, details: { endpoint, timeoutMs } }),
    }
  }
  const code = socketErrorCode(error)
  if (code !== undefined && UNTRUSTED_CERTIFICATE_CODES.has(code)) return untrustedCertificate(error, endpoint, code)
  // fetch reports a network failure as `TypeError('fetch failed', { cause })`, and a body cut
  // short as `TypeError('terminated', { cause })`.
  const isNetworkError =
    error instanceof TypeError && (error.message === 'fetch failed' || error.message === 'terminated')
  if (!isNetworkError && (code === undefined || (!NOT_DELIVERED_CODES.has(code) && !MAYBE_DELIVERED_CODES.has(code))))
    return undefined
  const reason = code ?? causeMessage(error) ?? 'network error'
  const message = attempt.responded
    ? `the answer from ${endpoint} was cut off (${reason}); a write may have happened`
    : code !== undefined && MAYBE_DELIVERED_CODES.has(code)
      ? `the connection to ${endpoint} broke before it answered (${reason}); a write may have happened`
      : `cannot reach ${endpoint} (${reason})`
  // Without a socket code (e.g. a port number fetch refuses) nothing was sent. Other codes
  // (header timeouts and the like), and anything after the response began, come after the
  // request went out.
  const notDelivered = !attempt.responded && (code === undefined || NOT_DELIVERED_CODES.has(code))
  const details = { endpoint, maybeApplied: !notDelivered, ...(code === undefined ? {} : { socketCode: code }) }
  return {
    kind: notDelivered ? 'not-delivered' : 'maybe-delivered',
    endpoint,
    error: new MeshError('MESHKV_ERR_UNREACHABLE', message, { cause: error, details }),
  }
}

function untrustedCertificate(error: unknown, endpoint: string, code: string): AttemptFailure {
  const message =
    `the TLS certificate of ${endpoint} is not trusted (${code}): ` +
    'give the CA of the cluster (MeshClient ca, kvctl --cacert or MESHKV_CACERT)'
  const details = { endpoint, maybeApplied: false, socketCode: code }
  return {
    kind: 'not-delivered',
    endpoint,
    error: new MeshError('MESHKV_ERR_UNREACHABLE', message, { cause: error, details }),
  }
}

function causeMessage(error: unknown): string | undefined {
  const cause = (error as { cause?: unknown }).cause
  if (cause instanceof Error && cause.message.length > 0) return cause.message
  return undefined
}

/** Is this error response a node saying it did not run the request? */
export function isNotServing(error: MeshError): boolean {
  return error.details?.['status'] === 503 && NOT_SERVING_CODES.has(error.code)
}

/**
 * The `MeshError` for an error response. A problem+json body gives the code and the detail; a code
 * this client does not know becomes `MESHKV_ERR_INTERNAL`, and a body that is not a problem falls
 * back to the code that best fits the status.
 */
export function errorFromProblem(status: number, body: unknown, endpoint: string): MeshError {
  const problem =
    typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {}
  const { detail, title, code, details } = problem
  const known = isErrorCode(code) ? code : undefined
  const message = firstText(detail, title, problem['message']) ?? `HTTP ${status} from ${endpoint}`
  const extra =
    typeof details === 'object' && details !== null && !Array.isArray(details)
      ? (details as Record<string, unknown>)
      : {}
  return new MeshError(known ?? fallbackCode(status), message, {
    details: { ...extra, status, endpoint, ...(known === undefined && code !== undefined ? { remoteCode: code } : {}) },
  })
}

function fallbackCode(status: number): ErrorCode {
  if (status === 401) return 'MESHKV_ERR_UNAUTHENTICATED'
  if (status === 403) return 'MESHKV_ERR_FORBIDDEN'
  if (status === 404) return 'MESHKV_ERR_NOT_FOUND'
  if (status === 412) return 'MESHKV_ERR_PRECONDITION_FAILED'
  if (status === 503) return 'MESHKV_ERR_NOT_READY'
  return 'MESHKV_ERR_INTERNAL'
}

function firstText(...candidates: unknown[]): string | undefined {
  for (const candidate of candidates) if (typeof candidate === 'string' && candidate.length > 0) return candidate
  return undefined
}

/** Reads an error response's body as JSON when it is JSON, within `PROBLEM_BYTES_MAX`. */
export async function readProblemBody(response: Response): Promise<unknown> {
  let text: string
  try {
    const bytes = new Uint8Array(await response.arrayBuffer())
    text = new TextDecoder().decode(bytes.subarray(0, PROBLEM_BYTES_MAX))
  } catch {
    return undefined
  }
  const type = response.headers.get('content-type') ?? ''
  if (!/json/i.test(type)) return text.length > 0 ? { detail: text.slice(0, 500) } : undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
