/**
 * The handshake as pure functions: proofs bind secret, role, nonce and both ids; comparison is
 * length-checked; the two state machines agree with each other, refuse every wrong turn with the
 * right close code and error code, and succeed exactly when the secrets and clusters match.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { ChallengeMessage, Frame, HelloMessage } from '../../src/codec/peer.js'
import { PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import { backoffDelayMs } from '../../src/transport/core.js'
import type { HandshakeIdentity, HandshakeStep, ProofSubject } from '../../src/transport/handshake.js'
import {
  AcceptorHandshake,
  DialerHandshake,
  handshakeProof,
  linkIdOf,
  proofMatches,
  refusalOfCloseCode,
} from '../../src/transport/handshake.js'
import { CLOSE_CODES } from '../../src/transport/transport.js'
import { PROPERTY } from '../helpers/runs.js'

const A = '00000000000000aa' as NodeId
const B = '00000000000000bb' as NodeId
const nonceOf = (fill: number): Uint8Array => new Uint8Array(32).fill(fill)
const instanceOf = (fill: number): Uint8Array => new Uint8Array(8).fill(fill)

function who(nodeId: NodeId, extra: Partial<HandshakeIdentity> = {}): HandshakeIdentity {
  return { nodeId, clusterId: 'c', secret: 's', advertiseUrl: `http://${nodeId}`, ...extra }
}

/** Frames cross the wire as bytes, so the state machines see decoded copies. */
function wire(frame: Frame): Frame {
  return decodeFrame(encodeFrame(frame))
}

/** Runs a whole handshake; returns each side's last step. */
function run(
  acceptorWho: HandshakeIdentity,
  dialerWho: HandshakeIdentity,
): { acceptor: HandshakeStep; dialer: HandshakeStep } {
  const acceptor = new AcceptorHandshake(acceptorWho, nonceOf(1))
  const dialer = new DialerHandshake(dialerWho, nonceOf(2), 'http://acceptor')
  const answer = dialer.receive(wire(acceptor.start()))
  if (answer.send === undefined) return { acceptor: {}, dialer: answer }
  const welcome = acceptor.receive(wire(answer.send))
  if (welcome.send === undefined) return { acceptor: welcome, dialer: answer }
  return { acceptor: welcome, dialer: dialer.receive(wire(welcome.send)) }
}

/** A proof with the usual test subject (cluster 'c', dialer A to B, nonce 1) and `overrides`. */
function proofOf(secret: string, overrides: Partial<ProofSubject> = {}): Uint8Array {
  return handshakeProof(secret, {
    role: 'dialer',
    clusterId: 'c',
    nonce: nonceOf(1),
    ownId: A,
    otherId: B,
    ...overrides,
  })
}

describe('proofs', () => {
  it('are HMAC-SHA256 over role, cluster id, nonce and both ids, each of which matters', () => {
    const proof = proofOf('s')
    expect(proof).toHaveLength(32)
    expect(proofOf('s')).toEqual(proof)
    for (const other of [
      proofOf('t'),
      proofOf('s', { role: 'acceptor' }),
      proofOf('s', { clusterId: 'd' }),
      proofOf('s', { clusterId: 'c\u0000' }),
      proofOf('s', { nonce: nonceOf(2) }),
      proofOf('s', { ownId: B, otherId: A }),
    ]) {
      expect(proofMatches(proof, other)).toBe(false)
    }
  })

  it('are compared length first, then in constant time', () => {
    const proof = proofOf('s')
    expect(proofMatches(proof, proof.slice())).toBe(true)
    expect(proofMatches(proof, proof.subarray(0, 31))).toBe(false)
    expect(proofMatches(proof, new Uint8Array(0))).toBe(false)
    expect(proofMatches(proof, new Uint8Array(64))).toBe(false)
  })

  it('link ids are the same on both sides and differ per nonce pair', () => {
    expect(linkIdOf(nonceOf(1), nonceOf(2))).toBe(linkIdOf(nonceOf(1), nonceOf(2)))
    expect(linkIdOf(nonceOf(1), nonceOf(2))).not.toBe(linkIdOf(nonceOf(2), nonceOf(1)))
  })
})

