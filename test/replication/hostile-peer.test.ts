/**
 * The replication rules against a peer that knows the secret and lies (issue 11, part 5): a real
 * store on a memory backend, one replicator, and a hand-held link that delivers what the test
 * sends and records what the replicator answers. One rule per block: snapshots only on consent,
 * claims capped or refused, the causal buffer bounded in bytes, remote counter overflow refused,
 * and a snapshot whose clock does not dominate keeping the keys it does not cover.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { unpack } from 'msgpackr'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { vcGet } from '../../src/clock/index.js'
import { encode, encodeChange } from '../../src/codec/index.js'
import { isOp } from '../../src/codec/guards.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import { decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import type { Change, Intent, Op } from '../../src/crdt/index.js'
import { counterValue, lwwSibling } from '../../src/crdt/index.js'
import { CausalBuffer } from '../../src/replication/causal-buffer.js'
import { approximateChangeBytes } from '../../src/replication/peer-session.js'
import { checkClaim } from '../../src/replication/peers.js'
import { Replicator } from '../../src/replication/replicator.js'
import { MemoryBackend } from '../../src/storage/memory-backend.js'
import { Store } from '../../src/storage/store.js'
import { turn as flush } from '../helpers/async.js'
import { HeldLink } from '../helpers/held-link.js'

const NOW = 1_700_000_000_000
const PEER = '00000000000000aa' as NodeId
const OTHER = '00000000000000bb' as NodeId

const open: { store: Store; replicator: Replicator }[] = []

async function node(options: Partial<ConstructorParameters<typeof Replicator>[0]> = {}) {
  const store = await Store.open({
    backend: new MemoryBackend(),
    now: () => NOW,
    randomBytes: () => new Uint8Array(8).fill(1),
  })
  const replicator = new Replicator({ store, now: () => NOW, ...options })
  open.push({ store, replicator })
  return { store, replicator }
}

afterEach(async () => {
  for (const { store, replicator } of open.splice(0)) {
    await replicator.close()
    await store.close()
  }
})

const put = (key: string, text: string): Intent => ({
  type: 'kv.put',
  key,
  value: new Uint8Array(Buffer.from(text)),
  contentType: 'text/plain',
})

function change(node: NodeId, seq: number, ops: Op[], deps: VectorClock = {}): Change {
  return {
    dot: { node, seq },
    deps: seq > 1 ? { ...deps, [node]: seq - 1 } : deps,
    hlc: { wallMs: NOW, logical: 0 },
    ops,
  }
}

async function keysOf(store: Store, count: number): Promise<(string | null)[]> {
  const out: (string | null)[] = []
  for (let index = 0; index < count; index++) {
    const value = lwwSibling(await store.getState('kv', `k${index}`))?.value ?? null
    out.push(value === null ? null : Buffer.from(value).toString())
  }
  return out
}

describe('snapshots only on consent', () => {
  it('an unasked-for offer is refused and counted; its empty end changes nothing', async () => {
    const { store, replicator } = await node()
    for (let index = 0; index < 5; index++) await store.commitLocal([put(`k${index}`, `v${index}`)])
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    const vc = store.vc
    link.deliver({ type: 'snapshot-offer', vc: { [store.nodeId]: 999, [PEER]: 999 }, keys: 0 })
    link.deliver({ type: 'snapshot-end', chunks: 0 })
    await flush()
    expect(link.of('snapshot-reply')).toEqual([{ type: 'snapshot-reply', accept: false }])
    expect(replicator.counters['snapshotsRefused']).toBe(1)
    expect(store.vc).toEqual(vc)
    expect(await keysOf(store, 5)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4'])
  })

  it('"you need one" is answered with a request only when true: brand new, or lacking the named change of another node', async () => {
    const fresh = await node()
    const newLink = new HeldLink(PEER)
    fresh.replicator.addLink(newLink)
    newLink.deliver({ type: 'snapshot-needed', lacks: null })
    expect(newLink.of('snapshot-request')).toHaveLength(1)

    const { store, replicator } = await node()
    await store.commitLocal([put('k0', 'v')])
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    const syncs = link.of('sync').length
    link.deliver({ type: 'snapshot-needed', lacks: null }) // it holds something: not brand new
    link.deliver({ type: 'snapshot-needed', lacks: { node: store.nodeId, seq: 1 } }) // its own change
    expect(link.of('snapshot-request')).toHaveLength(0)
    expect(link.of('sync').length).toBe(syncs + 2)
    expect(replicator.counters['snapshotsRefused']).toBe(2)
    link.deliver({ type: 'snapshot-needed', lacks: { node: OTHER, seq: 1 } })
    expect(link.of('snapshot-request')).toHaveLength(1)
  })

  it("after consent, an offer claiming the node's own changes beyond what it made closes the link, nothing joined", async () => {
    const { store, replicator } = await node()
    await store.commitLocal([put('k0', 'v0')])
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    link.deliver({ type: 'snapshot-needed', lacks: { node: OTHER, seq: 1 } })
    link.deliver({ type: 'snapshot-offer', vc: { [store.nodeId]: 50 }, keys: 0 })
    link.deliver({ type: 'snapshot-end', chunks: 0 })
    await flush()
    expect(link.closeCode).toBe(1008)
    expect(await keysOf(store, 1)).toEqual(['v0'])
    expect(vcGet(store.vc, store.nodeId)).toBe(1)
  })

  it('a consented snapshot whose clock does not cover a key keeps that key (the two-phase join)', async () => {
    const { store, replicator } = await node()
    await store.commitLocal([put('k0', 'mine')])
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    link.deliver({ type: 'snapshot-needed', lacks: { node: PEER, seq: 1 } })
    link.deliver({ type: 'snapshot-offer', vc: { [PEER]: 3 }, keys: 0 })
    link.deliver({ type: 'snapshot-end', chunks: 0 })
    for (let round = 0; round < 20 && replicator.counters['snapshotsReceived'] === 0; round++) await flush()
    expect(replicator.counters['snapshotsReceived']).toBe(1)
    expect(await keysOf(store, 1)).toEqual(['mine'])
    expect(store.vc).toEqual({ [store.nodeId]: 1, [PEER]: 3 })
  })
})

describe('claims in acks and syncs', () => {
  it('checkClaim: other origins capped at what this node holds, the peer’s own any value, more of ours impossible', () => {
    const self = '00000000000000cc' as NodeId
    const own = { [self]: 4, [OTHER]: 2 }
    expect(checkClaim({ [PEER]: 99, [OTHER]: 2, [self]: 4 }, PEER, self, own)).toEqual({
      vc: { [PEER]: 99, [OTHER]: 2, [self]: 4 },
      capped: 0,
      impossible: false,
    })
    expect(checkClaim({ [OTHER]: 7 }, PEER, self, own)).toEqual({ vc: { [OTHER]: 2 }, capped: 1, impossible: false })
    expect(checkClaim({ [self]: 5 }, PEER, self, own).impossible).toBe(true)
  })

  it("an ack claiming more of this node's own changes than it holds never counts for write concern or the stable cut, and stops its writes", async () => {
    const { store, replicator } = await node({ members: () => [PEER] })
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    link.deliver({ type: 'sync', vc: {}, peers: [] })
    const { change: written } = await store.commitLocal([put('k0', 'v')])
    link.deliver({ type: 'ack', vc: { [store.nodeId]: 10 } })
    // The link stays: an honest peer says this when the node's data directory is an older copy.
    expect(link.closed).toBe(false)
    expect(replicator.counters['claimsRefused']).toBe(1)
    expect(replicator.holders((written as Change).dot)).toBe(1)
    expect(replicator.stableCut()).toEqual({})
    // This process already made seq 1 of its own: seqs 1..10 name other changes there for good.
    expect(replicator.seqGuard.status.state).toBe('diverged')
    await expect(store.commitLocal([put('k1', 'v')])).rejects.toMatchObject({ code: 'MESHKV_ERR_NODE_ID_CONFLICT' })
    expect(store.vc).toEqual({ [store.nodeId]: 1 })
  })

  it("an ack claiming a third node's changes beyond what this node holds counts only for what it holds", async () => {
    const { store, replicator } = await node({ members: () => [PEER] })
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    link.deliver({ type: 'ack', vc: { [OTHER]: 5 } })
    expect(replicator.counters['claimsCapped']).toBe(1)
    expect(link.closed).toBe(false)
    // The node now gets OTHER's first change from elsewhere: the earlier claim does not cover it.
    const other = new HeldLink(OTHER)
    replicator.addLink(other)
    other.deliver({ type: 'changes', changes: [change(OTHER, 1, [{ type: 'kv.del', key: 'gone', context: [] }])] })
    for (let round = 0; round < 20 && vcGet(store.vc, OTHER) === 0; round++) await flush()
    expect(vcGet(store.vc, OTHER)).toBe(1)
    expect(vcGet(replicator.heldByAll(), OTHER)).toBe(0)
  })
})

describe('a capped claim', () => {
  it('counts whole once this node holds what it named, and not before', async () => {
    const { store, replicator } = await node({ members: () => [PEER] })
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    link.deliver({ type: 'ack', vc: { [OTHER]: 2 } })
    const other = new HeldLink(OTHER)
    replicator.addLink(other)
    const del = (seq: number): Change => change(OTHER, seq, [{ type: 'kv.del', key: `gone${seq}`, context: [] }])
    other.deliver({ type: 'changes', changes: [del(1)] })
    for (let round = 0; round < 20 && vcGet(store.vc, OTHER) < 1; round++) await flush()
    expect(vcGet(replicator.heldByAll(), OTHER)).toBe(0)
    other.deliver({ type: 'changes', changes: [del(2)] })
    for (let round = 0; round < 20 && vcGet(store.vc, OTHER) < 2; round++) await flush()
    await flush()
    expect(vcGet(replicator.heldByAll(), OTHER)).toBe(2)
  })
})

describe('the causal buffer in bytes', () => {
  it('refuses an early change past its byte bound, as past its count; a deliverable one is still taken', () => {
    const big = (seq: number): Change =>
      change(PEER, seq, [{ type: 'kv.put', key: 'k', value: new Uint8Array(1000), contentType: 't', context: [] }])
    const bytes = approximateChangeBytes(big(2))
    const buffer = new CausalBuffer(1000, bytes * 3)
    expect([2, 3, 4].map((seq) => buffer.add(big(seq), {}))).toEqual(['buffered', 'buffered', 'buffered'])
    expect(buffer.bytes).toBe(bytes * 3)
    expect(buffer.add(big(5), {})).toBe('full')
    expect(buffer.add(big(1), {})).toBe('buffered')
    expect(buffer.takeDeliverable({}).map((taken) => taken.dot.seq)).toEqual([1, 2, 3, 4])
    expect(buffer.bytes).toBe(0)
  })

  it('the replicator counts what the byte bound refused and asks again', async () => {
    const { replicator } = await node({ bufferBytesMax: 4096 })
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    const early = [2, 3, 4, 5, 6].map((seq) =>
      change(PEER, seq, [{ type: 'kv.put', key: 'k', value: new Uint8Array(1500), contentType: 't', context: [] }]),
    )
    link.deliver({ type: 'changes', changes: early })
    expect(replicator.counters['bufferFull']).toBeGreaterThan(0)
    expect(replicator.counters['bufferedBytes']).toBeLessThanOrEqual(4096)
  })
})

describe('remote counter ops', () => {
  it('one that would take the sum past 2^53 - 1 is refused, counted, its link closed, the counter unchanged', async () => {
    const { store, replicator } = await node()
    const link = new HeldLink(PEER)
    replicator.addLink(link)
    const add = (delta: number): Op => ({ type: 'counter.add', name: 'c', delta })
    link.deliver({ type: 'changes', changes: [change(PEER, 1, [add(Number.MAX_SAFE_INTEGER - 1)])] })
    for (let round = 0; round < 20 && vcGet(store.vc, PEER) === 0; round++) await flush()
    link.deliver({ type: 'changes', changes: [change(PEER, 2, [add(2)])] })
    for (let round = 0; round < 20 && !link.closed; round++) await flush()
    expect(link.closeCode).toBe(1008)
    expect(replicator.counters['refusedOverflow']).toBe(1)
    expect(counterValue(await store.getState('counter', 'c'))).toBe(Number.MAX_SAFE_INTEGER - 1)
    expect(vcGet(store.vc, PEER)).toBe(1)
  })
})

describe('changes decoded from a peer', () => {
  it('are built from their known fields: fresh plain records, and any extra field refuses the frame', () => {
    const sent = change(PEER, 1, [{ type: 'counter.add', name: 'c', delta: 1 }], { [OTHER]: 2 })
    const frame = decodeFrame(encodeFrame({ type: 'changes', changes: [sent] }))
    const got = (frame as Extract<PeerMessage, { type: 'changes' }>).changes[0] as Change
    expect(got).toEqual(sent)
    expect(Object.keys(got).sort()).toEqual(['deps', 'dot', 'hlc', 'ops'])
    expect(Object.keys(got.ops[0] as object).sort()).toEqual(['delta', 'name', 'type'])
    for (const record of [got, got.ops[0], got.deps, got.dot, got.hlc])
      expect(Object.getPrototypeOf(record)).toBe(Object.prototype)
    // The compact format is positional (codec/change.ts): what a hostile peer adds is a wrong shape.
    const positional = unpack(encodeChange(sent) as Buffer) as unknown[]
    const ops = positional[6] as unknown[][]
    const refused: unknown[] = [
      [...positional, { __proto__: { polluted: true } }], // an eighth field
      [...positional.slice(0, 6), [[...(ops[0] as unknown[]), 'more']]], // an op with a field too many
      [...positional.slice(0, 5), [...(positional[5] as unknown[]), (positional[5] as unknown[])[0], 3]], // an id twice in deps
      JSON.parse(JSON.stringify({ ...sent, extra: 1 })) as unknown, // the format-1 map a version 5 peer sent
    ]
    for (const bad of refused)
      expect(() => decodeFrame(encode({ type: 'changes', changes: [encode(bad)] }))).toThrow(
        expect.objectContaining({ code: 'MESHKV_ERR_DECODE' }),
      )
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
  })

  it('a change or op that is not a plain record is refused as a decode error', () => {
    class Fancy {
      readonly type = 'counter.add'
      readonly name = 'c'
      readonly delta = 1
    }
    expect(isOp(new Fancy())).toBe(false)
    expect(isOp({ type: 'counter.add', name: 'c', delta: 1 })).toBe(true)
    expect(isOp({ type: 'counter.add', name: 'c', delta: 2 ** 53 })).toBe(false)
    expect(isOp({ type: 'counter.add', name: 'c', delta: 0 })).toBe(false)
    expect(isOp({ type: 'counter.add', name: 'c', delta: 1.5 })).toBe(false)
  })
})
