/**
 * How a node makes HTTP requests to other members (quorum reads ask `/v1/internal/state`): the
 * global `fetch`, and over TLS with an undici dispatcher that presents this node's certificate and
 * trusts only the cluster's CA, as the peer links do. undici is loaded only for a TLS node.
 */
import type { TlsMaterial } from '../api/access.js'

/** What `fetch` takes as `dispatcher`. */
export type PeerDispatcher = NonNullable<RequestInit['dispatcher']>

export interface PeerFetch {
  readonly dispatcher: PeerDispatcher | undefined
  close(): Promise<void>
}

const PLAIN: PeerFetch = { dispatcher: undefined, close: async () => undefined }

export async function peerFetch(tls: TlsMaterial | undefined): Promise<PeerFetch> {
  if (tls === undefined) return PLAIN
  const { Agent } = await import('undici')
  const pem = (value: string | Uint8Array): string | Buffer => (typeof value === 'string' ? value : Buffer.from(value))
  const agent = new Agent({
    connect: { cert: pem(tls.cert), key: pem(tls.key), ...(tls.ca === undefined ? {} : { ca: pem(tls.ca) }) },
  })
  // The package's undici is newer than the one Node 20 bundles (whose types RequestInit uses); its
  // Agent speaks the dispatch protocol Node 20's fetch calls (tested over TLS), hence the cast.
  return { dispatcher: agent as unknown as PeerDispatcher, close: () => agent.close() }
}
