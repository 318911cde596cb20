/**
 * The receiver's backpressure (replication/inbound.ts, INBOUND_PAUSE_CHANGES): while the store
 * holds that many received changes not yet committed, every link stops being read (a link made
 * meanwhile too), and reading resumes once the store is down to half. A real store on a memory
 * backend whose batch writes the test holds, one replicator, held links.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { Change } from '../../src/crdt/index.js'
import { INBOUND_PAUSE_CHANGES } from '../../src/replication/inbound.js'
import { Replicator } from '../../src/replication/replicator.js'
import { MemoryBackend } from '../../src/storage/memory-backend.js'
import { GROUP_CHANGES_MAX, Store } from '../../src/storage/store.js'
import { HeldLink } from '../helpers/held-link.js'

const NOW = 1_700_000_000_000
const PEER = '00000000000000aa' as NodeId
const OTHER = '00000000000000bb' as NodeId
const LATE = '00000000000000cc' as NodeId

const open: { store: Store; replicator: Replicator; release: () => void }[] = []

afterEach(async () => {
  for (const { store, replicator, release } of open.splice(0)) {
    release()
    await replicator.close()
    await store.close()
  }
})

/** A node whose batch writes wait until `release()` (held: true at first). */
async function heldNode() {
  const backend = new MemoryBackend()
  let gate: Promise<void> | null = null
  let open_: () => void = () => undefined
  const hold = (): void => {
    gate = new Promise<void>((resolve) => (open_ = resolve))
  }
  const write = backend.write.bind(backend)
  backend.write = async (batch, options) => {
    if (gate !== null) await gate
    return write(batch, options)
  }
  const store = await Store.open({ backend, now: () => NOW, randomBytes: () => new Uint8Array(8).fill(1) })
  const replicator = new Replicator({ store, now: () => NOW })
  const release = (): void => {
    gate = null
    open_()
  }
  open.push({ store, replicator, release })
  return { store, replicator, hold, release }
}

function linked(replicator: Replicator, id: NodeId): HeldLink {
  const link = new HeldLink(id)
  replicator.addLink(link)
  link.deliver({ type: 'sync', vc: {}, peers: [] })
  return link
}

function changes(origin: NodeId, from: number, count: number): Change[] {
  return Array.from({ length: count }, (_, index) => {
    const seq = from + index
    return {
      dot: { node: origin, seq },
      deps: seq > 1 ? { [origin]: seq - 1 } : {},
      hlc: { wallMs: NOW, logical: 0 },
      ops: [{ type: 'counter.add', name: `c${seq % 100}`, delta: 1 }],
    }
  })
}

describe('inbound backpressure', () => {
  it('pauses every link once the store holds INBOUND_PAUSE_CHANGES uncommitted changes, and resumes them at half', async () => {
    const { store, replicator, hold, release } = await heldNode()
    const peer = linked(replicator, PEER)
    const other = linked(replicator, OTHER)
    hold()
    // Frames of 512, as a sender ships a catch-up: one short of the bound, nothing pauses.
    const frame = GROUP_CHANGES_MAX
    let seq = 1
    while (seq + frame <= INBOUND_PAUSE_CHANGES) {
      peer.deliver({ type: 'changes', changes: changes(PEER, seq, frame) })
      seq += frame
    }
    peer.deliver({ type: 'changes', changes: changes(PEER, seq, INBOUND_PAUSE_CHANGES - seq) })
    seq = INBOUND_PAUSE_CHANGES
    expect(peer.pauses).toEqual([])
    // The change that reaches the bound pauses both links, and a link made meanwhile starts paused.
    peer.deliver({ type: 'changes', changes: changes(PEER, seq, 1) })
    expect(peer.pauses).toEqual([true])
    expect(other.pauses).toEqual([true])
    const late = linked(replicator, LATE)
    expect(late.pauses).toEqual([true])
    // Messages a paused link had read already are still taken.
    peer.deliver({ type: 'changes', changes: changes(PEER, seq + 1, 10) })
    release()
    await vi.waitFor(() => expect(store.vc[PEER]).toBe(INBOUND_PAUSE_CHANGES + 10))
    for (const link of [peer, other, late]) expect(link.pauses).toEqual([true, false])
    expect(replicator.counters['changesApplied']).toBe(INBOUND_PAUSE_CHANGES + 10)
  })
})
