/** The HTTP face: `buildApp(node)` (no listen) and `closeApp(app)`. */
export { buildApp, closeApp, BODY_BYTES_MAX_DEFAULT, HEARTBEAT_MS_DEFAULT } from './app.js'
export type { AppOptions } from './app.js'
export { PROBLEM_CONTENT_TYPE } from './problems.js'
export type { Problem } from './problems.js'
