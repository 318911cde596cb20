/**
 * The vocabulary of meshkv's public API that the node, HTTP, the client and the CLIs share:
 * access roles and tokens, concerns, content types, numeric settings, and the export file format.
 * Pure: it imports errors only.
 */
export * from './access.js'
export * from './concern.js'
export * from './media.js'
export * from './numbers.js'
export * from './role.js'
export * from './export-format.js'
