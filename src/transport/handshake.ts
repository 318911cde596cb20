/**
 * The peer handshake as pure functions and two small state machines, one per role. The wire
 * format is written out in replication/protocol.ts:
 *
 *   acceptor → dialer   challenge { version, clusterId, nodeId, nonce, instance }
 *   dialer   → acceptor hello     { version, clusterId, nodeId, url, nonce, instance, proof = HMAC(secret, "dialer" ‖ cluster ‖ acceptor nonce ‖ dialer id ‖ acceptor id) }
 *   acceptor → dialer   welcome   { proof = HMAC(secret, "acceptor" ‖ cluster ‖ dialer nonce ‖ acceptor id ‖ dialer id) }
 *
 * HMAC is HMAC-SHA256 keyed with the cluster secret. The role string binds a proof to its
 * direction (an acceptor's proof can never pass as a dialer's), the cluster id (length-prefixed)
 * binds it to one cluster, so one secret reused by two clusters never merges them, the other
 * side's fresh nonce makes a recorded proof useless on the next link, and both ids bind it to
 * this pair of nodes. Proofs
 * are compared in constant time.
 *
 * The same node id on both sides is this very process (it dialed its own address: refused with
 * 1000 and MESHKV_ERR_CONFIG, never redialed) when both sides carry the same `instance`, or either
 * carries none (an older node). With two different instances it is another live process with this
 * node's id (a cloned data directory): both proofs are still checked, so a stranger without the
 * secret can never make a node believe it has a clone, and the acceptor sends its welcome before it
 * closes with 4009 (MESHKV_ERR_NODE_ID_CONFLICT); each side then reports the conflict as seen here. The state machines take frames in and give frames or a verdict
 * out; they never touch a socket or a timer, so both transports run exactly the same code.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { NodeId } from '../clock/index.js'
import type { ChallengeMessage, Frame, HandshakeMessage, HelloMessage, WelcomeMessage } from '../codec/peer.js'
import { INSTANCE_BYTES, NONCE_BYTES, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, linkVersion } from '../codec/peer.js'
import type { ErrorCode } from '../errors.js'
import { assert } from '../errors.js'
import { CLOSE_CODES } from './transport.js'

export type Role = 'dialer' | 'acceptor'

/** Who this node is, as far as the handshake is concerned. */
export interface HandshakeIdentity {
  readonly nodeId: NodeId
  readonly clusterId: string
  readonly secret: string
  readonly advertiseUrl: string | null
  /** This process's instance id (INSTANCE_BYTES); none: sent without one, like an older node. */
  readonly instance?: Uint8Array
}

/** The other side, once its proof checked out. */
export interface PeerIdentity {
  readonly nodeId: NodeId
  /** The URL the peer said it can be dialed at (acceptor side), or the URL dialed (dialer side). */
  readonly url: string | null
  /** The same on both sides of one link: a hash of both nonces. */
  readonly linkId: string
  /** The peer process's instance id in hex, or null when it sent none. */
  readonly instance: string | null
  /** The protocol version the link runs: the lower of both sides' (`linkVersion`). */
  readonly version: number
}

/** Why a handshake failed: the close code to send and the MeshError code to report. */
export interface Refusal {
  readonly closeCode: number
  readonly errorCode: ErrorCode
  readonly message: string
  /** The node id the other side claimed, when it got that far. */
  readonly nodeId: NodeId | null
}

/**
 * What the caller does after feeding a frame in: send a frame, and/or open, or refuse. A refusal
 * with a frame to send sends it first (a welcome to a proven clone).
 */
export interface HandshakeStep {
  readonly send?: HandshakeMessage
  readonly peer?: PeerIdentity
  readonly refusal?: Refusal
}

/** The parts of a proof that name the link: whose proof, in which cluster, to whom. */
export interface ProofSubject {
  readonly role: Role
  readonly clusterId: string
  /** The other side's fresh nonce. */
  readonly nonce: Uint8Array
  readonly ownId: NodeId
  readonly otherId: NodeId
}

