/**
 * Peers that know the secret still cannot wreck a node (issue 11, part 5, replication half): a
 * REAL node process and a fake peer (test/support/fake-peer.ts) that passes the handshake and then
 * lies in the replication protocol. After each attack the node holds what it held, its clock has
 * not jumped, the attack is counted in its status, and it keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { encode } from '../../src/codec/index.js'
import type { Frame } from '../../src/codec/peer.js'
import { PROTOCOL_VERSION_MIN } from '../../src/codec/peer.js'
import type { Op } from '../../src/crdt/index.js'
import { FakePeer, changeOf, freshNodeId, peerIdentity, putOp } from '../support/fake-peer.js'
import type { RealNode } from './helpers.js'
import { honestWriteLands, peerFootprint, request, sleep, startRealNode, stopAllNodes } from './helpers.js'

let node: RealNode
const peers: FakePeer[] = []

/** A fake peer that proved the secret and synced as a brand-new node. */
async function linked(
  nodeId: NodeId = freshNodeId(),
  to: RealNode = node,
  version?: number,
): Promise<{ peer: FakePeer; nodeId: NodeId }> {
  const peer = await FakePeer.connect(to.port)
  peers.push(peer)
  await peer.handshake(peerIdentity(nodeId, to.secret), version === undefined ? {} : { version })
  await peer.frame('sync')
  peer.send({ type: 'sync', vc: {}, peers: [] })
  return { peer, nodeId }
}

/**
 * Waits until the node holds a link for every fake peer still open and for no other: a link that
 * closes makes the node send every peer a `sync`, which names what an ack would have and so takes
 * its place. A test that waits for an ack starts after the links of earlier tests are gone.
 */
async function linksSettled(): Promise<void> {
  await vi.waitFor(
    async () => expect((await node.status()).linked.length).toBe(peers.filter((peer) => !peer.isClosed).length),
    { timeout: 10_000, interval: 50 },
  )
}

async function counters(): Promise<Record<string, number>> {
  return (await node.status()).replication
}

async function put(key: string, value: string, query = ''): Promise<number> {
  return (await request(`${node.url}/v1/kv/${key}${query}`, { method: 'PUT', body: value })).status
}

async function ownSeq(): Promise<number> {
  return (await node.status()).vc[node.nodeId] ?? 0
}

/** The node still serves: it answers, and an honest peer's write is applied. */
async function stillServing(): Promise<void> {
  const { peer, nodeId } = await linked()
  await honestWriteLands(node, peer, nodeId)
}

beforeAll(async () => {
  node = await startRealNode()
  for (let index = 0; index < 20; index++) expect(await put(`kept/${index}`, `value ${index}`)).toBe(200)
}, 60_000)

afterAll(async () => {
  for (const peer of peers) peer.destroy()
  await node?.stop()
  await stopAllNodes()
})

describe('snapshots the node did not ask for', () => {
  it('an unsolicited offer with an inflated clock, then an end with no chunks: refused, every key and the clock kept', async () => {
    const before = await peerFootprint(node)
    const seq = await ownSeq()
    const refused = (await counters())['snapshotsRefused'] ?? 0
    const { peer, nodeId } = await linked()
    const after = peer.frames.length
    peer.send({ type: 'snapshot-offer', vc: { [node.nodeId]: 1_000_000, [nodeId]: 1_000_000 }, keys: 0 })
    peer.send({ type: 'snapshot-end', chunks: 0 })
    const reply = await peer.frame('snapshot-reply', 3_000, after)
    expect(reply).toEqual({ type: 'snapshot-reply', accept: false })
    await sleep(500)
    expect(await peerFootprint(node)).toEqual(before)
    // The node's own entry moved only by its own writes (admitting the peer), never to the offer's.
    expect(await ownSeq()).toBeLessThan(seq + 5)
    expect((await counters())['snapshotsRefused']).toBe(refused + 1)
    expect(node.logs((record) => record['msg'] === 'an unasked-for snapshot offer was refused').length).toBeGreaterThan(
      0,
    )
    peer.destroy()
    await stillServing()
  })

  it('a "you need a snapshot" for a change the node holds is refused; the node syncs instead', async () => {
    const refused = (await counters())['snapshotsRefused'] ?? 0
    const { peer } = await linked()
    const after = peer.frames.length
    peer.send({ type: 'snapshot-needed', lacks: { node: node.nodeId, seq: 1 } })
    await peer.frame('sync', 3_000, after)
    expect(peer.frames.slice(after).some((frame) => frame.type === 'snapshot-request')).toBe(false)
    expect((await counters())['snapshotsRefused']).toBe(refused + 1)
    peer.destroy()
  })

  it("an offer after a consent that claims the node's own changes beyond what it made closes the link; keys kept", async () => {
    const before = await peerFootprint(node)
    const { peer, nodeId } = await linked()
    const after = peer.frames.length
    // The node truly lacks this peer's change 1 (the claim checks out), so it asks…
    peer.send({ type: 'snapshot-needed', lacks: { node: nodeId, seq: 1 } })
    await peer.frame('snapshot-request', 3_000, after)
    // …but an offer may not claim more of the node's own changes than it made.
    peer.send({ type: 'snapshot-offer', vc: { [node.nodeId]: 1_000_000 }, keys: 0 })
    peer.send({ type: 'snapshot-end', chunks: 0 })
    expect((await peer.closedWithin(3_000)).code).toBe(1008)
    await sleep(300)
    expect(await peerFootprint(node)).toEqual(before)
    await stillServing()
  })
})

