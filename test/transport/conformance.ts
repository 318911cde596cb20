/**
 * The `Transport` conformance suite: one set of behaviours both implementations must show
 * (like abstract-level's exported suite). A test file runs it with a harness that
 * starts and stops nodes of its kind:
 *
 *   transportConformance('WebSocketTransport', () => webSocketHarness())
 *
 * Every wait has a deadline, every test closes what it started (the harness's `dispose`).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { CoreTransportOptions } from '../../src/transport/core.js'
import type { TransportOptions } from '../../src/transport/transport.js'
import { CLOSE_CODES } from '../../src/transport/transport.js'
import type { Transport } from '../../src/transport/transport.js'
import { MeshError } from '../../src/errors.js'
import { cloneConformance } from './clone-conformance.js'
import { Recorder, conversation, freshNodeId, sameMessages } from './helpers.js'

export interface HarnessNode {
  readonly nodeId: NodeId
  /** The URL other nodes keep to reach this one (its advertiseUrl). */
  readonly url: string
  readonly transport: Transport
  readonly events: Recorder
}

export interface StartOptions {
  nodeId?: NodeId
  clusterId?: string
  secret?: string
  /** Restart at the address of a stopped node. */
  url?: string
  /** Option overrides for this node. */
  options?: Partial<TransportOptions>
  /** false: the recorder does not listen to messages (the test does). Default true. */
  recordMessages?: boolean
}

export interface TransportHarness {
  start(options?: StartOptions): Promise<HarnessNode>
  /** Closes the node's transport; its address stops answering until a node starts there again. */
  stop(node: HarnessNode): Promise<void>
  /** Another spelling of `url` that reaches the same node (for self-dial detection). */
  alias(url: string): string
  /** Closes everything still running. */
  dispose(): Promise<void>
}

/** Short timings so that the suite runs in seconds. */
export const TEST_TIMINGS = {
  reconnectBaseMs: 20,
  reconnectMaxMs: 100,
  pingIntervalMs: 100,
  peerTimeoutMs: 2_000,
} as const

export const SECRET = 'conformance-secret'
export const CLUSTER = 'conformance-cluster'

/** Options for a test transport: the suite's cluster, secret and timings, a 1 s handshake deadline. */
export function testTransportOptions<T extends CoreTransportOptions>(
  nodeId: NodeId,
  advertiseUrl: string | null,
  extra: Partial<T> = {},
): CoreTransportOptions & Partial<T> {
  return {
    nodeId,
    clusterId: CLUSTER,
    secret: SECRET,
    advertiseUrl,
    ...TEST_TIMINGS,
    handshakeTimeoutMs: 1_000,
    ...extra,
  }
}
/** Deadline for anything that should happen "soon". */
const SOON_MS = 3_000
/** How long to watch for something that must not happen. */
const QUIET_MS = 300

