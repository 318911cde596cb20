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
import type { NodeId, VectorClock } from '../clock/index.js'
import { isNodeId, isVectorClock, vcJoin } from '../clock/index.js'
import { STATE_BYTES_MAX, decodeChecked, decodeState, encode, encodeState } from '../codec/index.js'
import { isBytes, isRecord } from '../codec/guards.js'
import type { AnyState, Space, StateOf } from '../crdt/index.js'
import { SPACES, joinState } from '../crdt/index.js'
import { KEY_BYTES_PROTOCOL_MAX } from '../codec/guards.js'
import type { Store } from '../storage/index.js'
import type { Parking } from './bounds.js'
import type { Limits } from './options.js'
import { checkKey } from './values.js'
import type { PeerDispatcher } from './peer-fetch.js'
import { MeshError } from '../errors.js'

export const PEER_AUTH_HEADER = 'x-meshkv-peer'
export const STATE_MEDIA_TYPE = 'application/vnd.meshkv.state+msgpack'
/** How old a signed request may be. */
const AUTH_SKEW_MS = 60_000
/** A state answer: a stored state (at most STATE_BYTES_MAX) and the answering node's clock. */
const STATE_ANSWER_BYTES_MAX = STATE_BYTES_MAX + 1024 * 1024

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
    STATE_ANSWER_BYTES_MAX,
  )
  return { state: decodeState(space, raw.state), vc: raw.vc }
}

export interface QuorumReadInput<S extends Space> {
  space: S
  key: string
  /** This node's own state of the key and its clock when read. */
  own: StateOf[S]
  ownVc: VectorClock
  /** Answers needed, this node's included. */
  required: number
  /** Other members with a URL. */
  targets: readonly { nodeId: NodeId; url: string }[]
  secret: string | undefined
  self: NodeId
  now: () => number
  timeoutMs: number
  /** Over TLS: the dispatcher that presents this node's certificate and trusts the cluster CA. */
  dispatcher?: PeerDispatcher | undefined
  /** Ends the read (the caller's signal joined with the node's, which aborts on close). */
  signal: AbortSignal
  /** The node's parked reads: the read holds a place while it waits (`MESHKV_ERR_BUSY` when none is free). */
  parked?: Parking
}

/**
 * Joins the key's state from `required` members. Requests still in flight once enough have
 * answered (or when the read ends any other way) are aborted, so no socket outlives the read.
 */
export async function quorumRead<S extends Space>(input: QuorumReadInput<S>): Promise<StateOf[S]> {
  const { required, targets, secret } = input
  if (secret === undefined || targets.length + 1 < required) {
    throw new MeshError(
      'MESHKV_ERR_READ_QUORUM',
      `r asks for ${required} members, but this node can reach ${targets.length + 1} (members with a URL)`,
      { details: { required, answered: 1 } },
    )
  }
  const release = input.parked?.take()
  try {
    return await joinAnswers(input)
  } finally {
    release?.()
  }
}

async function joinAnswers<S extends Space>(input: QuorumReadInput<S>): Promise<StateOf[S]> {
  const { space, key, required, targets, secret, timeoutMs } = input
  let state: AnyState = input.own
  let vc = input.ownVc
  let answered = 1
  const met = new AbortController()
  const abort = AbortSignal.any([met.signal, AbortSignal.timeout(timeoutMs), input.signal])
  try {
    await new Promise<void>((resolve) => {
      let pending = targets.length
      abort.addEventListener('abort', () => resolve(), { once: true })
      for (const target of targets) {
        fetchState(target.url, space, key, secret as string, input, abort)
          .then((answer) => {
            if (answered >= required) return
            state = joinState(space, state as StateOf[S], vc, answer.state, answer.vc)
            vc = vcJoin(vc, answer.vc)
            answered++
          })
          .catch(() => undefined)
          .finally(() => {
            pending--
            if (answered >= required || pending === 0) resolve()
          })
      }
    })
  } finally {
    met.abort()
  }
  if (answered < required) {
    throw new MeshError(
      'MESHKV_ERR_READ_QUORUM',
      `only ${answered} of the ${required} members asked for answered within ${timeoutMs} ms`,
      { details: { required, answered, timeoutMs } },
    )
  }
  return state as StateOf[S]
}

async function fetchState<S extends Space>(
  base: string,
  space: S,
  key: string,
  secret: string,
  from: { self: NodeId; now: () => number; dispatcher?: PeerDispatcher | undefined },
  signal: AbortSignal,
): Promise<StateAnswer<S>> {
  const url = `${base.replace(/\/+$/, '')}/v1/internal/state/${space}/${encodeURIComponent(key)}`
  const response = await fetch(url, {
    headers: { [PEER_AUTH_HEADER]: signStateRequest(secret, from.self, from.now(), space, key) },
    signal,
    ...(from.dispatcher === undefined ? {} : { dispatcher: from.dispatcher }),
  })
  if (response.status !== 200 || response.headers.get('content-type') !== STATE_MEDIA_TYPE) {
    await response.body?.cancel()
    throw new Error(`answered ${response.status}`)
  }
  return decodeStateAnswer(space, new Uint8Array(await response.arrayBuffer()))
}

/**
 * The answer to another member's state request: the key's encoded state and this node's clock
 * (read first, so the answer claims no more than the state holds). Checks the request's proof.
 */
export async function answerStateRequest(
  node: { store: Store; secret: string | undefined; now: number; limits: Limits },
  spaceName: string,
  key: string,
  auth: unknown,
): Promise<Uint8Array> {
  if (!SPACES.includes(spaceName as Space))
    throw new MeshError('MESHKV_ERR_NOT_FOUND', `no key space ${JSON.stringify(spaceName)}`)
  const space = spaceName as Space
  verifyStateRequest(node.secret, auth, node.now, space, key)
  checkKey(key, { ...node.limits, keyBytesMax: KEY_BYTES_PROTOCOL_MAX })
  const vc = node.store.vc
  const state = await node.store.getState(space, key)
  // A stored state may be as large as STATE_BYTES_MAX; the answer around it adds a clock.
  return encode({ state: encodeState(state), vc }, STATE_ANSWER_BYTES_MAX)
}
