/** The HTTP client for apps: many endpoints, failover, a causal token carried per session. */
export { MeshClient, TIMEOUT_MS_DEFAULT, TIMEOUT_MS_MAX } from './client.js'
export { keyPath } from './paths.js'
export { parseEndpoints } from './endpoints.js'
export type { RoutingPolicy } from './endpoints.js'
export type * from './types.js'
export { EXPORT_FORMAT, EXPORT_VERSION, ExportReader } from '../api/index.js'
export type { ExportEntry, ExportHeader, ExportLine, ExportTrailer, ExportType } from '../api/index.js'
