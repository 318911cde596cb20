/**
 * Quorum reads (`r=quorum|all`): a node asks other members for a key's state over HTTP, next to
 * the replication link rather than on it, so a read is not queued behind a long catch-up (and
 * answers while a link is paused). Members prove they belong with an HMAC of the request under
 * the cluster secret, stamped with the time (a request older than the allowed skew is refused).
 *
 *   GET <member url>/v1/internal/state/<space>/<key as URL component>
 *   X-Meshkv-Peer: <nodeId>.<unix ms>.<hex HMAC-SHA256(secret, "state\n" ‖ nodeId ‖ ms ‖ space ‖ key)>
 *   → 200 application/vnd.meshkv.state+msgpack  { state: <encoded state>, vc }
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { NodeId, VectorClock } from './clock/index.js'
import { isNodeId, isVectorClock } from './clock/index.js'
import { decodeChecked, decodeState } from './codec/index.js'
import { isBytes, isRecord } from './codec/guards.js'
import type { Space, StateOf } from './crdt/index.js'
import { MeshError } from './errors.js'

export const PEER_AUTH_HEADER = 'x-meshkv-peer'
export const STATE_MEDIA_TYPE = 'application/vnd.meshkv.state+msgpack'
/** How old a signed request may be. */
const AUTH_SKEW_MS = 60_000

export type ReadConcern = number | 'quorum' | 'all'

export function parseReadConcern(value: unknown): ReadConcern {
  if (value === undefined || value === 1 || value === '1') return 1
  if (value === 'quorum' || value === 'all') return value
  const count = typeof value === 'string' ? Number(value) : value
  if (typeof count === 'number' && Number.isSafeInteger(count) && count >= 1) return count
  throw new MeshError(
    'MESHKV_ERR_INVALID_ARGUMENT',
    `r must be a member count, "quorum" or "all"; got ${JSON.stringify(value)}`,
  )
}

/** Members (this node included) a read must hear from. */
export function requiredAnswers(concern: ReadConcern, members: number): number {
  const required = concern === 'all' ? members : concern === 'quorum' ? Math.floor(members / 2) + 1 : concern
  if (required > members)
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `r=${concern} asks for ${required} members, but the cluster has ${members}`,
    )
  return required
}

function proof(secret: string, nodeId: string, ms: string, space: string, key: string): Buffer {
  return createHmac('sha256', secret).update(`state\n${nodeId}\n${ms}\n${space}\n${key}`).digest()
}

export function signStateRequest(secret: string, nodeId: NodeId, now: number, space: Space, key: string): string {
  const ms = String(Math.floor(now))
  return `${nodeId}.${ms}.${proof(secret, nodeId, ms, space, key).toString('hex')}`
}

/** Checks a member's signed request; throws `MESHKV_ERR_AUTH` when it does not hold. */
export function verifyStateRequest(
  secret: string | undefined,
  header: unknown,
  now: number,
  space: Space,
  key: string,
): NodeId {
  const refuse = (why: string): never => {
    throw new MeshError('MESHKV_ERR_AUTH', `a member's state request was refused: ${why}`)
  }
  if (secret === undefined) return refuse('this node has no cluster secret')
  if (typeof header !== 'string') return refuse(`the ${PEER_AUTH_HEADER} header is missing`)
  const [nodeId, ms, hex] = header.split('.')
  if (
    !isNodeId(nodeId) ||
    ms === undefined ||
    !/^\d{1,16}$/.test(ms) ||
    hex === undefined ||
    !/^[0-9a-f]{64}$/.test(hex)
  )
    return refuse('the header is malformed')
  if (Math.abs(now - Number(ms)) > AUTH_SKEW_MS) return refuse("the request is stamped too far from this node's clock")
  if (!timingSafeEqual(Buffer.from(hex, 'hex'), proof(secret, nodeId, ms, space, key)))
    return refuse('the proof does not match the cluster secret')
  return nodeId
}

export interface StateAnswer<S extends Space> {
  state: StateOf[S]
  vc: VectorClock
}

export function decodeStateAnswer<S extends Space>(space: S, bytes: Uint8Array): StateAnswer<S> {
  const raw = decodeChecked(
    bytes,
    (value): value is { state: Uint8Array; vc: VectorClock } =>
      isRecord(value) && isBytes(value['state']) && isVectorClock(value['vc']),
    'state answer',
  )
  return { state: decodeState(space, raw.state), vc: raw.vc }
}
