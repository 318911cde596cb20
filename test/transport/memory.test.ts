/**
 * The in-memory transport: the conformance suite, then what a simulator needs of it — every frame
 * (handshake included) joins the link's queue as encoded bytes and arrives when the scheduler
 * delivers it, in order per direction; a frame never delivered is lost; timers come from the
 * network, partitions cut links on both sides at once and heal through backoff, and the same seed
 * gives the same trace.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { Frame } from '../../src/codec/peer.js'
import { PROTOCOL_VERSION } from '../../src/codec/peer.js'
import { LinkCodec } from '../../src/codec/link-codec.js'
import type { MemoryNetworkOptions } from '../../src/transport/memory.js'
import { MemoryNetwork, MemoryTransport } from '../../src/transport/memory.js'
import type { CoreTransportOptions } from '../../src/transport/core.js'
import type { LinkEnd } from '../../src/transport/memory-link.js'
import { LinkScheduler } from '../../src/transport/memory-link.js'
import { prng } from '../helpers/async.js'
import type { TransportHarness, HarnessNode, StartOptions } from './conformance.js'
import { CLUSTER, SECRET, TEST_TIMINGS, testTransportOptions, transportConformance } from './conformance.js'
import { Recorder, conversation, freshNodeId, sameMessages } from './helpers.js'

function memoryHarness(network = new MemoryNetwork()): TransportHarness {
  const running = new Set<MemoryTransport>()
  let next = 0
  return {
    async start(options: StartOptions = {}): Promise<HarnessNode> {
      next += 1
      const url = options.url ?? `memory://node-${next}`
      const nodeId = options.nodeId ?? freshNodeId()
      const transport = new MemoryTransport(network, {
        nodeId,
        clusterId: options.clusterId ?? CLUSTER,
        secret: options.secret ?? SECRET,
        advertiseUrl: url,
        ...TEST_TIMINGS,
        handshakeTimeoutMs: 1_000,
        ...options.options,
      })
      running.add(transport)
      return { nodeId, url, transport, events: new Recorder(transport, options.recordMessages ?? true) }
    },
    async stop(node) {
      await node.transport.close()
    },
    alias(url) {
      network.alias(`${url}/alias`, url)
      return `${url}/alias`
    },
    async dispose() {
      await Promise.all([...running].map((transport) => transport.close()))
    },
  }
}

transportConformance('MemoryTransport', () => memoryHarness())

/** A clock for timers that moves only when told to. */
class ManualClock {
  now = 0
  private timers: { at: number; order: number; callback: () => void; cancelled: boolean }[] = []
  private order = 0

  readonly setTimer = (callback: () => void, ms: number): (() => void) => {
    const timer = { at: this.now + ms, order: this.order++, callback, cancelled: false }
    this.timers.push(timer)
    return () => {
      timer.cancelled = true
    }
  }

  /** Runs every timer due within `ms`, in time order, letting microtasks run between them. */
  async advance(ms: number): Promise<void> {
    const until = this.now + ms
    for (;;) {
      await flush()
      const due = this.timers
        .filter((timer) => !timer.cancelled && timer.at <= until)
        .sort((x, y) => x.at - y.at || x.order - y.order)[0]
      if (due === undefined) break
      this.timers = this.timers.filter((timer) => timer !== due)
      this.now = due.at
      due.callback()
    }
    this.now = until
    await flush()
  }
}

/** Lets queued microtasks (and their follow-ups) run. */
async function flush(): Promise<void> {
  for (let round = 0; round < 20; round += 1) await Promise.resolve()
}

/** A deterministic byte source: mulberry32 over a seed. */
function seededBytes(seed: number): (size: number) => Uint8Array {
  let state = seed >>> 0
  return (size) => {
    const out = new Uint8Array(size)
    for (let index = 0; index < size; index += 1) {
      state = (state + 0x6d2b79f5) >>> 0
      let t = state
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      out[index] = (t ^ (t >>> 14)) & 0xff
    }
    return out
  }
}

/** A frame queued on a link: who sent it to whom (by address), its bytes, and how to deliver it. */
interface Held {
  readonly deliver: () => void
  readonly end: LinkEnd
  readonly from: string
  readonly to: string
  readonly bytes: Uint8Array
  readonly frame: Frame
}

