/**
 * `MeshClient`: meshkv over HTTP from an app, across many nodes.
 *
 * Each request goes to one node chosen by the routing policy, and fails over to the next when
 * that is safe (`transport.ts`). Error answers become `MeshError`s with the node's code.
 *
 * The client keeps a session causal token, the join of the tokens of its writes, and sends it
 * with every read, so a read on any node sees the session's own writes.
 */
import type { CreatedToken, TokenInfo } from '../api/index.js'
import { BYTES_TYPE, JSON_TYPE, TEXT_TYPE } from '../api/index.js'
import { MeshError } from '../errors.js'
import { authHeaders, caDispatcher, caText, createTokenBody, createdTokenOf, tokenListOf, tokenPath } from './access.js'
import type { RoutingPolicy } from './endpoints.js'
import { isRoutingPolicy, parseEndpoints } from './endpoints.js'
import type { Answer } from './answers.js'
import { checkAnswer, entryWithSiblings, isNotFound, jsonOf, readAnswer, siblingCountOf } from './answers.js'
import { checkMembers, concernQuery, keyPath, namePath, readQuery, waitOf } from './paths.js'
import { Session } from './session.js'
import type { RequestSpec, ResponseReader } from './transport.js'
import { Transport, systemLookup } from './transport.js'
import type {
  ClientConcernOptions,
  ClientCreateTokenOptions,
  ClientForgetOptions,
  ClientDeleteOptions,
  ClientEntry,
  ClientListItem,
  ClientListOptions,
  ClientListPage,
  ClientPutOptions,
  ClientReadOptions,
  ClientDigest,
  ClientExportOptions,
  ClientDocReadOptions,
  ClientDocTypeKind,
  ClientDocWriteResult,
  ClientMember,
  ClientStatus,
  ClientWatchEvent,
  ClientWatchOptions,
  ClientWriteResult,
  MeshClientOptions,
} from './types.js'
import { readEvents } from './watch-stream.js'
import { docReadSpec, docWriteSpec, docWritten } from './docs.js'
import { exportSpec, streamLines } from './export.js'
import {
  entityTagOf,
  listItem,
  malformed,
  numberField,
  stringArrayField,
  stringField,
  versionFromEntityTag,
} from './wire.js'

export const TIMEOUT_MS_DEFAULT = 10_000
export const TIMEOUT_MS_MAX = 10 * 60_000
const CAUSAL_TOKEN_HEADER = 'x-causal-token'

export class MeshClient {
  readonly endpoints: readonly string[]
  readonly policy: RoutingPolicy
  readonly timeoutMs: number
  readonly #transport: Transport
  readonly #session = new Session()

