/**
 * Hostile peers against a REAL node process (docs/testing.md, "Hostile input"): a fake peer on
 * /v1/peer built from the real handshake code, with no secret, a wrong one, or the right one and
 * bad intentions. After each attack the node keeps serving (HTTP answers, an honest peer still
 * links) and has applied nothing it should not (log position, vector clock, HLC and digest
 * unchanged unless the attack was a legitimate write).
 *
 * The transport-level versions of several of these run against a bare transport in
 * test/transport/websocket.test.ts; here the node behind the socket is the real one.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { encode } from '../../src/codec/index.js'
import type { HelloMessage } from '../../src/codec/peer.js'
import { FRAME_BYTES_MAX, encodeFrame } from '../../src/codec/peer.js'
import { CLOSE_CODES } from '../../src/transport/transport.js'
import { FRAGMENTS_MAX } from '../../src/transport/websocket.js'
import { startMeshkv } from '../cli/helpers.js'
import { FakePeer, changeOf, freshNodeId, peerIdentity, putOp } from '../support/fake-peer.js'
import type { RealNode } from './helpers.js'
import { peerFootprint, request, sleep, startRealNode, stopAllNodes } from './helpers.js'

const PEER_TIMEOUT_MS = 1_500
const YEAR_MS = 365 * 24 * 3600 * 1000

let node: RealNode
let scratch: string
const peers: FakePeer[] = []

async function connect(): Promise<FakePeer> {
  const peer = await FakePeer.connect(node.port)
  peers.push(peer)
  return peer
}

/** A fake peer that proved the secret, with the node's first sync received. */
async function linked(nodeId = freshNodeId()): Promise<{ peer: FakePeer; nodeId: typeof nodeId }> {
  const peer = await connect()
  await peer.handshake(peerIdentity(nodeId, node.secret))
  await peer.frame('sync')
  return { peer, nodeId }
}

/**
 * The node still serves: a status request is answered (the timeout is a liveness bound, not a
 * measurement), and an honest peer links and replicates a write.
 */
async function stillServing(): Promise<void> {
  expect((await request(`${node.url}/v1/status`, { timeoutMs: 5_000 })).status).toBe(200)
  const { peer, nodeId } = await linked()
  const key = `honest/${nodeId}`
  peer.send({ type: 'sync', vc: {}, peers: [] })
  peer.send({ type: 'changes', changes: [changeOf(nodeId, [putOp(key, 'fine')])] })
  await vi.waitFor(
    async () =>
      expect(
        (await request(`${node.url}/v1/kv/${key}`)).text === 'fine',
        `the honest change ${key} to be applied`,
      ).toBe(true),
    { timeout: 5_000, interval: 100 },
  )
  peer.destroy()
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'meshkv-hostile-peer-'))
  node = await startRealNode(['--peer-timeout-ms', String(PEER_TIMEOUT_MS)])
}, 60_000)

afterAll(async () => {
  for (const peer of peers) peer.destroy()
  await node?.stop()
  await stopAllNodes()
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
})