/** A network whose deliveries wait in `held` until the test runs them. */
function heldNetwork(
  clock = new ManualClock(),
  extra: MemoryNetworkOptions = {},
): { network: MemoryNetwork; held: Held[]; clock: ManualClock } {
  const held: Held[] = []
  // Each direction's frames read as its receiver reads them: in order, through a codec of its own.
  const readers = new WeakMap<object, LinkCodec>()
  const scheduler: LinkScheduler = new LinkScheduler(prng(1), {
    onQueued: (end) => {
      const bytes = end.outbox[end.outbox.length - 1] as Uint8Array
      const from = end.other.url ?? ''
      const to = end.url ?? ''
      const reader = readers.get(end) ?? new LinkCodec(PROTOCOL_VERSION)
      readers.set(end, reader)
      held.push({ deliver: () => scheduler.deliverFrom(end), end, from, to, bytes, frame: reader.decode(bytes) })
    },
  })
  const network = new MemoryNetwork({ setTimer: clock.setTimer, scheduler, ...extra })
  return { network, held, clock }
}

function options(
  nodeId: NodeId,
  advertiseUrl: string,
  extra: Partial<CoreTransportOptions> = {},
): CoreTransportOptions {
  return testTransportOptions(nodeId, advertiseUrl, extra)
}

/** Runs held deliveries until none are left (or `limit` were run). */
async function deliverAll(held: Held[], limit = 1_000): Promise<void> {
  for (let count = 0; held.length > 0 && count < limit; count += 1) {
    held.shift()!.deliver()
    await flush()
  }
}