/**
 * HMAC-SHA256(secret, role ‖ len(cluster) ‖ cluster ‖ nonce ‖ ownId ‖ otherId): the prover shows
 * it holds the secret. The cluster id is the only part of variable length, hence its prefix.
 */
export function handshakeProof(secret: string, subject: ProofSubject): Uint8Array {
  const { role, clusterId, nonce, ownId, otherId } = subject
  const cluster = Buffer.from(clusterId, 'utf8')
  const length = Buffer.alloc(2)
  length.writeUInt16BE(cluster.length)
  const hmac = createHmac('sha256', secret)
  hmac.update(role, 'utf8')
  hmac.update(length)
  hmac.update(cluster)
  hmac.update(nonce)
  hmac.update(ownId, 'utf8')
  hmac.update(otherId, 'utf8')
  return new Uint8Array(hmac.digest())
}

/** Constant-time comparison; a length mismatch is answered first (timingSafeEqual throws on it). */
export function proofMatches(expected: Uint8Array, actual: Uint8Array): boolean {
  if (expected.length !== actual.length) return false
  return timingSafeEqual(expected, actual)
}

/** A peer of `PROTOCOL_VERSION_MIN` or later; a newer one speaks this node's version on the link. */
export function isSupportedVersion(version: number): boolean {
  return version >= PROTOCOL_VERSION_MIN
}

/** One id for a link that both sides compute alike: sha256(challenge nonce ‖ hello nonce). */
export function linkIdOf(challengeNonce: Uint8Array, helloNonce: Uint8Array): string {
  return createHash('sha256').update(challengeNonce).update(helloNonce).digest('hex').slice(0, 32)
}

function refusal(closeCode: number, errorCode: ErrorCode, message: string, nodeId: NodeId | null): HandshakeStep {
  return { refusal: { closeCode, errorCode, message, nodeId } }
}

function unexpected(frame: Frame, expected: string): HandshakeStep {
  return refusal(
    CLOSE_CODES.policy,
    'MESHKV_ERR_DECODE',
    `expected ${expected} during the handshake, got ${frame.type}`,
    null,
  )
}

function hexOf(instance: Uint8Array | undefined): string | null {
  return instance === undefined ? null : Buffer.from(instance).toString('hex')
}

/** The other side runs this node's id from another process: both sent an instance, and they differ. */
function isClone(identity: HandshakeIdentity, frame: ChallengeMessage | HelloMessage): boolean {
  const [own, other] = [hexOf(identity.instance), hexOf(frame.instance)]
  return frame.nodeId === identity.nodeId && own !== null && other !== null && own !== other
}

/** The refusal of a proven peer that runs this node's id in another process. */
export function conflictRefusal(identity: HandshakeIdentity, other: Uint8Array | undefined): Refusal {
  return {
    closeCode: CLOSE_CODES.idConflict,
    errorCode: 'MESHKV_ERR_NODE_ID_CONFLICT',
    message: `another live process runs this node id (instance ${hexOf(other) ?? '?'}, this one ${hexOf(identity.instance) ?? '?'})`,
    nodeId: identity.nodeId,
  }
}

/** The fields every first frame carries; `instance` only when this process has one. */
function firstFrameFields(identity: HandshakeIdentity): { instance?: Uint8Array } {
  if (identity.instance === undefined) return {}
  assert(identity.instance.length === INSTANCE_BYTES, 'an instance id has INSTANCE_BYTES bytes')
  return { instance: identity.instance }
}

/** Checks shared by both roles on the other side's first frame. */
function checkPeer(identity: HandshakeIdentity, frame: ChallengeMessage | HelloMessage): HandshakeStep | null {
  if (!isSupportedVersion(frame.version)) {
    return refusal(
      CLOSE_CODES.policy,
      'MESHKV_ERR_DECODE',
      `peer speaks protocol version ${frame.version}, this node ${PROTOCOL_VERSION_MIN} to ${PROTOCOL_VERSION}`,
      frame.nodeId,
    )
  }
  if (frame.clusterId !== identity.clusterId) {
    return refusal(
      CLOSE_CODES.otherCluster,
      'MESHKV_ERR_CLUSTER_MISMATCH',
      `peer belongs to cluster ${JSON.stringify(frame.clusterId)}, not ${JSON.stringify(identity.clusterId)}`,
      frame.nodeId,
    )
  }
  if (frame.nodeId === identity.nodeId && !isClone(identity, frame)) {
    return refusal(
      CLOSE_CODES.normal,
      'MESHKV_ERR_CONFIG',
      'the peer is this node itself (it dialed its own address)',
      frame.nodeId,
    )
  }
  return null
}