describe('peers without the secret', () => {
  it('a wrong secret, an empty proof or a random one is refused with 4401; the changes sent behind it are not applied', async () => {
    const before = await peerFootprint(node)
    const attempts = [
      { name: 'wrong secret', secret: 'not-the-cluster-secret', tamper: undefined },
      {
        name: 'empty proof',
        secret: node.secret,
        tamper: (hello: HelloMessage) => ({ ...hello, proof: new Uint8Array(0) }),
      },
      {
        name: 'random proof',
        secret: node.secret,
        tamper: (hello: HelloMessage) => ({ ...hello, proof: new Uint8Array(randomBytes(32)) }),
      },
    ]
    for (const attempt of attempts) {
      const peer = await connect()
      const nodeId = freshNodeId()
      await peer.handshake(peerIdentity(nodeId, attempt.secret), {
        expectWelcome: false,
        ...(attempt.tamper === undefined ? {} : { tamper: attempt.tamper }),
      })
      // Frames right behind the forged hello, before the refusal arrives.
      peer.send({ type: 'sync', vc: {}, peers: [] })
      peer.send({ type: 'changes', changes: [changeOf(nodeId, [putOp(`stolen/${attempt.name}`, 'x')])] })
      expect({ attempt: attempt.name, code: (await peer.closedWithin(3_000)).code }).toEqual({
        attempt: attempt.name,
        code: CLOSE_CODES.auth,
      })
      expect(peer.frames.map((frame) => frame.type)).toEqual(['challenge'])
    }
    await vi.waitFor(
      () =>
        expect(
          node.logs((record) => record['code'] === 'MESHKV_ERR_AUTH').length >= 3,
          'three auth refusals in the node log',
        ).toBe(true),
      { timeout: 3_000, interval: 100 },
    )
    expect(await peerFootprint(node)).toEqual(before)
    expect(((await request(`${node.url}/v1/kv?prefix=stolen/`)).json?.['items'] as unknown[]).length).toBe(0)
    expect((await node.status()).linked).toEqual([])
    await stillServing()
  })

  it('a node started without a secret answers 404 to a peer upgrade and applies nothing', async () => {
    const lone = await startMeshkv(join(scratch, 'no-secret'))
    try {
      const before = (await request(`${lone.url}/v1/status`)).json
      await expect(FakePeer.connect(lone.port)).rejects.toThrow(/HTTP 404/)
      expect((await request(`${lone.url}/v1/status`)).json?.['lsn']).toBe(before?.['lsn'])
      expect((await request(`${lone.url}/v1/status`)).json?.['linked']).toEqual([])
    } finally {
      lone.child.kill('SIGKILL')
      await lone.exited
    }
  })
})

describe('replayed frames', () => {
  it('a hello recorded from an honest handshake and replayed on a new socket is refused (4401): the challenge nonce is fresh', async () => {
    const nodeId = freshNodeId()
    const honest = await connect()
    const hello = await honest.handshake(peerIdentity(nodeId, node.secret))
    honest.destroy()
    const before = await peerFootprint(node)
    const replay = await connect()
    await replay.frame('challenge')
    replay.send(hello)
    replay.send({ type: 'changes', changes: [changeOf(nodeId, [putOp('replayed/hello', 'x')])] })
    expect((await replay.closedWithin(3_000)).code).toBe(CLOSE_CODES.auth)
    expect(replay.frames.map((frame) => frame.type)).toEqual(['challenge'])
    expect(await peerFootprint(node)).toEqual(before)
  })

  it('a changes frame replayed on its link, on a new link and on an unauthenticated socket is applied once', async () => {
    const { peer, nodeId } = await linked()
    const frame = encodeFrame({
      type: 'changes',
      changes: [changeOf(nodeId, [{ type: 'counter.add', name: 'replayed-counter', delta: 5 }])],
    })
    peer.send({ type: 'sync', vc: {}, peers: [] })
    peer.sendBytes(frame)
    const counterOf = async (name: string): Promise<unknown> =>
      (await request(`${node.url}/v1/counters/${name}`)).json?.['value']
    await expect.poll(() => counterOf('replayed-counter'), { timeout: 5_000, interval: 100 }).toBe(5)
    const duplicatesBefore = (await node.status()).replication['duplicates'] ?? 0
    for (let i = 0; i < 3; i++) peer.sendBytes(frame)
    peer.destroy()
    // The same node id links again (a reconnect) and replays it twice more.
    const again = await connect()
    await again.handshake(peerIdentity(nodeId, node.secret))
    again.sendBytes(frame)
    again.sendBytes(frame)
    // And a socket that never authenticated sends it too.
    const stranger = await connect()
    await stranger.frame('challenge')
    stranger.sendBytes(frame)
    expect((await stranger.closedWithin(3_000)).code).toBe(CLOSE_CODES.policy)
    await vi.waitFor(
      async () =>
        expect(
          ((await node.status()).replication['duplicates'] ?? 0) >= duplicatesBefore + 5,
          'five duplicates counted',
        ).toBe(true),
      { timeout: 5_000, interval: 100 },
    )
    // A sentinel behind the replays on the same link: once it is applied, every replay before it
    // has been handled, so a replay applied twice would show now.
    again.send({
      type: 'changes',
      changes: [changeOf(nodeId, [{ type: 'counter.add', name: 'replayed-sentinel', delta: 1 }])],
    })
    await expect.poll(() => counterOf('replayed-sentinel'), { timeout: 5_000, interval: 100 }).toBe(1)
    expect(await counterOf('replayed-counter')).toBe(5)
    expect((await node.status()).vc[nodeId]).toBe(2)
    again.destroy()
  })
})