describe('MemoryTransport under a simulator', () => {
  const transports: MemoryTransport[] = []
  const start = (
    network: MemoryNetwork,
    nodeId: NodeId,
    url: string,
    extra?: Partial<CoreTransportOptions>,
  ): { transport: MemoryTransport; events: Recorder } => {
    const transport = new MemoryTransport(network, options(nodeId, url, extra))
    transports.push(transport)
    return { transport, events: new Recorder(transport) }
  }

  afterEach(async () => {
    await Promise.all(transports.splice(0).map((transport) => transport.close()))
  })

  it('every frame joins the queue as encoded bytes: challenge, hello, welcome, then messages', async () => {
    const { network, held } = heldNetwork()
    const a = start(network, freshNodeId(), 'memory://a')
    const b = start(network, freshNodeId(), 'memory://b')
    a.transport.keep('memory://b')
    await flush()
    const seen: string[] = []
    while (held.length > 0) {
      const next = held.shift()!
      seen.push(`${next.from}>${next.to}:${next.frame.type}`)
      next.deliver()
      await flush()
    }
    expect(seen).toEqual([
      'memory://b>memory://a:challenge',
      'memory://a>memory://b:hello',
      'memory://b>memory://a:welcome',
    ])
    expect(a.events.open).toHaveLength(1)
    expect(b.events.open).toHaveLength(1)
    const messages = conversation(a.transport.identity.nodeId, b.transport.identity.nodeId)
    for (const message of messages) a.events.open[0]!.link.send(message)
    expect(held.map((entry) => entry.frame.type)).toEqual(['sync', 'changes', 'changes', 'ack'])
    await deliverAll(held)
    expect(sameMessages(b.events.open[0]!.messages, messages)).toBe(true)
  })

  it('each direction delivers in order, whatever the scheduler does meanwhile; a cut loses what is queued', async () => {
    const { network, held } = heldNetwork()
    const a = start(network, freshNodeId(), 'memory://a')
    const b = start(network, freshNodeId(), 'memory://b')
    a.transport.keep('memory://b')
    await deliverAll(held)
    const messages = conversation(a.transport.identity.nodeId, b.transport.identity.nodeId)
    for (const message of messages) a.events.open[0]!.link.send(message)
    const queued = held.splice(0)
    // Delivering "the last" frame first still delivers the first one queued: a link is a stream.
    queued[3]!.deliver()
    queued[0]!.deliver()
    await flush()
    expect(b.events.open[0]!.messages.map((message) => message.type)).toEqual(['sync', 'changes'])
    expect(sameMessages(b.events.open[0]!.messages, messages.slice(0, 2))).toBe(true)
    network.partition('memory://a', 'memory://b')
    queued[1]!.deliver()
    queued[2]!.deliver()
    await flush()
    expect(b.events.links[0]!.messages).toHaveLength(2)
  })

  it('a dropped handshake frame ends in a timeout on the network clock', async () => {
    const { network, held, clock } = heldNetwork()
    const a = start(network, freshNodeId(), 'memory://a')
    start(network, freshNodeId(), 'memory://b')
    a.transport.keep('memory://b')
    await flush()
    expect(held.map((entry) => entry.frame.type)).toEqual(['challenge'])
    held.splice(0) // the challenge is lost
    await clock.advance(999)
    expect(a.events.refusals).toEqual([])
    await clock.advance(1)
    expect(a.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_UNREACHABLE'])
    expect(a.events.links).toEqual([])
  })

  it('a partition closes both sides at once, refuses dials, and heal lets keep() redial', async () => {
    const { network, held, clock } = heldNetwork()
    const a = start(network, freshNodeId(), 'memory://a')
    const b = start(network, freshNodeId(), 'memory://b')
    a.transport.keep('memory://b')
    await deliverAll(held)
    const onA = a.events.open[0]!
    const onB = b.events.open[0]!
    onA.link.send({ type: 'ack', vc: {} })
    network.partition('memory://a', 'memory://b')
    expect(onA.closes).toHaveLength(1)
    expect(onB.closes).toHaveLength(1)
    await deliverAll(held) // the ack in flight is lost with the link
    expect(onB.messages).toEqual([])
    await clock.advance(1_000)
    expect(a.events.refusals.length).toBeGreaterThan(1)
    expect(a.events.refusals.every((refusal) => refusal.code === 'MESHKV_ERR_UNREACHABLE')).toBe(true)
    expect(a.events.open).toEqual([])
    network.heal('memory://a', 'memory://b')
    for (let round = 0; round < 10 && a.events.open.length === 0; round += 1) {
      await clock.advance(TEST_TIMINGS.reconnectMaxMs)
      await deliverAll(held)
    }
    expect(a.events.open).toHaveLength(1)
    expect(b.events.open).toHaveLength(1)
    expect(onA.closes).toHaveLength(1)
  })

  it('a scheduler that delivers at once (re-entrantly) still forms a link', async () => {
    const scheduler: LinkScheduler = new LinkScheduler(prng(2), { onQueued: (end) => scheduler.deliverFrom(end) })
    const network = new MemoryNetwork({ scheduler })
    const a = start(network, freshNodeId(), 'memory://a')
    const b = start(network, freshNodeId(), 'memory://b')
    a.transport.keep('memory://b')
    await expect
      .poll(() => a.events.open.length === 1 && b.events.open.length === 1, { timeout: 1_000, message: 'links' })
      .toBe(true)
    const messages = conversation(a.transport.identity.nodeId, b.transport.identity.nodeId)
    for (const message of messages) a.events.open[0]!.link.send(message)
    expect(sameMessages(b.events.open[0]!.messages, messages)).toBe(true)
  })

  it('a duplicated handshake frame closes that connection (1008); the next dial succeeds', async () => {
    const { network, held, clock } = heldNetwork()
    const a = start(network, freshNodeId(), 'memory://a')
    const b = start(network, freshNodeId(), 'memory://b')
    a.transport.keep('memory://b')
    await flush()
    const challenge = held.shift()!
    // The network repeats the challenge (a fault no socket shows, but a decoder must survive).
    challenge.end.outbox.unshift(challenge.bytes)
    challenge.deliver()
    challenge.deliver()
    await flush()
    expect(a.events.refusals.map((refusal) => refusal.code)).toEqual(['MESHKV_ERR_DECODE'])
    for (let round = 0; round < 10 && a.events.open.length === 0; round += 1) {
      await deliverAll(held)
      await clock.advance(TEST_TIMINGS.reconnectMaxMs)
    }
    expect(a.events.open).toHaveLength(1)
    expect(b.events.open).toHaveLength(1)
  })

  it('the same seed gives the same trace', async () => {
    async function trace(seed: number): Promise<string[]> {
      const { network, held, clock } = heldNetwork()
      const ids = seededBytes(seed)
      const nodeId = (): NodeId => Buffer.from(ids(8)).toString('hex') as NodeId
      const randomBytes = seededBytes(seed + 1)
      const a = start(network, nodeId(), 'memory://a', { randomBytes })
      const b = start(network, nodeId(), 'memory://b', { randomBytes })
      a.transport.keep('memory://b')
      b.transport.keep('memory://a')
      const out: string[] = []
      for (let round = 0; round < 50; round += 1) {
        while (held.length > 0) {
          const next = held.shift()!
          out.push(`${clock.now} ${next.from}>${next.to} ${Buffer.from(next.bytes).toString('base64')}`)
          next.deliver()
          await flush()
        }
        await clock.advance(10)
      }
      out.push(
        `links ${a.events.links.map((record) => record.link.id).join(',')} ${b.events.links.map((record) => record.link.id).join(',')}`,
      )
      await Promise.all([a.transport.close(), b.transport.close()])
      return out
    }
    const first = await trace(7)
    expect(first.length).toBeGreaterThan(3)
    expect(await trace(7)).toEqual(first)
    expect(await trace(8)).not.toEqual(first)
  })

  it('a URL nobody registered is unreachable; a taken address is refused', async () => {
    const network = new MemoryNetwork()
    const a = start(network, freshNodeId(), 'memory://a')
    a.transport.keep('memory://nobody')
    await a.events.refusal('MESHKV_ERR_UNREACHABLE', 1_000, 'an unreachable refusal')
    expect(() => new MemoryTransport(network, options(freshNodeId(), 'memory://a'))).toThrow(/taken/)
  })
})