describe('acks claiming more than could have been sent', () => {
  it("an ack claiming more of the node's own changes than it holds never counts, and the node (which wrote them itself) stops taking writes", async () => {
    // A node of its own: after this claim it takes no writes again (its id names two histories).
    const target = await startRealNode()
    try {
      const status = async (): Promise<Record<string, unknown>> =>
        (await target.status()) as unknown as Record<string, unknown>
      const { peer } = await linked(freshNodeId(), target)
      const write = async (method: string): Promise<number> =>
        (await request(`${target.url}/v1/kv/gone`, { method, body: 'x' })).status
      expect(await write('PUT')).toBe(200)
      expect(await write('DELETE')).toBe(200)
      const deleted = (await target.status()).vc[target.nodeId] ?? 0
      peer.send({ type: 'ack', vc: { [target.nodeId]: deleted + 100 } })
      await vi.waitFor(async () => expect((await target.status()).replication['claimsRefused']).toBe(1), {
        timeout: 3_000,
      })
      const said = "a peer claims more of this node's own changes than it holds; they count only once held"
      expect(target.logs((record) => record['msg'] === said).length).toBe(1)
      // An honest peer says this of a node whose data directory is an older copy: the link stays.
      expect(peer.isClosed).toBe(false)
      // This process made its seqs itself: the peer's seqs past them name other changes. No more writes.
      expect(((await status())['seqGuard'] as { state: string }).state).toBe('diverged')
      const refused = await request(`${target.url}/v1/kv/after`, { method: 'PUT', body: 'x' })
      expect(refused.status).toBe(409)
      expect((refused.json as { code: string }).code).toBe('MESHKV_ERR_NODE_ID_CONFLICT')
      expect((await request(`${target.url}/readyz`)).status).toBe(503)
      expect(target.logs((record) => String(record['msg']).includes('kvctl forget')).length).toBe(1)
      // Several GC passes (one a second): the tombstone is not stable, the peer never acknowledged it.
      const passes = ((await status())['gc'] as { passes: number }).passes
      await vi.waitFor(
        async () => expect(((await status())['gc'] as { passes: number }).passes).toBeGreaterThan(passes + 2),
        { timeout: 8_000, interval: 200 },
      )
      const gc = (await status())['gc'] as { stableCut: Record<string, number>; tombstonesPurged: number }
      expect(gc.stableCut[target.nodeId] ?? 0).toBeLessThan(deleted)
      expect(gc.tombstonesPurged).toBe(0)
    } finally {
      await target.stop()
    }
  })

  it("a claim on a third node's changes beyond what the node holds is capped and counted; the link stays", async () => {
    const capped = (await counters())['claimsCapped'] ?? 0
    const { peer } = await linked()
    peer.send({ type: 'ack', vc: { [freshNodeId()]: 50 } })
    await vi.waitFor(async () => expect((await counters())['claimsCapped']).toBe(capped + 1), { timeout: 3_000 })
    expect(peer.isClosed).toBe(false)
    peer.destroy()
  })
})

describe('counter ops past 2^53', () => {
  it('the increment that would leave the exact range is refused, the link closed, the counter unchanged', async () => {
    const { peer, nodeId } = await linked()
    const add = (delta: number): Op => ({ type: 'counter.add', name: 'huge', delta })
    peer.send({ type: 'changes', changes: [changeOf(nodeId, [add(Number.MAX_SAFE_INTEGER)])] })
    await vi.waitFor(
      async () => expect((await request(`${node.url}/v1/counters/huge`)).json?.['value']).toBe(Number.MAX_SAFE_INTEGER),
      { timeout: 3_000 },
    )
    peer.send({ type: 'changes', changes: [changeOf(nodeId, [add(10)])] })
    expect((await peer.closedWithin(3_000)).code).toBe(1008)
    expect((await counters())['refusedOverflow']).toBeGreaterThan(0)
    expect((await request(`${node.url}/v1/counters/huge`)).json?.['value']).toBe(Number.MAX_SAFE_INTEGER)
    await stillServing()
  })
})