describe('a change stamped years in the future', () => {
  it('is refused over an authenticated link, the node HLC unchanged; one within the allowed offset is applied', async () => {
    const before = await peerFootprint(node)
    const refusedBefore = (await node.status()).replication['refused'] ?? 0
    const { peer, nodeId } = await linked()
    const syncs = peer.frames.filter((frame) => frame.type === 'sync').length
    const future = { wallMs: Date.now() + 5 * YEAR_MS, logical: 0 }
    peer.send({ type: 'sync', vc: {}, peers: [] })
    peer.send({
      type: 'changes',
      changes: [
        changeOf(
          nodeId,
          [putOp('future/key', 'from 5 years ahead'), { type: 'counter.add', name: 'future-counter', delta: 1 }],
          { hlc: future },
        ),
      ],
    })
    await vi.waitFor(
      async () =>
        expect(((await node.status()).replication['refused'] ?? 0) > refusedBefore, 'the refusal to be counted').toBe(
          true,
        ),
      { timeout: 5_000, interval: 100 },
    )
    const refusal = await vi.waitFor(
      () => {
        const line = node.logs(
          (record) => record['msg'] === 'change refused' && record['code'] === 'MESHKV_ERR_CLOCK_SKEW',
        )[0]
        expect(line, 'a change refused line with MESHKV_ERR_CLOCK_SKEW').toBeDefined()
        return line
      },
      { timeout: 3_000, interval: 50 },
    )
    expect(refusal).toMatchObject({ origin: nodeId, seq: 1 })
    // The node asks again on its next tick (the change may be fine once its clock catches up).
    await peer.frame('sync', 3_000, syncs + 1)
    const after = await peerFootprint(node)
    expect(after).toEqual(before)
    expect((await node.status()).hlc.wallMs).toBeLessThan(Date.now() + 60_000)
    expect((await request(`${node.url}/v1/kv/future/key`)).status).toBe(404)
    expect((await request(`${node.url}/v1/counters/future-counter`)).json?.['value']).toBe(0)
    // A write on the node itself still gets a clock of now, not of five years on.
    const written = await request(`${node.url}/v1/kv/future/own`, { method: 'PUT', body: 'x' })
    expect(written.status).toBe(200)
    expect((await node.status()).hlc.wallMs).toBeLessThan(Date.now() + 60_000)
    peer.destroy()

    // The control: 10 s ahead is within the default 60 s bound, and is applied.
    const control = await linked()
    const near = { wallMs: Date.now() + 10_000, logical: 0 }
    control.peer.send({ type: 'sync', vc: {}, peers: [] })
    control.peer.send({
      type: 'changes',
      changes: [changeOf(control.nodeId, [putOp('future/near', 'ten seconds ahead')], { hlc: near })],
    })
    await vi.waitFor(
      async () =>
        expect(
          (await request(`${node.url}/v1/kv/future/near`)).status === 200,
          'the near-future change to be applied',
        ).toBe(true),
      { timeout: 5_000, interval: 100 },
    )
    expect((await node.status()).hlc.wallMs).toBeGreaterThanOrEqual(near.wallMs)
    control.peer.destroy()
  })
})