describe('the handshake state machines', () => {
  it('agree on each other and on the link id', () => {
    const { acceptor, dialer } = run(who(A), who(B))
    const linkId = linkIdOf(nonceOf(1), nonceOf(2))
    expect(acceptor.peer).toEqual({ nodeId: B, url: `http://${B}`, linkId, instance: null, version: PROTOCOL_VERSION })
    expect(dialer.peer).toEqual({
      nodeId: A,
      url: 'http://acceptor',
      linkId,
      instance: null,
      version: PROTOCOL_VERSION,
    })
    // Each side learns the other's instance id when it sends one.
    const both = run(who(A, { instance: instanceOf(1) }), who(B, { instance: instanceOf(2) }))
    expect(both.acceptor.peer?.instance).toBe('0202020202020202')
    expect(both.dialer.peer?.instance).toBe('0101010101010101')
  })

  it('one node id with one instance (or none) is the node itself; with two instances, a conflict after both proofs', () => {
    const self = [
      run(who(A, { instance: instanceOf(1) }), who(A, { instance: instanceOf(1) })),
      run(who(A, { instance: instanceOf(1) }), who(A)),
      run(who(A), who(A, { instance: instanceOf(1) })),
    ]
    for (const { acceptor, dialer } of self) {
      expect(acceptor).toEqual({})
      expect(dialer.refusal).toMatchObject({ closeCode: CLOSE_CODES.normal, errorCode: 'MESHKV_ERR_CONFIG' })
    }
    const clone = run(who(A, { instance: instanceOf(1) }), who(A, { instance: instanceOf(2) }))
    // The acceptor checked the hello's proof, sends its welcome (the dialer checks it) and refuses.
    expect(clone.acceptor.send?.type).toBe('welcome')
    expect(clone.acceptor.peer).toBeUndefined()
    for (const step of [clone.acceptor, clone.dialer]) {
      expect(step.refusal).toMatchObject({
        closeCode: CLOSE_CODES.idConflict,
        errorCode: 'MESHKV_ERR_NODE_ID_CONFLICT',
        nodeId: A,
      })
    }
    // Without the secret, a claimed clone is only a stranger: refused for its proof.
    const stranger = run(who(A, { instance: instanceOf(1) }), who(A, { instance: instanceOf(2), secret: 'x' }))
    expect(stranger.acceptor.refusal).toMatchObject({ closeCode: CLOSE_CODES.auth, errorCode: 'MESHKV_ERR_AUTH' })
    const fakeAcceptor = run(who(A, { instance: instanceOf(1), secret: 'x' }), who(A, { instance: instanceOf(2) }))
    expect(fakeAcceptor.acceptor.refusal?.errorCode).toBe('MESHKV_ERR_AUTH')
  })

  it('an instance id of another length is a malformed frame', () => {
    const challenge = { type: 'challenge', version: PROTOCOL_VERSION, clusterId: 'c', nodeId: A, nonce: nonceOf(1) }
    expect(() => decodeFrame(encodeFrame({ ...challenge, instance: new Uint8Array(7) } as Frame))).toThrow(
      expect.objectContaining({ code: 'MESHKV_ERR_DECODE' }) as Error,
    )
    const decoded = decodeFrame(encodeFrame({ ...challenge, instance: instanceOf(3) } as Frame)) as ChallengeMessage
    expect(Buffer.from(decoded.instance ?? []).toString('hex')).toBe('0303030303030303')
  })

  it('succeed exactly when secret and cluster match', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 8 }),
        fc.string({ minLength: 1, maxLength: 8 }),
        fc.constantFrom('c', 'd'),
        (secretA, secretB, clusterB) => {
          const { acceptor, dialer } = run(
            who(A, { secret: secretA }),
            who(B, { secret: secretB, clusterId: clusterB }),
          )
          const ok = secretA === secretB && clusterB === 'c'
          expect(acceptor.peer !== undefined && dialer.peer !== undefined).toBe(ok)
          if (clusterB !== 'c') expect(dialer.refusal?.closeCode).toBe(CLOSE_CODES.otherCluster)
          else if (!ok) expect(acceptor.refusal?.closeCode).toBe(CLOSE_CODES.auth)
        },
      ),
      PROPERTY,
    )
  })

  it('the acceptor refuses a wrong secret (4401), another cluster (4409), another version, itself', () => {
    const hello = (overrides: Partial<HelloMessage>, secret = 's', provenCluster = 'c'): HandshakeStep => {
      const acceptor = new AcceptorHandshake(who(A), nonceOf(1))
      const challenge = acceptor.start()
      const proof = handshakeProof(secret, {
        role: 'dialer',
        clusterId: provenCluster,
        nonce: challenge.nonce,
        ownId: overrides.nodeId ?? B,
        otherId: A,
      })
      return acceptor.receive({
        type: 'hello',
        version: PROTOCOL_VERSION,
        clusterId: 'c',
        nodeId: B,
        url: null,
        nonce: nonceOf(2),
        proof,
        ...overrides,
      })
    }
    expect(hello({}).peer?.nodeId).toBe(B)
    expect(hello({}, 'wrong').refusal).toMatchObject({
      closeCode: CLOSE_CODES.auth,
      errorCode: 'MESHKV_ERR_AUTH',
      nodeId: B,
    })
    expect(hello({ proof: new Uint8Array(3) }).refusal?.errorCode).toBe('MESHKV_ERR_AUTH')
    // The same secret, but a proof made in another cluster (claiming this one in the hello).
    expect(hello({}, 's', 'd').refusal).toMatchObject({ closeCode: CLOSE_CODES.auth, errorCode: 'MESHKV_ERR_AUTH' })
    expect(hello({ clusterId: 'd' }).refusal).toMatchObject({
      closeCode: CLOSE_CODES.otherCluster,
      errorCode: 'MESHKV_ERR_CLUSTER_MISMATCH',
    })
    // A newer peer is taken: the link runs this side's version. One older than the oldest spoken is not.
    expect(hello({ version: PROTOCOL_VERSION + 1 }).peer?.version).toBe(PROTOCOL_VERSION)
    expect(hello({ version: PROTOCOL_VERSION_MIN }).peer?.version).toBe(PROTOCOL_VERSION_MIN)
    expect(hello({ version: PROTOCOL_VERSION_MIN - 1 }).refusal).toMatchObject({
      closeCode: CLOSE_CODES.policy,
      errorCode: 'MESHKV_ERR_DECODE',
    })
    expect(hello({ nodeId: A }).refusal?.errorCode).toBe('MESHKV_ERR_CONFIG')
  })

  it('the dialer refuses another cluster before it proves anything, itself, and a bad welcome', () => {
    const challenge = (overrides: Partial<ChallengeMessage>): HandshakeStep =>
      new DialerHandshake(who(B), nonceOf(2), null).receive({
        type: 'challenge',
        version: PROTOCOL_VERSION,
        clusterId: 'c',
        nodeId: A,
        nonce: nonceOf(1),
        ...overrides,
      })
    expect(challenge({}).send?.type).toBe('hello')
    expect(challenge({ clusterId: 'd' })).toEqual({
      refusal: expect.objectContaining({ closeCode: CLOSE_CODES.otherCluster }) as object,
    })
    expect(challenge({ version: 0 }).refusal?.closeCode).toBe(CLOSE_CODES.policy)
    expect(challenge({ nodeId: B }).refusal).toMatchObject({
      closeCode: CLOSE_CODES.normal,
      errorCode: 'MESHKV_ERR_CONFIG',
    })

    const dialer = new DialerHandshake(who(B), nonceOf(2), null)
    dialer.receive({ type: 'challenge', version: PROTOCOL_VERSION, clusterId: 'c', nodeId: A, nonce: nonceOf(1) })
    // A welcome proof for another nonce (a replay) fails.
    const replayed = proofOf('s', { role: 'acceptor', nonce: nonceOf(9) })
    expect(dialer.receive({ type: 'welcome', proof: replayed }).refusal?.closeCode).toBe(CLOSE_CODES.auth)
  })

  it('any frame out of turn is a protocol error (1008)', () => {
    const sync: Frame = { type: 'sync', vc: {}, peers: [] }
    const acceptor = new AcceptorHandshake(who(A), nonceOf(1))
    const challenge = acceptor.start()
    expect(acceptor.receive(sync).refusal?.closeCode).toBe(CLOSE_CODES.policy)
    expect(acceptor.receive(challenge).refusal?.closeCode).toBe(CLOSE_CODES.policy)

    const dialer = new DialerHandshake(who(B), nonceOf(2), null)
    expect(dialer.receive({ type: 'welcome', proof: new Uint8Array(32) }).refusal?.closeCode).toBe(CLOSE_CODES.policy)
    const fresh = new DialerHandshake(who(B), nonceOf(2), null)
    const hello = fresh.receive(challenge).send!
    expect(fresh.receive(hello).refusal?.closeCode).toBe(CLOSE_CODES.policy)
    expect(fresh.receive(sync).refusal?.closeCode).toBe(CLOSE_CODES.policy)

    const honest = new AcceptorHandshake(who(A), nonceOf(1))
    const second = new DialerHandshake(who(B), nonceOf(2), null)
    const answer = second.receive(honest.start()).send!
    expect(honest.receive(answer).send?.type).toBe('welcome')
    expect(honest.receive(answer).refusal?.closeCode).toBe(CLOSE_CODES.policy)
  })

  it('close codes from the acceptor map to error codes for the dialer', () => {
    expect(refusalOfCloseCode(CLOSE_CODES.auth, '', A)?.errorCode).toBe('MESHKV_ERR_AUTH')
    expect(refusalOfCloseCode(CLOSE_CODES.otherCluster, '', A)?.errorCode).toBe('MESHKV_ERR_CLUSTER_MISMATCH')
    expect(refusalOfCloseCode(CLOSE_CODES.duplicate, '', A)).toBeNull()
    expect(refusalOfCloseCode(CLOSE_CODES.idConflict, '', A)?.errorCode).toBe('MESHKV_ERR_NODE_ID_CONFLICT')
    expect(refusalOfCloseCode(1006, '', null)?.errorCode).toBe('MESHKV_ERR_UNREACHABLE')
  })
})

describe('redial backoff', () => {
  it('doubles from the base, stays within the cap, and keeps half of each step fixed', () => {
    expect(backoffDelayMs(0, 200, 5_000, 0)).toBe(100)
    expect(backoffDelayMs(0, 200, 5_000, 0.999)).toBeLessThanOrEqual(200)
    expect(backoffDelayMs(3, 200, 5_000, 0)).toBe(800)
    expect(backoffDelayMs(10, 200, 5_000, 0.999)).toBeLessThanOrEqual(5_000)
    expect(backoffDelayMs(1_000, 200, 5_000, 0)).toBe(2_500)
  })
})
