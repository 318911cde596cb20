/**
 * What replication needs of a peer link: the transport's `PeerLink` (declared in codec/peer.ts,
 * the room both may import) without its `id`, so tests and the simulator can make links simply.
 */
import type { PeerLink } from '../codec/peer.js'

export type PeerLinkLike = Omit<PeerLink, 'id'>