describe('malformed frames', () => {
  const oversized = (): Buffer => Buffer.alloc(FRAME_BYTES_MAX + 1)
  const cases: {
    name: string
    send: (peer: FakePeer, nodeId: ReturnType<typeof freshNodeId>) => void
    code: number
  }[] = [
    { name: 'garbage bytes', send: (peer) => peer.sendBytes(randomBytes(200)), code: CLOSE_CODES.policy },
    {
      name: 'a text frame',
      send: (peer) => peer.sendBytes(Buffer.from('{"type":"changes"}'), { binary: false }),
      code: CLOSE_CODES.policy,
    },
    {
      name: 'a truncated changes frame',
      send: (peer, nodeId) => {
        const frame = encodeFrame({
          type: 'changes',
          changes: [changeOf(nodeId, [putOp('truncated/key', 'x'.repeat(100))])],
        })
        peer.sendBytes(frame.subarray(0, frame.length - 7))
      },
      code: CLOSE_CODES.policy,
    },
    {
      name: 'valid MessagePack of the wrong shape',
      send: (peer) => peer.sendBytes(encode({ type: 'changes', changes: [{ dot: 'x', ops: [] }] })),
      code: CLOSE_CODES.policy,
    },
    { name: 'a frame over 4 MiB', send: (peer) => peer.sendBytes(oversized()), code: CLOSE_CODES.tooBig },
    {
      name: 'a flood of tiny fragments',
      send: (peer) => {
        for (let index = 0; index <= FRAGMENTS_MAX + 10 && !peer.isClosed; index++)
          peer.sendBytes(Buffer.from([index & 0xff]), { fin: false })
      },
      code: CLOSE_CODES.policy,
    },
  ]

  for (const { name, send, code } of cases) {
    it(`${name}, before and after the handshake, closes the link with ${code} and applies nothing`, async () => {
      const before = await peerFootprint(node)
      const stranger = await connect()
      await stranger.frame('challenge')
      send(stranger, freshNodeId())
      expect((await stranger.closedWithin(5_000)).code).toBe(code)
      const { peer, nodeId } = await linked()
      peer.send({ type: 'sync', vc: (await node.status()).vc, peers: [] })
      send(peer, nodeId)
      expect((await peer.closedWithin(5_000)).code).toBe(code)
      await vi.waitFor(
        async () => expect(!(await node.status()).linked.includes(nodeId), 'the link to be gone').toBe(true),
        { timeout: 3_000, interval: 100 },
      )
      expect(await peerFootprint(node)).toEqual(before)
      await stillServing()
    })
  }
})

describe('a peer that never reads', () => {
  it('is dropped while the node streams it a 32 MiB backlog; the node stays within a bounded footprint and keeps serving', async () => {
    // A backlog: 32 values of 1 MiB (the node's value limit) that a new peer must be sent.
    const value = Buffer.alloc(1024 * 1024 - 64, 'v')
    for (let i = 0; i < 32; i++)
      expect(
        (await request(`${node.url}/v1/kv/backlog/${i}`, { method: 'PUT', body: value, timeoutMs: 10_000 })).status,
      ).toBe(200)
    // The baseline is taken once the footprint has settled (two samples a moment apart within 1 MiB).
    let lastRss = 0
    const rssBefore = await vi.waitFor(
      async () => {
        const rss = await node.rssBytes()
        const change = Math.abs(rss - lastRss)
        lastRss = rss
        expect(change, 'the node footprint to settle after the backlog writes').toBeLessThan(2 ** 20)
        return rss
      },
      { timeout: 10_000, interval: 200 },
    )
    const { peer, nodeId } = await linked()
    peer.tcp?.pause()
    peer.send({ type: 'sync', vc: {}, peers: [] })
    let rssMax = rssBefore
    const sampler = setInterval(
      () =>
        void node.rssBytes().then(
          (rss) => (rssMax = Math.max(rssMax, rss)),
          () => undefined,
        ),
      50,
    )
    try {
      await vi.waitFor(
        async () =>
          expect((await node.status()).linked, 'the node to drop the peer that does not read').not.toContain(nodeId),
        { timeout: PEER_TIMEOUT_MS + 5_000, interval: 50 },
      )
    } finally {
      clearInterval(sampler)
    }
    const growth = rssMax - rssBefore
    console.log(
      `MEASURED non-reading peer: node RSS ${Math.round(rssBefore / 2 ** 20)} MiB before, peak ${Math.round(rssMax / 2 ** 20)} MiB (+${Math.round(growth / 2 ** 20)} MiB) with a 32 MiB backlog`,
    )
    expect(growth).toBeLessThan(112 * 2 ** 20)
    // The drop was the node's doing: once the peer reads again it finds its socket closed.
    peer.tcp?.resume()
    await peer.closedWithin(5_000)
    expect(peer.isClosed).toBe(true)
    await stillServing()
  })

  it('one that keeps talking but never reads: the queue stays bounded, and the node keeps serving', async () => {
    const rssBefore = await node.rssBytes()
    const { peer, nodeId } = await linked()
    peer.tcp?.pause()
    peer.send({ type: 'sync', vc: {}, peers: [] })
    let rssMax = rssBefore
    const started = Date.now()
    let dropped: number | undefined
    while (Date.now() - started < 3 * PEER_TIMEOUT_MS) {
      peer.send({ type: 'ack', vc: {} })
      rssMax = Math.max(rssMax, await node.rssBytes())
      if (dropped === undefined && !(await node.status()).linked.includes(nodeId)) dropped = Date.now() - started
      // Answered at all while the peer floods it (the timeout is a liveness bound only).
      expect((await request(`${node.url}/v1/status`, { timeoutMs: 5_000 })).status).toBe(200)
      await sleep(200)
    }
    console.log(
      `MEASURED talking non-reader: ${dropped === undefined ? `still linked after ${3 * PEER_TIMEOUT_MS} ms` : `dropped after ${dropped} ms`}; node RSS +${Math.round((rssMax - rssBefore) / 2 ** 20)} MiB`,
    )
    expect(rssMax - rssBefore).toBeLessThan(96 * 2 ** 20)
    peer.destroy()
    await stillServing()
  })
})

