/**
 * Which node a request goes to. A client holds a list of node URLs and a policy:
 *
 * - `sticky`: every request starts at the current endpoint (the first one at the start). When it
 *   fails in a way that proves the node is not serving (no connection, or 503), the client moves
 *   to the next endpoint and stays there, so a session keeps talking to one node while it lives.
 * - `round-robin`: each request starts one endpoint further than the last, spreading the load;
 *   a failed attempt moves on to the next endpoint the same way.
 *
 * Either way one request tries each endpoint at most once. Pure: no I/O, no clock; the DNS
 * look-up that `expandEndpoints` needs is passed in (the client passes `systemLookup` from
 * `transport.ts`).
 */
import { isIP, isIPv6 } from 'node:net'
import { MeshError } from '../errors.js'

export type RoutingPolicy = 'sticky' | 'round-robin'

/** More endpoints than this is a mistake in the configuration, not a cluster. */
export const ENDPOINTS_MAX = 64

/** Node URLs from a list or a comma-separated string: trimmed, validated, without a trailing slash. */
export function parseEndpoints(nodes: readonly string[] | string): string[] {
  const parts = typeof nodes === 'string' ? nodes.split(',') : [...nodes]
  const endpoints = parts.map((part) => (typeof part === 'string' ? part.trim() : '')).filter((part) => part.length > 0)
  if (endpoints.length === 0)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'at least one node URL is required (e.g. http://127.0.0.1:7700)')
  if (endpoints.length > ENDPOINTS_MAX)
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `at most ${ENDPOINTS_MAX} node URLs are allowed`)
  return endpoints.map(normalizeEndpoint)
}

function normalizeEndpoint(text: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch (error) {
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `${JSON.stringify(text)} is not a node URL (e.g. http://127.0.0.1:7700)`,
      { cause: error },
    )
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `the node URL ${JSON.stringify(text)} must use http: or https:`)
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `the node URL ${JSON.stringify(text)} must not carry a query, fragment or credentials`,
    )
  }
  return url.href.replace(/\/+$/, '')
}

/**
 * Expands each endpoint whose host is a name into one endpoint per address the name resolves to,
 * keeping the order and dropping repeats. A name that does not resolve is kept as it is (the
 * request to it then fails like any unreachable node).
 */
export async function expandEndpoints(
  endpoints: readonly string[],
  lookup: (hostname: string) => Promise<readonly string[]>,
): Promise<string[]> {
  const expanded: string[] = []
  for (const endpoint of endpoints) {
    const url = new URL(endpoint)
    const host = url.hostname.replace(/^\[|\]$/g, '')
    let addresses: readonly string[] = []
    if (!isIP(host)) addresses = await lookup(host).catch(() => [])
    if (addresses.length === 0) expanded.push(endpoint)
    for (const address of addresses) {
      const copy = new URL(endpoint)
      copy.hostname = isIPv6(address) ? `[${address}]` : address
      expanded.push(copy.href.replace(/\/+$/, ''))
    }
  }
  return [...new Set(expanded)].slice(0, ENDPOINTS_MAX)
}

export function isRoutingPolicy(value: unknown): value is RoutingPolicy {
  return value === 'sticky' || value === 'round-robin'
}

export class EndpointPicker {
  readonly endpoints: readonly string[]
  readonly policy: RoutingPolicy
  #current = 0
  #nextStart = 0

  constructor(endpoints: readonly string[], policy: RoutingPolicy) {
    this.endpoints = endpoints
    this.policy = policy
  }

  /** The endpoints one request tries, in order: each once, starting where the policy says. */
  plan(): string[] {
    const count = this.endpoints.length
    let start: number
    if (this.policy === 'sticky') start = this.#current
    else {
      start = this.#nextStart
      this.#nextStart = (this.#nextStart + 1) % count
    }
    return Array.from({ length: count }, (_, offset) => this.endpoints[(start + offset) % count] as string)
  }

  /** The endpoint did not serve: a sticky client moves past it (and stays on the next one). */
  markFailed(endpoint: string): void {
    if (this.policy !== 'sticky' || this.endpoints[this.#current] !== endpoint) return
    this.#current = (this.#current + 1) % this.endpoints.length
  }

  /** The endpoint answered: a sticky client stays on it. */
  markServed(endpoint: string): void {
    if (this.policy !== 'sticky') return
    const index = this.endpoints.indexOf(endpoint)
    if (index >= 0) this.#current = index
  }

  /** The endpoint a sticky client is on now (for round-robin: where the next request starts). */
  get current(): string {
    return this.endpoints[this.policy === 'sticky' ? this.#current : this.#nextStart] as string
  }
}
