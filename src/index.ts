/** meshkv: the embeddable node, its abstract-level face, the HTTP app and the client. */
export { MeshNode, PACKAGE_VERSION } from './node.js'
export type * from './node-types.js'
export { decodeValue } from './node-values.js'
export { MeshError, ERROR_TABLE, isMeshError } from './errors.js'
export type { ErrorCode } from './errors.js'
export { decodeCausalToken, encodeCausalToken } from './clock/index.js'
export type { NodeId, VectorClock, Hlc } from './clock/index.js'