describe('odd keys arriving over replication', () => {
  it('__proto__ as a key, counter, set and member is stored as plain data and pollutes nothing', async () => {
    const { peer, nodeId } = await linked()
    peer.send({ type: 'sync', vc: (await node.status()).vc, peers: [] })
    peer.send({
      type: 'changes',
      changes: [
        changeOf(nodeId, [
          putOp('__proto__', 'a plain key'),
          { type: 'counter.add', name: '__proto__', delta: 3 },
          { type: 'set.add', name: '__proto__', member: '__proto__', context: [] },
          { type: 'set.add', name: '__proto__', member: 'constructor', context: [] },
        ]),
      ],
    })
    await vi.waitFor(
      async () => expect((await node.status()).vc[nodeId] === 1, 'the change to be applied').toBe(true),
      { timeout: 5_000, interval: 100 },
    )
    expect((await request(`${node.url}/v1/kv/__proto__`)).text).toBe('a plain key')
    expect((await request(`${node.url}/v1/counters/__proto__`)).json?.['value']).toBe(3)
    expect(((await request(`${node.url}/v1/sets/__proto__`)).json?.['members'] as string[]).sort()).toEqual([
      '__proto__',
      'constructor',
    ])
    expect(({} as Record<string, unknown>)['a plain key']).toBeUndefined()
    peer.destroy()
  })

  // The codec's op guard refuses keys no node could have written (empty, ill-formed, over the
  // protocol bound): the frame is refused whole, so nothing in it is applied.
  it('a change with an empty key, which no node can write through its API, is refused', async () => {
    const { peer, nodeId } = await linked()
    peer.send({ type: 'sync', vc: (await node.status()).vc, peers: [] })
    peer.send({ type: 'changes', changes: [changeOf(nodeId, [putOp('', 'empty key')])] })
    // The refusal is the node closing the link on that frame: after it, the frame has been handled.
    expect((await peer.closedWithin(5_000)).code).toBe(CLOSE_CODES.policy)
    const listed = (await request(`${node.url}/v1/kv?limit=1000`)).json?.['items'] as { key: string }[]
    peer.destroy()
    await stillServing()
    expect(listed.some((item) => item.key === '')).toBe(false)
  })

  it("keys over this node's key limit or with a lone surrogate from a peer: the node keeps serving (applied as sent; see the report)", async () => {
    const { peer, nodeId } = await linked()
    peer.send({ type: 'sync', vc: (await node.status()).vc, peers: [] })
    const long = `long/${'k'.repeat(4_000)}`
    peer.send({
      type: 'changes',
      changes: [changeOf(nodeId, [putOp(long, 'over the limit'), putOp('lone\uD800surrogate', 'ill-formed')])],
    })
    await vi.waitFor(
      async () => expect((await node.status()).vc[nodeId] === 1, 'the change to be handled').toBe(true),
      { timeout: 5_000, interval: 100 },
    )
    const listed = (await request(`${node.url}/v1/kv?limit=1000`)).json?.['items'] as { key: string }[]
    // MessagePack carries a lone surrogate as bytes that are not UTF-8; they decode to U+FFFD.
    console.log(
      `MEASURED peer keys the API refuses: a ${long.length}-byte key ${listed.some((item) => item.key === long) ? 'was applied' : 'was not applied'}; a lone surrogate arrived as ${JSON.stringify(listed.find((item) => item.key.startsWith('lone'))?.key)}`,
    )
    expect(listed.some((item) => item.key === 'lone\uD800surrogate')).toBe(false)
    // Over HTTP the long key is refused as too large, the node answering as usual.
    expect((await request(`${node.url}/v1/kv/${long}`)).json?.['code']).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    peer.destroy()
    await stillServing()
  })
})
