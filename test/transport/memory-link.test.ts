/**
 * The in-memory link (src/transport/memory-link.ts) the replication tests run on must behave like a peer link, or the tests
 * prove nothing: FIFO per direction, frames through the codec, drained() as backpressure, one
 * close per end, and the same order for the same seed.
 */
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import { LinkScheduler } from '../../src/transport/memory-link.js'
import { prng } from '../helpers/async.js'

const A = { nodeId: '000000000000000a' as NodeId, url: 'sim://a' }
const B = { nodeId: '000000000000000b' as NodeId, url: null }
const ack = (seq: number): PeerMessage => ({ type: 'ack', vc: { [A.nodeId]: seq } })
const seqOf = (message: PeerMessage): number => (message.type === 'ack' ? (message.vc[A.nodeId] ?? 0) : -1)

describe('LinkScheduler and LinkPair', () => {
  it('names the other node on each end, dialed on one side and accepted on the other', () => {
    const pair = new LinkScheduler(prng(1)).pair(A, B)
    expect(pair.dialer).toMatchObject({
      nodeId: B.nodeId,
      url: null,
      direction: 'dialed',
      self: A.nodeId,
      closed: false,
    })
    expect(pair.acceptor).toMatchObject({
      nodeId: A.nodeId,
      url: 'sim://a',
      direction: 'accepted',
      self: B.nodeId,
      closed: false,
    })
    expect(pair.endOf(A.nodeId)).toBe(pair.dialer)
    expect(pair.endOf(B.nodeId)).toBe(pair.acceptor)
  })

  it('delivers each direction in order, asynchronously, through the codec', async () => {
    const scheduler = new LinkScheduler(prng(2))
    const pair = scheduler.pair(A, B)
    const other = scheduler.pair(A, B)
    const heard: { link: number; seq: number; message: PeerMessage }[] = []
    pair.acceptor.onMessage((message) => heard.push({ link: 1, seq: seqOf(message), message }))
    other.acceptor.onMessage((message) => heard.push({ link: 2, seq: seqOf(message), message }))
    for (let seq = 1; seq <= 20; seq++) {
      expect(pair.dialer.send(ack(seq))).toBe(true)
      expect(other.dialer.send(ack(seq))).toBe(true)
    }
    expect(heard).toEqual([])
    expect(scheduler.pending).toBe(40)
    await scheduler.run()
    for (const link of [1, 2])
      expect(heard.filter((item) => item.link === link).map((item) => item.seq)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      )
    // The two links interleave: order across links is the scheduler's choice.
    expect(heard.map((item) => item.link)).not.toEqual([...Array<number>(20).fill(1), ...Array<number>(20).fill(2)])
    // What arrives was decoded: a copy, not the object sent.
    const sent = ack(7)
    pair.dialer.send(sent)
    await scheduler.run()
    expect(heard.at(-1)?.message).toEqual(sent)
    expect(heard.at(-1)?.message).not.toBe(sent)
  })

  it('keeps messages that arrive before anyone listens until a listener comes', async () => {
    const scheduler = new LinkScheduler(prng(3))
    const pair = scheduler.pair(A, B)
    pair.dialer.send(ack(1))
    pair.dialer.send(ack(2))
    await scheduler.run()
    const heard: number[] = []
    pair.acceptor.onMessage((message) => heard.push(seqOf(message)))
    expect(heard).toEqual([1, 2])
  })

  it('drained() waits while the queue is at its high-water mark and resolves as it empties', async () => {
    const scheduler = new LinkScheduler(prng(4))
    const pair = scheduler.pair(A, B, { highWater: 3 })
    pair.dialer.send(ack(1))
    pair.dialer.send(ack(2))
    await pair.dialer.drained()
    pair.dialer.send(ack(3))
    let drained = false
    void pair.dialer.drained().then(() => (drained = true))
    await Promise.resolve()
    expect(drained).toBe(false)
    expect(scheduler.deliverFrom(pair.dialer)).toBe(true)
    await Promise.resolve()
    expect(drained).toBe(true)
  })

  it('a held direction delivers nothing until released', async () => {
    const scheduler = new LinkScheduler(prng(5))
    const pair = scheduler.pair(A, B)
    const heard: number[] = []
    pair.acceptor.onMessage((message) => heard.push(seqOf(message)))
    pair.dialer.held = true
    pair.dialer.send(ack(1))
    await scheduler.run()
    expect(heard).toEqual([])
    pair.dialer.held = false
    await scheduler.run()
    expect(heard).toEqual([1])
  })

  it('close() closes both ends once: queued frames are lost, each end hears the code once', async () => {
    const scheduler = new LinkScheduler(prng(6))
    const pair = scheduler.pair(A, B)
    const heard: string[] = []
    const delivered: number[] = []
    pair.acceptor.onMessage((message) => delivered.push(seqOf(message)))
    pair.dialer.onClose((code, reason) => heard.push(`dialer ${code} ${reason}`))
    pair.acceptor.onClose((code, reason) => heard.push(`acceptor ${code} ${reason}`))
    pair.dialer.send(ack(1))
    let drained = false
    const waiting = scheduler.pair(A, B, { highWater: 1 })
    waiting.dialer.send(ack(1))
    void waiting.dialer.drained().then(() => (drained = true))

    pair.acceptor.close(4000, 'duplicate link')
    // The closing end hears at once, the other on the next microtask.
    expect(heard).toEqual(['acceptor 4000 duplicate link'])
    await Promise.resolve()
    expect(heard).toEqual(['acceptor 4000 duplicate link', 'dialer 4000 duplicate link'])
    pair.dialer.close(1000)
    pair.acceptor.close(1001)
    pair.cut()
    await scheduler.run()
    expect(heard).toHaveLength(2)
    expect(delivered).toEqual([])
    expect(pair.dialer.closed && pair.acceptor.closed).toBe(true)
    expect(pair.dialer.send(ack(2))).toBe(false)
    expect([pair.dialer.closeCode, pair.acceptor.closeCode]).toEqual([4000, 4000])
    // A listener that comes after the close still hears it, once.
    const late: number[] = []
    pair.dialer.onClose((code) => late.push(code))
    await Promise.resolve()
    expect(late).toEqual([4000])
    // A cut is the network failing: both ends hear 1006; drained() waiters are released.
    waiting.cut()
    expect([waiting.dialer.closeCode, waiting.acceptor.closeCode]).toEqual([1006, 1006])
    await Promise.resolve()
    expect(drained).toBe(true)
  })

  it('cutHalf() leaves one end believing the link is up, sending into the void, until notice()', async () => {
    const scheduler = new LinkScheduler(prng(7))
    const pair = scheduler.pair(A, B)
    const codes: string[] = []
    const heard: number[] = []
    pair.dialer.onClose((code) => codes.push(`dialer ${code}`))
    pair.acceptor.onClose((code) => codes.push(`acceptor ${code}`))
    pair.dialer.onMessage((message) => heard.push(seqOf(message)))
    pair.acceptor.onMessage((message) => heard.push(seqOf(message)))
    pair.dialer.send(ack(1))
    const notice = pair.cutHalf(pair.acceptor)
    expect(codes).toEqual(['acceptor 1006'])
    expect(pair.acceptor.closed).toBe(true)
    expect(pair.dialer.closed).toBe(false)
    expect(pair.acceptor.send(ack(2))).toBe(false)
    expect(pair.dialer.send(ack(3))).toBe(true)
    await pair.dialer.drained()
    await scheduler.run()
    expect(heard).toEqual([])
    expect(scheduler.pairs.has(pair)).toBe(false)
    notice()
    notice()
    expect(codes).toEqual(['acceptor 1006', 'dialer 1006'])
    expect(pair.dialer.closed).toBe(true)
  })

  it('the same seed gives the same delivery order', async () => {
    async function order(seed: number): Promise<string> {
      const scheduler = new LinkScheduler(prng(seed), { trace: true })
      const pairs = [
        scheduler.pair(A, B, { weight: 1 }),
        scheduler.pair(B, A, { weight: 3 }),
        scheduler.pair(A, B, { weight: 0.2 }),
      ]
      for (const pair of pairs) for (let seq = 1; seq <= 10; seq++) for (const end of pair.ends) end.send(ack(seq))
      await scheduler.run()
      return scheduler.trace.map((delivery) => `${delivery.link}:${delivery.from}:${seqOf(delivery.message)}`).join(' ')
    }
    expect(await order(42)).toBe(await order(42))
    expect(await order(42)).not.toBe(await order(43))
  })
})
