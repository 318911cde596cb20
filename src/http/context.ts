/**
 * What the route files of one app share: the node, the app's settings, and the state that
 * `closeApp` changes. One per `buildApp` call, so two apps never share a stream or a flag.
 */
import type { MeshNode } from '../node/index.js'
import type { AuthRefusals } from './auth.js'

export interface AppContext {
  readonly node: MeshNode
  /** How often an idle watch stream sends a `: heartbeat` comment. */
  readonly heartbeatMs: number
  /** Set by `closeApp`: `/readyz` answers 503 and new watch streams are refused. */
  closing: boolean
  /** The open watch streams: aborting a controller ends its stream, and the promise settles then. */
  readonly streams: Map<AbortController, Promise<void>>
  /** The most watch streams open at once (`watchStreamsMax`); a stream holds its place from its request on. */
  readonly watchStreamsMax: number
  /** Client connections open now, and what was refused for lack of room (watch streams, connections). */
  readonly load: { connections: number; refused: { watch: number; connections: number } }
  /** Requests auth refused (401, 403), by why (auth.ts). */
  readonly authRefused: AuthRefusals
  /** Records a request the normal hooks do not see (a hijacked watch stream) in the metrics. */
  observe: (route: string, method: string, status: number, seconds: number) => void
}
