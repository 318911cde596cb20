/** Links between nodes: the `Transport` interface and its WebSocket and in-memory implementations. */
export * from './transport.js'
export {
  AcceptorHandshake,
  DialerHandshake,
  handshakeProof,
  isSupportedVersion,
  linkIdOf,
  proofMatches,
} from './handshake.js'
export type { HandshakeIdentity, HandshakeStep, PeerIdentity, Refusal, Role } from './handshake.js'
export type { Cancel, Channel, SetTimer } from './connection.js'
export { Link } from './connection.js'
export { TRANSPORT_DEFAULTS, backoffDelayMs, keepsNewLink } from './core.js'
export type { CoreTransportOptions } from './core.js'
export {
  CLOSE_GRACE_MS,
  FRAGMENTS_MAX,
  PEER_PATH,
  PENDING_SOCKETS_MAX_DEFAULT,
  UPGRADE_HEADERS_MAX,
  WebSocketTransport,
  bytesOf,
  peerUrlOf,
  refuseUpgrade,
  servingUpgradeListeners,
} from './websocket.js'
export type { WebSocketTransportOptions } from './websocket.js'
export { MemoryNetwork, MemoryTransport } from './memory.js'
export type { MemoryNetworkOptions } from './memory.js'
export { IDLE_TURNS, LINK_HIGH_WATER_FRAMES_DEFAULT, LinkEnd, LinkPair, LinkScheduler } from './memory-link.js'
export type { Delivery, PairOptions, Peer } from './memory-link.js'
