/**
 * When acks go (replication/acks.ts): at once to a peer that waits for them (it flagged its
 * `changes` frame, or speaks protocol 6), else gathered for `ACK_GATHER_MS` into one ack; and a
 * node's own frames ask for acks while one of its writes waits for them (`expectAcks`). A real
 * store on a memory backend that does not fsync each batch (received changes are made durable by
 * one fsync when an ack is due), one replicator, held links, and a hand-run `later` in place of a
 * timer.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { Change } from '../../src/crdt/index.js'
import { ACK_GATHER_MS } from '../../src/replication/acks.js'
import { Replicator } from '../../src/replication/replicator.js'
import { MemoryBackend } from '../../src/storage/memory-backend.js'
import { Store } from '../../src/storage/store.js'
import { HeldLink } from '../helpers/held-link.js'

const NOW = 1_700_000_000_000
const PEER = '00000000000000aa' as NodeId
const OLD_PEER = '00000000000000bb' as NodeId

const open: { store: Store; replicator: Replicator }[] = []

afterEach(async () => {
  for (const { store, replicator } of open.splice(0)) {
    await replicator.close()
    await store.close()
  }
})

/** A node whose `later` calls wait in `pending` until the test runs them; `writes` says which batches were fsynced. */
async function node() {
  const backend = new MemoryBackend()
  const writes: boolean[] = []
  const write = backend.write.bind(backend)
  backend.write = (batch, options) => {
    writes.push(options?.sync ?? false)
    return write(batch, options)
  }
  const store = await Store.open({
    backend,
    now: () => NOW,
    randomBytes: () => new Uint8Array(8).fill(1),
  })
  const pending: { run: () => void; ms: number }[] = []
  const replicator = new Replicator({ store, now: () => NOW, later: (run, ms) => pending.push({ run, ms }) })
  open.push({ store, replicator })
  const runLater = (): void => {
    for (const { run } of pending.splice(0)) run()
  }
  return { store, replicator, pending, runLater, writes }
}

function change(origin: NodeId, seq: number): Change {
  return {
    dot: { node: origin, seq },
    deps: seq > 1 ? { [origin]: seq - 1 } : {},
    hlc: { wallMs: NOW, logical: 0 },
    ops: [{ type: 'counter.add', name: `c${seq}`, delta: 1 }],
  }
}

/** A linked peer that synced as brand new; what the replicator sent so far is cleared. */
function linked(replicator: Replicator, id: NodeId, version?: number): HeldLink {
  const link = new HeldLink(id, version)
  replicator.addLink(link)
  link.deliver({ type: 'sync', vc: {}, peers: [] })
  link.sent.length = 0
  return link
}

