/**
 * A snapshot offer does not wait for a count of the keys: it carries an estimate (one key per
 * change), and the last chunk carries the sender's exact count (docs/protocol.md, "Snapshots"). A real sender session and a real receiver, every frame through
 * the codec, on stores whose key count is not their change count.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import { decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import type { PeerLinkLike } from '../../src/replication/link.js'
import { SILENT_LOGGER } from '../../src/replication/logger.js'
import { PeerSession } from '../../src/replication/peer-session.js'
import { SnapshotReceiver } from '../../src/replication/snapshot-receiver.js'
import { MemoryBackend } from '../../src/storage/memory-backend.js'
import { Store } from '../../src/storage/store.js'

const NOW = 1_700_000_000_000

/** One end of a link; what it sends goes through the codec to `deliver`. */
class WireLink implements PeerLinkLike {
  readonly url = null
  readonly direction = 'dialed' as const
  closed = false
  deliver: (message: PeerMessage) => void = () => undefined

  constructor(readonly nodeId: NodeId) {}
  send(message: PeerMessage): boolean {
    if (this.closed) return false
    const decoded = decodeFrame(encodeFrame(message)) as PeerMessage
    queueMicrotask(() => this.deliver(decoded))
    return true
  }
  async drained(): Promise<void> {}
  onMessage(): void {}
  onClose(): void {}
  close(): void {
    this.closed = true
  }
}

const stores: Store[] = []
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close()
})

async function openStore(id: number): Promise<Store> {
  const store = await Store.open({
    backend: new MemoryBackend(),
    now: () => NOW,
    randomBytes: () => new Uint8Array(8).fill(id),
  })
  stores.push(store)
  return store
}

/** `keys` keys in changes of five puts each, then `overwrites` more changes to keys already there. */
async function filled(keys: number, overwrites: number): Promise<Store> {
  const store = await openStore(1)
  const value = new Uint8Array(16)
  for (let i = 0; i < keys; i += 5) {
    const puts = Array.from({ length: Math.min(5, keys - i) }, (_, j) => `k${i + j}`)
    await store.commitLocal(puts.map((key) => ({ type: 'kv.put', key, value, contentType: 't' })))
  }
  for (let i = 0; i < overwrites; i++)
    await store.commitLocal([{ type: 'kv.put', key: `k${i}`, value, contentType: 't' }])
  return store
}

/** Sends `sender`'s snapshot to a brand-new store; every chunk and the receiver's total as each arrived. */
async function transfer(sender: Store) {
  const receiving = await openStore(2)
  const toReceiver = new WireLink(sender.nodeId)
  const toSender = new WireLink(receiving.nodeId)
  const chunks: { seq: number; keys: number | undefined; states: number; totalAfter: number; counted: boolean }[] = []
  const offers: number[] = []
  let sentKeys: number | null = null
  let joined!: () => void
  const done = new Promise<void>((resolve) => (joined = resolve))
  const receiver = new SnapshotReceiver({
    store: receiving,
    logger: SILENT_LOGGER,
    now: () => NOW,
    onJoined: () => undefined,
    onRefused: () => undefined,
    recovering: () => false,
    split: () => false,
  })
  const session = new PeerSession({
    link: toSender,
    store: sender,
    selfId: sender.nodeId,
    frameChangesMax: 512,
    batchBytesMax: 1024 * 1024,
    logger: SILENT_LOGGER,
    onMessage: () => undefined,
    onSent: () => undefined,
    snapshotAfterChanges: 10,
    onSnapshotSent: (keys) => (sentKeys = keys),
  })
  toSender.deliver = (message) => {
    switch (message.type) {
      case 'snapshot-needed':
        receiver.needed(toReceiver, message.lacks)
        break
      case 'snapshot-offer':
        offers.push(message.keys)
        receiver.offer(toReceiver, message.vc, message.keys)
        break
      case 'snapshot-chunk':
        receiver.chunk(toReceiver, message)
        chunks.push({
          seq: message.seq,
          keys: message.keys,
          states: message.states.length,
          totalAfter: receiver.status().receiving?.keysTotal ?? -1,
          counted: receiver.status().receiving?.keysCounted ?? false,
        })
        break
      case 'snapshot-end':
        void receiver.end(toReceiver)?.().then(joined)
        break
    }
  }
  toReceiver.deliver = (message) => {
    if (message.type === 'snapshot-request') session.onSnapshotRequest()
    else if (message.type === 'snapshot-reply') session.onSnapshotReply(message.accept)
    else if (message.type === 'snapshot-ack') session.onSnapshotAck(message.seq)
  }
  receiver.said(sender.nodeId, {})
  session.start()
  session.onSync({}, [])
  await done
  session.stop()
  return { receiving, receiver, chunks, offers, sentKeys: sentKeys as number | null }
}

describe('a snapshot offer carries an estimate; the last chunk the exact count', () => {
  it('2,500 keys made by 800 changes: offered as 800, counted 2,500 in the last chunk, all joined', async () => {
    const sender = await filled(2500, 300)
    const { receiving, receiver, chunks, offers, sentKeys } = await transfer(sender)
    expect(offers).toEqual([800])
    expect(chunks.map((chunk) => chunk.keys)).toEqual([undefined, undefined, 2500])
    // Until the last chunk, the receiver shows the estimate as one; then the count.
    expect(chunks.map((chunk) => [chunk.totalAfter, chunk.counted])).toEqual([
      [800, false],
      [800, false],
      [2500, true],
    ])
    expect(chunks.reduce((sum, chunk) => sum + chunk.states, 0)).toBe(2500)
    expect(sentKeys).toBe(2500)
    expect(receiver.status().last?.keys).toBe(2500)
    expect(receiving.vc).toEqual(sender.vc)
  })

  it('a snapshot of exactly one full chunk tells the count in an empty chunk after it', async () => {
    const sender = await filled(1000, 50)
    const { chunks, offers, sentKeys } = await transfer(sender)
    expect(offers).toEqual([250])
    expect(chunks.map((chunk) => [chunk.states, chunk.keys])).toEqual([
      [1000, undefined],
      [0, 1000],
    ])
    expect(chunks.reduce((sum, chunk) => sum + chunk.states, 0)).toBe(1000)
    expect(sentKeys).toBe(1000)
  })
})
