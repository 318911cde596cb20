/**
 * How `MeshClient` sends one request: to the nodes the routing policy plans (`endpoints.ts`), in
 * turn, each attempt under the client's timeout, until one answers or a failure must stop.
 *
 * An attempt that fails in a way that proves the request was not run — no connection, a reset
 * before any answer, or a 503 saying the node is not ready — goes on to the next node; a read,
 * which is safe to run twice, also goes on after a timeout. When every node fails the request
 * throws `MESHKV_ERR_UNREACHABLE` with each attempt in `details.attempts`.
 */
import { lookup as dnsLookup } from 'node:dns/promises'
import { MeshError } from '../errors.js'
import type { RoutingPolicy } from './endpoints.js'
import { EndpointPicker, expandEndpoints } from './endpoints.js'
import type { FetchDispatcher } from './access.js'
import type { AttemptFailure } from './failure.js'
import { classifyFetchError, errorFromProblem, isNotServing, readProblemBody } from './failure.js'
import type { FetchFunction } from './types.js'

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE'

export interface RequestSpec {
  method: Method
  /** The path, already percent-encoded. */
  path: string
  query?: Record<string, string | undefined>
  headers?: Record<string, string | undefined>
  body?: Uint8Array | string
  /** Running it twice changes nothing: retried on the next node after any failed attempt. */
  idempotent: boolean
  signal?: AbortSignal | undefined
}

/** Reads a response that came back from `endpoint` into what the caller wants. */
export type ResponseReader<T> = (response: Response, endpoint: string) => Promise<T>

type Attempt<T> = { ok: true; value: T } | { ok: false; failure: AttemptFailure }

export interface TransportOptions {
  endpoints: readonly string[]
  policy: RoutingPolicy
  timeoutMs: number
  fetch: FetchFunction
  lookup: (hostname: string) => Promise<readonly string[]>
  /** Sent with every request (the `Authorization` header). */
  headers: Readonly<Record<string, string>>
  /** Makes the `fetch` dispatcher (one that trusts a private CA), once, before the first request. */
  dispatcher?: () => Promise<FetchDispatcher>
}

export class Transport {
  readonly #options: TransportOptions
  #picker: EndpointPicker
  /** Host names are resolved once, before the first request (see `expandEndpoints`). */
  #resolving: Promise<void> | null = null
  #dispatcher: FetchDispatcher | undefined

  constructor(options: TransportOptions) {
    this.#options = options
    this.#picker = new EndpointPicker(options.endpoints, options.policy)
  }

  /** The endpoints requests go to: the node URLs, with each host name expanded to its addresses. */
  async resolvedEndpoints(): Promise<readonly string[]> {
    await this.#resolve()
    return this.#picker.endpoints
  }

  /** The node a sticky client talks to now (for round-robin: where the next request starts). */
  get current(): string {
    return this.#picker.current
  }

  /** Closes the connections of the client's own dispatcher (there is one with a CA). */
  async close(): Promise<void> {
    await this.#resolving?.catch(() => undefined)
    await this.#dispatcher?.close()
  }

  #resolve(): Promise<void> {
    const { endpoints, lookup, policy, dispatcher } = this.#options
    this.#resolving ??= Promise.all([expandEndpoints(endpoints, lookup), dispatcher?.()]).then(([expanded, made]) => {
      this.#picker = new EndpointPicker(expanded, policy)
      this.#dispatcher = made
    })
    return this.#resolving
  }

  /** Runs `spec` on the nodes the policy plans, in turn, until one answers or a failure must stop. */
  async exchange<T>(spec: RequestSpec, read: ResponseReader<T>): Promise<T> {
    await this.#resolve()
    const failures: AttemptFailure[] = []
    for (const endpoint of this.#picker.plan()) {
      throwIfAborted(spec.signal)
      const attempt = await this.#attempt(endpoint, spec, read)
      if (attempt.ok) {
        this.#picker.markServed(endpoint)
        return attempt.value
      }
      this.#picker.markFailed(endpoint)
      failures.push(attempt.failure)
      if (attempt.failure.kind === 'maybe-delivered' && !spec.idempotent) throw attempt.failure.error
    }
    throw unreachable(failures)
  }

  async #attempt<T>(endpoint: string, spec: RequestSpec, read: ResponseReader<T>): Promise<Attempt<T>> {
    const { timeoutMs } = this.#options
    const timer = new AbortController()
    const timeout = setTimeout(() => timer.abort(), timeoutMs)
    const signal = spec.signal === undefined ? timer.signal : AbortSignal.any([spec.signal, timer.signal])
    let responded = false
    try {
      const init: RequestInit = {
        method: spec.method,
        headers: { ...definedHeaders(spec.headers), ...this.#options.headers },
        body: spec.body,
        signal,
      }
      if (this.#dispatcher !== undefined) init.dispatcher = this.#dispatcher
      const response = await this.#options.fetch(urlOf(endpoint, spec), init)
      responded = true
      if (response.status === 503) {
        const error = errorFromProblem(503, await readProblemBody(response), endpoint)
        if (isNotServing(error)) return { ok: false, failure: { kind: 'not-serving', endpoint, error } }
        // Another 503 (e.g. unreachable peers) may have done work: not retried, but a sticky
        // client still moves on.
        this.#picker.markFailed(endpoint)
        throw error
      }
      // The body is read under the same timer; a stream's reader returns at once.
      return { ok: true, value: await read(response, endpoint) }
    } catch (error) {
      if (error instanceof MeshError) throw error
      throwIfAborted(spec.signal)
      const failure = classifyFetchError(error, { endpoint, timeoutMs, timedOut: timer.signal.aborted, responded })
      if (failure === undefined) throw error
      return { ok: false, failure }
    } finally {
      clearTimeout(timeout)
    }
  }
}

/** The system resolver (`dns.lookup` with `all: true`): every address of a host name. */
export async function systemLookup(hostname: string): Promise<string[]> {
  const answers = await dnsLookup(hostname, { all: true })
  return answers.map((answer) => answer.address)
}

function urlOf(endpoint: string, spec: RequestSpec): string {
  const query = new URLSearchParams()
  for (const [name, value] of Object.entries(spec.query ?? {})) if (value !== undefined) query.set(name, value)
  const search = query.toString()
  return endpoint + spec.path + (search === '' ? '' : `?${search}`)
}

function definedHeaders(headers: Record<string, string | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers ?? {})) if (value !== undefined) out[name] = value
  return out
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true)
    throw new MeshError('MESHKV_ERR_ABORTED', 'the request was aborted', { cause: signal.reason })
}

function unreachable(failures: readonly AttemptFailure[]): MeshError {
  const summary = failures.map((failure) => failure.error.message).join('; ')
  const last = failures[failures.length - 1]
  return new MeshError('MESHKV_ERR_UNREACHABLE', `no node could take the request: ${summary}`, {
    cause: last?.error,
    details: {
      attempts: failures.map((failure) => ({
        endpoint: failure.endpoint,
        kind: failure.kind,
        code: failure.error.code,
        message: failure.error.message,
      })),
    },
  })
}