describe('acks: at once when waited for, else gathered', () => {
  it('changes nobody waits for are acked once, ACK_GATHER_MS later, however many arrived meanwhile', async () => {
    const { store, replicator, pending, runLater } = await node()
    const link = linked(replicator, PEER)
    for (let seq = 1; seq <= 3; seq++) link.deliver({ type: 'changes', changes: [change(PEER, seq)] })
    await vi.waitFor(() => expect(store.vc[PEER]).toBe(3))
    expect(link.of('ack')).toEqual([])
    // Nor were they fsynced yet: that waits for the ack too, one fsync for all three.
    expect(store.durableVc[PEER]).toBeUndefined()
    expect(pending.map(({ ms }) => ms)).toEqual([ACK_GATHER_MS])
    runLater()
    // One fsync makes them durable (this store does not fsync each batch), then they are acked.
    await vi.waitFor(() => expect(link.of('ack')).toEqual([{ type: 'ack', vc: { [PEER]: 3 } }]))
    expect(store.durableVc[PEER]).toBe(3)
    // Nothing new: nothing sent, nothing scheduled.
    replicator.tick()
    expect(link.of('ack')).toHaveLength(1)
    expect(pending).toEqual([])
  })

  it('changes on a frame that asks are acked as soon as they are durable; later ones are gathered again', async () => {
    const { store, replicator, pending, runLater } = await node()
    const link = linked(replicator, PEER)
    link.deliver({ type: 'changes', changes: [change(PEER, 1), change(PEER, 2)], ack: true })
    await vi.waitFor(() => expect(link.of('ack')).toEqual([{ type: 'ack', vc: { [PEER]: 2 } }]))
    link.deliver({ type: 'changes', changes: [change(PEER, 3)] })
    await vi.waitFor(() => expect(store.vc[PEER]).toBe(3))
    expect(link.of('ack')).toHaveLength(1)
    runLater()
    await vi.waitFor(() =>
      expect(link.of('ack')).toEqual([
        { type: 'ack', vc: { [PEER]: 2 } },
        { type: 'ack', vc: { [PEER]: 3 } },
      ]),
    )
    expect(pending).toEqual([])
  })

  it('changes that are waited for go in a batch fsynced at once; the others in one fsynced when the gathered ack goes', async () => {
    const { store, replicator, runLater, writes } = await node()
    const link = linked(replicator, PEER)
    writes.length = 0
    link.deliver({ type: 'changes', changes: [change(PEER, 1)], ack: true })
    await vi.waitFor(() => expect(link.of('ack')).toEqual([{ type: 'ack', vc: { [PEER]: 1 } }]))
    // One trip to the disk: the batch itself fsynced, no step after it.
    expect(writes).toEqual([true])
    writes.length = 0
    link.deliver({ type: 'changes', changes: [change(PEER, 2)] })
    link.deliver({ type: 'changes', changes: [change(PEER, 3)] })
    await vi.waitFor(() => expect(store.vc[PEER]).toBe(3))
    expect(writes.every((synced) => !synced)).toBe(true)
    const batches = writes.length
    runLater()
    await vi.waitFor(() => expect(link.of('ack')).toHaveLength(2))
    // The gathered ack's fsync: one small synced write after the unsynced batches.
    expect(writes.slice(batches)).toEqual([true])
  })

  it('a peer of protocol 6 gets every ack at once; the others wait for the gathered one', async () => {
    const { store, replicator, runLater } = await node()
    const current = linked(replicator, PEER)
    const old = linked(replicator, OLD_PEER, 6)
    current.deliver({ type: 'changes', changes: [change(PEER, 1)] })
    await vi.waitFor(() => expect(store.vc[PEER]).toBe(1))
    await vi.waitFor(() => expect(old.of('ack')).toEqual([{ type: 'ack', vc: { [PEER]: 1 } }]))
    expect(current.of('ack')).toEqual([])
    runLater()
    await vi.waitFor(() => expect(current.of('ack')).toEqual([{ type: 'ack', vc: { [PEER]: 1 } }]))
  })

  it('the tick sends what was gathered when there is no timer', async () => {
    const store = await Store.open({
      backend: new MemoryBackend(),
      now: () => NOW,
      randomBytes: () => new Uint8Array(8).fill(1),
    })
    const replicator = new Replicator({ store, now: () => NOW })
    open.push({ store, replicator })
    const link = linked(replicator, PEER)
    link.deliver({ type: 'changes', changes: [change(PEER, 1)] })
    await vi.waitFor(() => expect(store.vc[PEER]).toBe(1))
    expect(link.of('ack')).toEqual([])
    replicator.tick()
    await vi.waitFor(() => expect(link.of('ack')).toEqual([{ type: 'ack', vc: { [PEER]: 1 } }]))
  })

  it("a node's frames ask for acks while one of its writes waits for them, and only then", async () => {
    const { store, replicator } = await node()
    const link = linked(replicator, PEER)
    await store.commitLocal([{ type: 'counter.add', name: 'plain', delta: 1 }])
    await vi.waitFor(() => expect(link.of('changes')).toHaveLength(1))
    const release = replicator.expectAcks()
    await store.commitLocal([{ type: 'counter.add', name: 'waited', delta: 1 }])
    await vi.waitFor(() => expect(link.of('changes')).toHaveLength(2))
    release()
    release() // a second release changes nothing
    await store.commitLocal([{ type: 'counter.add', name: 'plain again', delta: 1 }])
    await vi.waitFor(() => expect(link.of('changes')).toHaveLength(3))
    expect(link.of('changes').map((frame) => frame.ack === true)).toEqual([false, true, false])
  })
})
