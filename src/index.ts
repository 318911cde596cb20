/** meshkv: the embeddable node, its abstract-level face, the HTTP app and the client. */
export { MeshNode, PACKAGE_VERSION, decodeValue } from './node/index.js'
export type * from './node/types.js'
export type { MemberStatus } from './node/index.js'
export { MeshLevel } from './level.js'
export type { MeshLevelOptions } from './level.js'
export { MeshError, ERROR_TABLE, isMeshError } from './errors.js'
export type { ErrorCode } from './errors.js'
export { decodeCausalToken, encodeCausalToken } from './clock/index.js'
export type { NodeId, VectorClock, Hlc } from './clock/index.js'
export { MeshClient } from './client/index.js'
export type {
  MeshClientOptions,
  ClientReadOptions,
  ClientPutOptions,
  ClientDeleteOptions,
  ClientConcernOptions,
  ClientSibling,
  ClientEntry,
  ClientWriteResult,
  ClientListOptions,
  ClientListItem,
  ClientListPage,
  ClientWatchOptions,
  ClientWatchEvent,
  ClientStatus,
  ClientPeerStatus,
  ClientDigest,
} from './client/types.js'
export { buildApp, closeApp } from './http/index.js'