export function transportConformance(name: string, factory: () => TransportHarness): void {
  describe(`Transport conformance: ${name}`, () => {
    let harness: TransportHarness

    beforeEach(() => {
      harness = factory()
    })

    afterEach(async () => {
      await harness.dispose()
    })

    async function linkedPair(): Promise<{ a: HarnessNode; b: HarnessNode }> {
      const a = await harness.start()
      const b = await harness.start()
      a.transport.keep(b.url)
      await a.events.oneOpen(SOON_MS, 'a link on the dialer')
      await b.events.oneOpen(SOON_MS, 'a link on the acceptor')
      return { a, b }
    }

    it('two nodes with one secret and cluster get exactly one link each, with the right node ids', async () => {
      const { a, b } = await linkedPair()
      await sleep(QUIET_MS)
      expect(a.events.links).toHaveLength(1)
      expect(b.events.links).toHaveLength(1)
      const [onA] = a.events.links
      const [onB] = b.events.links
      expect(onA?.link).toMatchObject({ nodeId: b.nodeId, direction: 'dialed', url: b.url, closed: false })
      expect(onB?.link).toMatchObject({ nodeId: a.nodeId, direction: 'accepted', url: a.url, closed: false })
      expect(onA?.link.id).toBe(onB?.link.id)
      expect(a.events.refusals).toEqual([])
      expect(b.events.refusals).toEqual([])
      // The dialer knows which node is behind the URL it keeps; the acceptor keeps none.
      expect(a.transport.keptUrls()).toEqual([{ url: b.url, nodeId: b.nodeId }])
      expect(b.transport.keptUrls()).toEqual([])
    })

    it('messages flow both ways, in order, with real changes', async () => {
      const { a, b } = await linkedPair()
      const onA = a.events.open[0]!
      const onB = b.events.open[0]!
      const fromA = conversation(a.nodeId, b.nodeId)
      const fromB = conversation(b.nodeId, a.nodeId)
      for (const message of fromA) expect(onA.link.send(message)).toBe(true)
      for (const message of fromB) expect(onB.link.send(message)).toBe(true)
      await onA.link.drained()
      await expect
        .poll(() => onB.messages.length === fromA.length && onA.messages.length === fromB.length, {
          timeout: SOON_MS,
          message: 'all messages',
        })
        .toBe(true)
      expect(sameMessages(onB.messages, fromA)).toBe(true)
      expect(sameMessages(onA.messages, fromB)).toBe(true)
      expect(onB.messages.map((message) => message.type)).toEqual(['sync', 'changes', 'changes', 'ack'])
    })

    it('messages sent before the other side listens are kept for its first listener', async () => {
      const a = await harness.start()
      const b = await harness.start({ recordMessages: false })
      const late: string[] = []
      b.transport.on('link', (link) => {
        setTimeout(() => link.onMessage((message) => late.push(message.type)), 50)
      })
      a.transport.on('link', (link) => {
        for (const message of conversation(a.nodeId, b.nodeId)) link.send(message)
      })
      a.transport.keep(b.url)
      await expect
        .poll(() => late.length === 4, { timeout: SOON_MS, message: 'the messages, once b listens' })
        .toBe(true)
      expect(late).toEqual(['sync', 'changes', 'changes', 'ack'])
    })

    it('a wrong secret gives no link on either side and MESHKV_ERR_AUTH', async () => {
      const a = await harness.start({ secret: 'not-the-cluster-secret' })
      const b = await harness.start()
      a.transport.keep(b.url)
      const dialer = await a.events.refusal('MESHKV_ERR_AUTH', SOON_MS, 'the dialer reports auth')
      const acceptor = await b.events.refusal('MESHKV_ERR_AUTH', SOON_MS, 'the acceptor reports auth')
      expect(dialer.url).toBe(b.url)
      expect(acceptor.nodeId).toBe(a.nodeId)
      await sleep(QUIET_MS)
      expect(a.events.links).toEqual([])
      expect(b.events.links).toEqual([])
    })

    it('another cluster id gives no link and MESHKV_ERR_CLUSTER_MISMATCH', async () => {
      const a = await harness.start({ clusterId: 'another-cluster' })
      const b = await harness.start()
      a.transport.keep(b.url)
      await a.events.refusal('MESHKV_ERR_CLUSTER_MISMATCH', SOON_MS, 'the dialer reports the cluster')
      await b.events.refusal('MESHKV_ERR_CLUSTER_MISMATCH', SOON_MS, 'the acceptor reports the cluster')
      await sleep(QUIET_MS)
      expect(a.events.links).toEqual([])
      expect(b.events.links).toEqual([])
    })

    it('a closed link fires onClose once on each side, and keep() redials', async () => {
      const { a, b } = await linkedPair()
      const first = a.events.open[0]!
      const other = b.events.open[0]!
      other.link.close(CLOSE_CODES.normal, 'test')
      other.link.close(CLOSE_CODES.normal, 'again')
      await expect
        .poll(() => first.closes.length > 0, { timeout: SOON_MS, message: 'the close on the dialer' })
        .toBe(true)
      expect(other.closes).toEqual([{ code: CLOSE_CODES.normal, reason: 'test' }])
      expect(first.closes).toHaveLength(1)
      expect(first.closes[0]?.code).toBe(CLOSE_CODES.normal)
      expect(first.link.send({ type: 'ack', vc: {} })).toBe(false)
      await first.link.drained()
      const late: number[] = []
      first.link.onClose((code) => late.push(code))
      const second = await a.events.oneOpen(SOON_MS, 'a redialed link')
      expect(second.link.id).not.toBe(first.link.id)
      expect(second.link.nodeId).toBe(b.nodeId)
      await b.events.oneOpen(SOON_MS, 'the redialed link on the acceptor')
      expect(late).toEqual([CLOSE_CODES.normal])
      expect(first.closes).toHaveLength(1)
    })

    it('keep() redials after the other side comes back', async () => {
      const { a, b } = await linkedPair()
      const first = a.events.open[0]!
      await harness.stop(b)
      await expect
        .poll(() => first.closes.length > 0, { timeout: SOON_MS, message: 'the link closes when b stops' })
        .toBe(true)
      await a.events.refusal('MESHKV_ERR_UNREACHABLE', SOON_MS, 'redials fail while b is down')
      const again = await harness.start({ nodeId: b.nodeId, url: b.url })
      const second = await a.events.oneOpen(SOON_MS, 'a link once b is back')
      expect(second.link.nodeId).toBe(b.nodeId)
      await again.events.oneOpen(SOON_MS, 'the link on the restarted b')
      expect(first.closes).toHaveLength(1)
    })

    it('forget() closes the link and stops dialing', async () => {
      const { a, b } = await linkedPair()
      const onB = b.events.open[0]!
      a.transport.forget(b.url)
      await expect
        .poll(() => onB.closes.length > 0, { timeout: SOON_MS, message: 'the link closes on the other side' })
        .toBe(true)
      await sleep(QUIET_MS)
      expect(a.events.links).toHaveLength(1)
      expect(a.events.open).toEqual([])
      expect(b.events.links).toHaveLength(1)
    })

    it('forget() stops the redials to an unreachable URL', async () => {
      const a = await harness.start()
      const b = await harness.start()
      await harness.stop(b)
      a.transport.keep(b.url)
      await expect
        .poll(() => a.events.refusals.length >= 2, { timeout: SOON_MS, message: 'a few failed dials' })
        .toBe(true)
      a.transport.forget(b.url)
      await sleep(50)
      const count = a.events.refusals.length
      await sleep(QUIET_MS)
      expect(a.events.refusals.length).toBe(count)
      expect(
        a.events.refusals.every((refusal) => refusal.code === 'MESHKV_ERR_UNREACHABLE' && refusal.url === b.url),
      ).toBe(true)
    })

    it('a node dialing itself gets no link, under its own URL or another spelling', async () => {
      const a = await harness.start()
      a.transport.keep(a.url)
      a.transport.keep(harness.alias(a.url))
      const refusal = await a.events.refusal('MESHKV_ERR_CONFIG', SOON_MS, 'the self-dial is reported')
      expect(refusal.nodeId).toBe(a.nodeId)
      await sleep(QUIET_MS)
      expect(a.events.links).toEqual([])
      // Once found out, the address is not dialed again.
      expect(a.events.refusals).toHaveLength(1)
    })

    it('two nodes that keep each other end up with one link, the same on both sides', async () => {
      const a = await harness.start()
      const b = await harness.start()
      a.transport.keep(b.url)
      b.transport.keep(a.url)
      // A side may see the losing link open for a moment; both settle on the same one.
      await a.events.oneOpen(SOON_MS, 'one link on a')
      await b.events.oneOpen(SOON_MS, 'one link on b')
      await sleep(QUIET_MS)
      const onA = a.events.open.map((record) => record.link.id)
      const onB = b.events.open.map((record) => record.link.id)
      expect(onA).toHaveLength(1)
      expect(onB).toEqual(onA)
      expect(a.events.links.length).toBeLessThanOrEqual(2)
      expect(b.events.links.length).toBeLessThanOrEqual(2)
      for (const record of [...a.events.links, ...b.events.links]) {
        if (record.link.closed)
          expect(record.closes).toEqual([{ code: CLOSE_CODES.duplicate, reason: expect.any(String) as string }])
      }
      expect(a.events.refusals).toEqual([])
      expect(b.events.refusals).toEqual([])
    })

    it('close() ends every link and every dial', async () => {
      const a = await harness.start()
      const b = await harness.start()
      const c = await harness.start()
      a.transport.keep(b.url)
      c.transport.keep(a.url)
      await expect
        .poll(() => a.events.open.length === 2, { timeout: SOON_MS, message: 'a linked to b and c' })
        .toBe(true)
      await harness.stop(a)
      expect(a.events.links.every((record) => record.closes.length === 1)).toBe(true)
      await expect
        .poll(() => b.events.links.every((record) => record.closes.length === 1), {
          timeout: SOON_MS,
          message: 'b sees the close',
        })
        .toBe(true)
      await expect
        .poll(() => c.events.links.every((record) => record.closes.length === 1), {
          timeout: SOON_MS,
          message: 'c sees the close',
        })
        .toBe(true)
      expect(() => a.transport.keep(b.url)).toThrow(MeshError)
      await sleep(QUIET_MS)
      expect(a.events.links).toHaveLength(2)
      expect(b.events.links).toHaveLength(1)
      expect(b.events.refusals).toEqual([])
    })

    it('keep() of the same URL twice dials once; bad URLs are refused', async () => {
      const a = await harness.start()
      const b = await harness.start()
      a.transport.keep(b.url)
      a.transport.keep(b.url)
      await a.events.oneOpen(SOON_MS, 'one link')
      await sleep(QUIET_MS)
      expect(a.events.links).toHaveLength(1)
      expect(() => a.transport.keep('')).toThrow(MeshError)
    })

    it('refuses bad options', async () => {
      const a = await harness.start()
      await expect(harness.start({ nodeId: 'not-a-node-id' as NodeId })).rejects.toThrow(MeshError)
      await expect(harness.start({ secret: '' })).rejects.toThrow(MeshError)
      await expect(harness.start({ options: { pingIntervalMs: -1 } })).rejects.toThrow(MeshError)
      expect(a.events.links).toEqual([])
    })

    cloneConformance(() => harness)
  })
}

export { freshNodeId }