describe('changes with fields no change has', () => {
  it('extra fields and __proto__ keys in a change and its op (a version 5 link: changes as maps) are dropped: the change applies as its known fields', async () => {
    const { peer, nodeId } = await linked(freshNodeId(), node, PROTOCOL_VERSION_MIN)
    const change = changeOf(nodeId, [putOp('rebuilt', 'plain')])
    const hostile = JSON.parse('{"__proto__": {"polluted": true}, "extra": 1}') as Record<string, unknown>
    const op = Object.assign(JSON.parse('{"__proto__": {"isAdmin": true}}') as object, change.ops[0], { more: 'x' })
    const frame = { type: 'changes', changes: [Object.assign(hostile, change, { ops: [op] })] }
    peer.sendBytes(encode(frame as unknown as Frame))
    await vi.waitFor(async () => expect((await request(`${node.url}/v1/kv/rebuilt`)).text).toBe('plain'), {
      timeout: 3_000,
    })
    expect(peer.isClosed).toBe(false)
    peer.destroy()
  })
})

describe('a peer of the previous protocol version (5), as during a rolling upgrade', () => {
  it('links, its format-1 changes apply, and its acks carry the whole clock where version 6 sends what moved', async () => {
    expect(await put('before-v5', 'x')).toBe(200) // the node's own entry in its clock
    const old = await linked(freshNodeId(), node, PROTOCOL_VERSION_MIN)
    const current = await linked()
    await linksSettled()
    old.peer.send({ type: 'changes', changes: [changeOf(old.nodeId, [putOp('from-v5', 'old')])] })
    await vi.waitFor(async () => expect((await request(`${node.url}/v1/kv/from-v5`)).text).toBe('old'), {
      timeout: 5_000,
    })
    const own = node.nodeId
    const ackOn = async (peer: FakePeer) =>
      vi.waitFor(
        () => {
          const acks = peer.frames.filter((frame) => frame.type === 'ack' && old.nodeId in frame.vc)
          expect(acks.length).toBeGreaterThan(0)
          return (acks[acks.length - 1] as { vc: Record<string, number> }).vc
        },
        { timeout: 5_000 },
      )
    // The version 5 peer gets the whole clock: the node's own entry, unchanged, is in it.
    expect(await ackOn(old.peer)).toMatchObject({ [own]: expect.any(Number), [old.nodeId]: 1 })
    // The version 6 peer (synced with the whole clock) gets only the entry that moved.
    expect(Object.keys(await ackOn(current.peer))).toEqual([old.nodeId])
    expect(old.peer.isClosed).toBe(false)
    old.peer.destroy()
    current.peer.destroy()
  })
})

describe('a peer of protocol version 6, as during a rolling upgrade to 7', () => {
  it('links, its changes (in map frames) apply, and its acks come as maps; a version 7 peer gets them positionally', async () => {
    const old = await linked(freshNodeId(), node, 6)
    const current = await linked()
    await linksSettled()
    old.peer.send({ type: 'changes', changes: [changeOf(old.nodeId, [putOp('from-v6', 'six')])] })
    await vi.waitFor(async () => expect((await request(`${node.url}/v1/kv/from-v6`)).text).toBe('six'), {
      timeout: 5_000,
    })
    // Each fake peer decodes frames as its version does: a frame of the other shape would close it.
    for (const peer of [old.peer, current.peer])
      await vi.waitFor(
        () => expect(peer.frames.some((frame) => frame.type === 'ack' && frame.vc[old.nodeId] === 1)).toBe(true),
        { timeout: 5_000 },
      )
    expect(old.peer.version).toBe(6)
    expect(current.peer.version).toBe(7)
    expect(old.peer.isClosed).toBe(false)
    expect(current.peer.isClosed).toBe(false)
    old.peer.destroy()
    current.peer.destroy()
  })
})

describe('a flood of early changes', () => {
  it('past the byte bound of the causal buffer: refused and counted, memory bounded, the node serving', async () => {
    const { peer, nodeId } = await linked()
    const value = 'v'.repeat(256 * 1024)
    const rssBefore = await node.rssBytes()
    // Seq 1 never comes: every change waits in the buffer. 12 frames of 3 MiB: 36 MiB per round.
    for (let round = 0; round < 3; round++) {
      for (let frame = 0; frame < 12; frame++) {
        const changes = Array.from({ length: 12 }, (_, index) =>
          changeOf(nodeId, [putOp(`flood/${index}`, value)], { seq: 2 + round * 144 + frame * 12 + index }),
        )
        peer.send({ type: 'changes', changes })
      }
      await sleep(300)
    }
    await vi.waitFor(async () => expect((await counters())['bufferFull']).toBeGreaterThan(0), { timeout: 10_000 })
    const status = await counters()
    expect(status['bufferedBytes']).toBeLessThanOrEqual(64 * 1024 * 1024)
    // 108 MiB were sent; what is kept is bounded by the buffer's 64 MiB and some slack for the sockets.
    expect((await node.rssBytes()) - rssBefore).toBeLessThan(160 * 1024 * 1024)
    peer.destroy()
    await stillServing()
  }, 30_000)
})