  constructor(options: MeshClientOptions) {
    if (typeof options !== 'object' || options === null)
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'MeshClient takes an options object with nodes')
    const policy = options.policy ?? 'sticky'
    if (!isRoutingPolicy(policy))
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'policy must be sticky or round-robin')
    const timeoutMs = options.timeoutMs ?? TIMEOUT_MS_DEFAULT
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > TIMEOUT_MS_MAX) {
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `timeoutMs must be an integer from 1 to ${TIMEOUT_MS_MAX}`)
    }
    this.endpoints = parseEndpoints(options.nodes)
    this.policy = policy
    this.timeoutMs = timeoutMs
    const ca = caText(options.ca)
    this.#transport = new Transport({
      endpoints: this.endpoints,
      policy,
      timeoutMs,
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      lookup: options.lookup ?? systemLookup,
      headers: authHeaders(options.token),
      ...(ca === undefined ? {} : { dispatcher: () => caDispatcher(ca) }),
    })
  }

  /** Closes the client's own connections (a client with `ca` has its own pool; others share fetch's). */
  close(): Promise<void> {
    return this.#transport.close()
  }

  /** The endpoints requests go to: the node URLs, with each host name expanded to its addresses. */
  resolvedEndpoints(): Promise<readonly string[]> {
    return this.#transport.resolvedEndpoints()
  }

  /** The session's causal token: covers every write this client made (undefined before the first). */
  get token(): string | undefined {
    return this.#session.token
  }

  /** Joins a token from elsewhere (another client's write) into the session, so reads wait for it too. */
  observeToken(token: string): void {
    this.#session.join(token)
  }

  /** The node a sticky client talks to now (for round-robin: where the next request starts). */
  get currentEndpoint(): string {
    return this.#transport.current
  }

  async get(key: string, options: ClientReadOptions = {}): Promise<ClientEntry | undefined> {
    const siblings = options.siblings === true
    const answer = await this.#send({
      method: 'GET',
      path: keyPath(key),
      query: { siblings: siblings ? 'true' : undefined, ...readQuery(options) },
      headers: this.#readHeaders(options.after),
      idempotent: true,
      signal: options.signal,
    })
    if (isNotFound(answer)) return undefined
    checkAnswer(answer)
    if (siblings) return entryWithSiblings(key, answer)
    return {
      key,
      value: answer.body,
      contentType: answer.headers.get('content-type') ?? BYTES_TYPE,
      version: versionFromEntityTag(answer.headers.get('etag')),
      siblingCount: siblingCountOf(answer.headers.get('x-siblings')),
    }
  }

  async put(key: string, value: Uint8Array | string, options: ClientPutOptions = {}): Promise<ClientWriteResult> {
    if (typeof value !== 'string' && !(value instanceof Uint8Array))
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a value is a Uint8Array or a string')
    const contentType = options.contentType ?? (typeof value === 'string' ? TEXT_TYPE : BYTES_TYPE)
    const answer = await this.#send({
      method: 'PUT',
      path: keyPath(key),
      query: concernQuery(options),
      headers: {
        'content-type': contentType,
        'if-match': options.ifMatch === undefined ? undefined : entityTagOf(options.ifMatch),
        'if-none-match': options.ifNoneMatch === true ? '*' : undefined,
        'x-context': options.context === undefined ? undefined : entityTagOf(options.context),
      },
      body: value,
      idempotent: false,
      signal: options.signal,
    })
    const body = this.#written(answer)
    return { key: stringField(body, 'key'), version: stringField(body, 'version'), token: stringField(body, 'token') }
  }

  /** Deletes a key: `true` when it was there, `false` when it was already missing. */
  async del(key: string, options: ClientDeleteOptions = {}): Promise<boolean> {
    const answer = await this.#send({
      method: 'DELETE',
      path: keyPath(key),
      query: concernQuery(options),
      headers: {
        'if-match': options.ifMatch === undefined ? undefined : entityTagOf(options.ifMatch),
        'x-context': options.context === undefined ? undefined : entityTagOf(options.context),
      },
      idempotent: false,
      signal: options.signal,
    })
    if (isNotFound(answer)) return false
    this.#written(answer)
    return true
  }

  /** One page of keys in order (`next` continues it). */
  async list(options: ClientListOptions = {}): Promise<ClientListPage> {
    const answer = await this.#send({
      method: 'GET',
      path: '/v1/kv',
      query: {
        prefix: options.prefix,
        start: options.start,
        end: options.end,
        limit: options.limit === undefined ? undefined : String(options.limit),
        cursor: options.cursor,
        reverse: options.reverse === true ? 'true' : undefined,
        timeout_ms: waitOf(options.waitMs),
      },
      headers: this.#readHeaders(options.after),
      idempotent: true,
      signal: options.signal,
    })
    const body = jsonOf(answer)
    const items = body['items']
    if (!Array.isArray(items)) throw malformed('items is not a list')
    const next = body['next']
    if (next !== null && typeof next !== 'string') throw malformed('next is not a string or null')
    return { items: items.map(listItem), next }
  }

  /**
   * Every item in the range, following pages. `limit` here bounds the total (the page size is
   * the node's default, or smaller when fewer items are still wanted).
   */
  async *scan(options: ClientListOptions = {}): AsyncGenerator<ClientListItem> {
    let remaining = options.limit ?? Number.POSITIVE_INFINITY
    let cursor = options.cursor
    while (remaining > 0) {
      const pageLimit = Number.isFinite(remaining) ? Math.min(remaining, 1000) : undefined
      const page = await this.list({ ...options, cursor, limit: pageLimit })
      for (const item of page.items) {
        yield item
        remaining--
      }
      if (page.next === null || page.items.length === 0) return
      cursor = page.next
    }
  }

  /** Adds `delta` (default 1) to a counter; resolves to its value after the add. */
  async incr(name: string, delta = 1, options: ClientConcernOptions = {}): Promise<number> {
    if (!Number.isSafeInteger(delta) || delta === 0)
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a counter delta must be a non-zero integer')
    const answer = await this.#send({
      method: 'POST',
      path: namePath('counters', name),
      query: concernQuery(options),
      headers: { 'content-type': JSON_TYPE },
      body: JSON.stringify({ delta }),
      idempotent: false,
      signal: options.signal,
    })
    return numberField(this.#written(answer), 'value')
  }

  /** A counter's value (0 for one never written). */
  async counter(name: string, options: Omit<ClientReadOptions, 'siblings'> = {}): Promise<number> {
    const answer = await this.#send({
      method: 'GET',
      path: namePath('counters', name),
      query: readQuery(options),
      headers: this.#readHeaders(options.after),
      idempotent: true,
      signal: options.signal,
    })
    return numberField(jsonOf(answer), 'value')
  }

  /** Adds members to a set; resolves to its members after the change. */
  async sadd(name: string, members: readonly string[], options: ClientConcernOptions = {}): Promise<string[]> {
    return this.#updateSet(name, { add: checkMembers(members) }, options)
  }

  /** Removes members from a set; resolves to its members after the change. */
  async srem(name: string, members: readonly string[], options: ClientConcernOptions = {}): Promise<string[]> {
    return this.#updateSet(name, { remove: checkMembers(members) }, options)
  }

  async smembers(name: string, options: Omit<ClientReadOptions, 'siblings'> = {}): Promise<string[]> {
    const answer = await this.#send({
      method: 'GET',
      path: namePath('sets', name),
      query: readQuery(options),
      headers: this.#readHeaders(options.after),
      idempotent: true,
      signal: options.signal,
    })
    return stringArrayField(jsonOf(answer), 'members')
  }

  /**
   * A document as one Yjs update (with `sv`, only what a holder of that state vector lacks), or
   * undefined when it has no content (never written, or deleted).
   */
  async getDoc(name: string, options: ClientDocReadOptions = {}): Promise<Uint8Array | undefined> {
    const headers = this.#readHeaders(options.after)
    const answer = await this.#send(docReadSpec(name, { ...options, format: 'update' }, headers))
    if (isNotFound(answer)) return undefined
    checkAnswer(answer)
    return answer.body
  }

  /** A document's top-level types as JSON (`types` names their kinds), or undefined when it has no content. */
  async getDocJson(
    name: string,
    options: Omit<ClientDocReadOptions, 'sv'> & { types?: Readonly<Record<string, ClientDocTypeKind>> } = {},
  ): Promise<Record<string, unknown> | undefined> {
    const answer = await this.#send(docReadSpec(name, { ...options, format: 'json' }, this.#readHeaders(options.after)))
    if (isNotFound(answer)) return undefined
    return jsonOf(answer)
  }

  /** Applies a Yjs update (v1) to a document, as one change. */
  async applyDocUpdate(
    name: string,
    update: Uint8Array,
    options: ClientConcernOptions = {},
  ): Promise<ClientDocWriteResult> {
    return docWritten(this.#written(await this.#send(docWriteSpec(name, update, options))))
  }

  /** Deletes what the node that takes it holds of a document (an update concurrent with it stays). */
  async deleteDoc(name: string, options: ClientConcernOptions = {}): Promise<ClientDocWriteResult> {
    return docWritten(this.#written(await this.#send(docWriteSpec(name, null, options))))
  }

  /**
   * A consistent export of the node the policy picks (one store snapshot), as the lines of the
   * export format without their newlines (`ExportReader` in api/ checks them), streamed. A
   * stream cut midway fails with `MESHKV_ERR_EXPORT_TRUNCATED` or ends without its trailer.
   */
  async *export(options: ClientExportOptions = {}): AsyncGenerator<string> {
    const stream = await this.#exchange(exportSpec(options), async (response, endpoint) => {
      if (response.status !== 200) checkAnswer(await readAnswer(response, endpoint))
      if (response.body === null) throw malformed('the export has no body')
      return response.body
    })
    yield* streamLines(stream)
  }

  /** The status of the node the policy picks (`endpoint` says which one answered). */
  async status(options: { signal?: AbortSignal } = {}): Promise<ClientStatus> {
    const answer = await this.#send({ method: 'GET', path: '/v1/status', idempotent: true, signal: options.signal })
    const body = jsonOf(answer)
    stringField(body, 'nodeId')
    return { ...(body as unknown as ClientStatus), endpoint: answer.endpoint }
  }

  /** The cluster's members, as the node the policy picks knows them. */
  async members(options: { signal?: AbortSignal } = {}): Promise<ClientMember[]> {
    const answer = await this.#send({ method: 'GET', path: '/v1/members', idempotent: true, signal: options.signal })
    const body = jsonOf(answer)
    if (!Array.isArray(body['members']))
      throw new MeshError('MESHKV_ERR_DECODE', 'the node answered members without a members list')
    return body['members'] as ClientMember[]
  }

  /**
   * Forgets a dead member for good (through the node the policy picks). Idempotent. A member the
   * node still sees alive is refused (`MESHKV_ERR_MEMBER_ALIVE`) unless `force` is set.
   */
  async forget(nodeId: string, options: ClientForgetOptions = {}): Promise<ClientMember[]> {
    const answer = await this.#send({
      method: 'DELETE',
      path: `/v1/members/${encodeURIComponent(nodeId)}`,
      query: { force: options.force === true ? 'true' : undefined },
      idempotent: true,
      signal: options.signal,
    })
    checkAnswer(answer)
    const body = jsonOf(answer)
    return body['members'] as ClientMember[]
  }

  /** Makes an access token (an admin's call). The token itself is in the answer and nowhere else, ever. */
  async createToken(options: ClientCreateTokenOptions): Promise<CreatedToken> {
    const answer = await this.#send({
      method: 'POST',
      path: '/v1/tokens',
      headers: { 'content-type': JSON_TYPE },
      body: createTokenBody(options),
      idempotent: false,
      signal: options.signal,
    })
    return createdTokenOf(jsonOf(answer))
  }

  /** Every token of the cluster, without their secrets. */
  async listTokens(options: { signal?: AbortSignal } = {}): Promise<TokenInfo[]> {
    const answer = await this.#send({ method: 'GET', path: '/v1/tokens', idempotent: true, signal: options.signal })
    return tokenListOf(jsonOf(answer))
  }

  /**
   * Revokes a token on every node (as its removal replicates). An unknown id is
   * `MESHKV_ERR_NOT_FOUND`; not retried elsewhere once sent, so a revoke that did happen is not
   * then reported as unknown.
   */
  async revokeToken(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const answer = await this.#send({
      method: 'DELETE',
      path: tokenPath(id),
      idempotent: false,
      signal: options.signal,
    })
    checkAnswer(answer)
  }

  /** The digest of the whole state of the node the policy picks (`kvctl verify` asks each node). */
  async digest(options: { signal?: AbortSignal } = {}): Promise<ClientDigest> {
    const answer = await this.#send({ method: 'GET', path: '/v1/digest', idempotent: true, signal: options.signal })
    const body = jsonOf(answer)
    stringField(body, 'digest')
    return { ...(body as unknown as Omit<ClientDigest, 'endpoint'>), endpoint: answer.endpoint }
  }

  /**
   * Changes on one node as they commit, from `since` or from now on. Opening the stream fails
   * over like any read; once open, the stream stays on its node (cursors belong to one node's
   * log), and if that node goes away the iterator throws `MESHKV_ERR_UNREACHABLE` with the last
   * cursor in `details.lastEventId`. Aborting `signal` ends the iterator quietly.
   */
  async *watch(options: ClientWatchOptions = {}): AsyncGenerator<ClientWatchEvent> {
    const signal = options.signal
    let opened: { stream: ReadableStream<Uint8Array>; endpoint: string }
    try {
      opened = await this.#exchange(
        {
          method: 'GET',
          path: '/v1/watch',
          query: { prefix: options.prefix, since: options.since },
          headers: { accept: 'text/event-stream' },
          idempotent: true,
          signal,
        },
        async (response, endpoint) => {
          if (response.status !== 200) checkAnswer(await readAnswer(response, endpoint))
          if (response.body === null) throw malformed('the watch stream has no body')
          return { stream: response.body, endpoint }
        },
      )
    } catch (error) {
      if (signal?.aborted === true && error instanceof MeshError && error.code === 'MESHKV_ERR_ABORTED') return
      throw error
    }
    yield* readEvents(opened.stream, opened.endpoint, signal)
  }

  async #updateSet(
    name: string,
    change: { add?: string[]; remove?: string[] },
    options: ClientConcernOptions,
  ): Promise<string[]> {
    const answer = await this.#send({
      method: 'POST',
      path: namePath('sets', name),
      query: concernQuery(options),
      headers: { 'content-type': JSON_TYPE },
      body: JSON.stringify(change),
      idempotent: false,
      signal: options.signal,
    })
    return stringArrayField(this.#written(answer), 'members')
  }

  /** A write's answer: checked, its token joined into the session, its JSON body returned. */
  #written(answer: Answer): Record<string, unknown> {
    const body = jsonOf(answer)
    this.#session.observe(typeof body['token'] === 'string' ? body['token'] : answer.headers.get(CAUSAL_TOKEN_HEADER))
    return body
  }

  #readHeaders(after: string | undefined): Record<string, string | undefined> {
    return { [CAUSAL_TOKEN_HEADER]: this.#session.readToken(after) }
  }

  /** One request, buffered, with failover. */
  #send(spec: RequestSpec): Promise<Answer> {
    return this.#exchange(spec, readAnswer)
  }

  #exchange<T>(spec: RequestSpec, read: ResponseReader<T>): Promise<T> {
    return this.#transport.exchange(spec, read)
  }
}