/**
 * The acceptor's side: `start()` gives the challenge; the hello that comes back is checked and
 * answered with a welcome. Any second frame is a protocol error (the handshake is over).
 */
export class AcceptorHandshake {
  private challenge: ChallengeMessage | null = null
  private done = false

  constructor(
    private readonly identity: HandshakeIdentity,
    private readonly nonce: Uint8Array,
  ) {
    assert(nonce.length === NONCE_BYTES, 'a handshake nonce has NONCE_BYTES bytes')
  }

  start(): ChallengeMessage {
    assert(this.challenge === null, 'a handshake starts once')
    const { nodeId, clusterId } = this.identity
    this.challenge = {
      type: 'challenge',
      version: PROTOCOL_VERSION,
      clusterId,
      nodeId,
      nonce: this.nonce,
      ...firstFrameFields(this.identity),
    }
    return this.challenge
  }

  receive(frame: Frame): HandshakeStep {
    assert(this.challenge !== null, 'the acceptor sends its challenge before it receives')
    if (this.done || frame.type !== 'hello') return unexpected(frame, 'hello')
    this.done = true
    const failed = checkPeer(this.identity, frame)
    if (failed !== null) return failed
    const { secret, nodeId, clusterId } = this.identity
    const expected = handshakeProof(secret, {
      role: 'dialer',
      clusterId,
      nonce: this.challenge.nonce,
      ownId: frame.nodeId,
      otherId: nodeId,
    })
    if (!proofMatches(expected, frame.proof)) {
      return refusal(
        CLOSE_CODES.auth,
        'MESHKV_ERR_AUTH',
        'the peer does not hold the cluster secret (hello proof mismatch)',
        frame.nodeId,
      )
    }
    const welcome: WelcomeMessage = {
      type: 'welcome',
      proof: handshakeProof(secret, {
        role: 'acceptor',
        clusterId,
        nonce: frame.nonce,
        ownId: nodeId,
        otherId: frame.nodeId,
      }),
    }
    // A proven clone still gets the welcome, so that it can check this side's proof too.
    if (isClone(this.identity, frame)) return { send: welcome, refusal: conflictRefusal(this.identity, frame.instance) }
    const peer: PeerIdentity = {
      nodeId: frame.nodeId,
      url: frame.url,
      linkId: linkIdOf(this.challenge.nonce, frame.nonce),
      instance: hexOf(frame.instance),
      version: linkVersion(frame.version),
    }
    return { send: welcome, peer }
  }
}

/**
 * The dialer's side: the challenge is answered with a hello, the welcome checked. `dialedUrl` is
 * what the dialer reports as the peer's URL.
 */
export class DialerHandshake {
  private state: 'challenge' | 'welcome' | 'done' = 'challenge'
  private acceptor: ChallengeMessage | null = null

  constructor(
    private readonly identity: HandshakeIdentity,
    private readonly nonce: Uint8Array,
    private readonly dialedUrl: string | null,
  ) {
    assert(nonce.length === NONCE_BYTES, 'a handshake nonce has NONCE_BYTES bytes')
  }

  /** The node id the acceptor claimed in its challenge (not yet proven before the welcome). */
  get claimedNodeId(): NodeId | null {
    return this.acceptor?.nodeId ?? null
  }

  receive(frame: Frame): HandshakeStep {
    switch (this.state) {
      case 'challenge':
        return frame.type === 'challenge' ? this.answer(frame) : unexpected(frame, 'challenge')
      case 'welcome':
        return frame.type === 'welcome' ? this.verify(frame) : unexpected(frame, 'welcome')
      case 'done':
        return unexpected(frame, 'no handshake frame')
    }
  }

  private answer(challenge: ChallengeMessage): HandshakeStep {
    this.acceptor = challenge
    const failed = checkPeer(this.identity, challenge)
    if (failed !== null) {
      this.state = 'done'
      return failed
    }
    this.state = 'welcome'
    const { secret, nodeId, clusterId, advertiseUrl } = this.identity
    const proof = handshakeProof(secret, {
      role: 'dialer',
      clusterId,
      nonce: challenge.nonce,
      ownId: nodeId,
      otherId: challenge.nodeId,
    })
    const hello: HelloMessage = {
      type: 'hello',
      version: PROTOCOL_VERSION,
      clusterId,
      nodeId,
      url: advertiseUrl,
      nonce: this.nonce,
      proof,
      ...firstFrameFields(this.identity),
    }
    return { send: hello }
  }

  private verify(welcome: WelcomeMessage): HandshakeStep {
    this.state = 'done'
    const acceptor = this.acceptor
    assert(acceptor !== null, 'a welcome is only taken after a challenge')
    const { secret, clusterId, nodeId } = this.identity
    const expected = handshakeProof(secret, {
      role: 'acceptor',
      clusterId,
      nonce: this.nonce,
      ownId: acceptor.nodeId,
      otherId: nodeId,
    })
    if (!proofMatches(expected, welcome.proof)) {
      return refusal(
        CLOSE_CODES.auth,
        'MESHKV_ERR_AUTH',
        'the peer does not hold the cluster secret (welcome proof mismatch)',
        acceptor.nodeId,
      )
    }
    if (isClone(this.identity, acceptor)) return { refusal: conflictRefusal(this.identity, acceptor.instance) }
    const peer: PeerIdentity = {
      nodeId: acceptor.nodeId,
      url: this.dialedUrl,
      linkId: linkIdOf(acceptor.nonce, this.nonce),
      instance: hexOf(acceptor.instance),
      version: linkVersion(acceptor.version),
    }
    return { peer }
  }
}

/** The close reason (with 4000) of a newcomer refused because its id's held link is alive. */
export const ALIVE_REFUSAL_REASON = 'already linked, alive'

/** Maps the close code an acceptor sent during the handshake to what the dialer reports. */
export function refusalOfCloseCode(code: number, reason: string, nodeId: NodeId | null): Refusal | null {
  switch (code) {
    case CLOSE_CODES.auth:
      return {
        closeCode: code,
        errorCode: 'MESHKV_ERR_AUTH',
        message: `the peer refused our proof: ${reason || 'auth'}`,
        nodeId,
      }
    case CLOSE_CODES.otherCluster:
      return {
        closeCode: code,
        errorCode: 'MESHKV_ERR_CLUSTER_MISMATCH',
        message: `the peer is in another cluster: ${reason || 'cluster'}`,
        nodeId,
      }
    case CLOSE_CODES.idConflict:
      // Reported, but not taken as proof of a clone: the acceptor sent no welcome, so it proved
      // nothing (every 4009 this code sends follows a welcome, and ends an open link instead).
      return {
        closeCode: code,
        errorCode: 'MESHKV_ERR_NODE_ID_CONFLICT',
        message: `the peer says another live process runs this node id: ${reason || 'conflict'}`,
        nodeId,
      }
    case CLOSE_CODES.duplicate:
      // The peer holds a live link from this node id, from another process or this one's previous
      // run: said, so the seq guard waits (a clone must not write before it is found out).
      if (reason === ALIVE_REFUSAL_REASON)
        return {
          closeCode: code,
          errorCode: 'MESHKV_ERR_MEMBER_ALIVE',
          message: 'the peer holds a live link from this node id (its previous run, or another process)',
          nodeId,
        }
      // Not a failure: the peer already has a link with us and kept that one.
      return null
    default:
      return {
        closeCode: code,
        errorCode: 'MESHKV_ERR_UNREACHABLE',
        message: `the peer closed during the handshake (${code}${reason ? ` ${reason}` : ''})`,
        nodeId,
      }
  }
}
