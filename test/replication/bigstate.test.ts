/**
 * No state is too big to move (issue 12, part 3), below the process level: snapshot chunks split a
 * large state into parts that the receiver joins back, with what it buffers bounded; a receiver
 * fed a real snapshot of a state past a frame joins it; and `changes` frames are sized by their
 * real encoded length, `deps` included, so a cluster with 500 historical node ids never builds a
 * frame past FRAME_BYTES_MAX. fast-check prints the failing seed (`seed: …, path: …`).
 */
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { encodeState } from '../../src/codec/index.js'
import type { PeerMessage, SnapshotChunkEntry } from '../../src/codec/peer.js'
import { FRAME_BYTES_MAX, SnapshotChunker, StateAssembler, decodeFrame, encodeFrame } from '../../src/codec/peer.js'
import type { Change } from '../../src/crdt/index.js'
import { docJson, lwwSibling } from '../../src/crdt/index.js'
import { MeshError } from '../../src/errors.js'
import type { PeerLinkLike } from '../../src/replication/link.js'
import { SILENT_LOGGER } from '../../src/replication/logger.js'
import { PeerSession } from '../../src/replication/peer-session.js'
import { SnapshotReceiver } from '../../src/replication/snapshot-receiver.js'
import { MemoryBackend } from '../../src/storage/memory-backend.js'
import { Store } from '../../src/storage/store.js'

const NOW = 1_700_000_000_000
const PEER = 'ff000000000000aa' as NodeId

type State = readonly [string, string, Uint8Array]

/** Every chunk the chunker makes for `states`, in order. */
function chunksOf(states: readonly State[], statesMax: number, bytesMax: number): SnapshotChunkEntry[][] {
  const chunker = new SnapshotChunker({ statesMax, bytesMax })
  const chunks = states.flatMap(([space, key, bytes]) => chunker.push(space, key, bytes))
  const last = chunker.finish()
  return last === null ? chunks : [...chunks, last]
}

function codeOf(work: () => unknown): string | undefined {
  try {
    work()
  } catch (error) {
    return error instanceof MeshError ? error.code : 'not a MeshError'
  }
  return undefined
}

describe('snapshot chunks split a large state and join it back', () => {
  it('any states, any chunk size: reassembled equal, in order; every chunk within its bounds', () => {
    const stateArb = fc.tuple(
      fc.constantFrom('kv', 'set', 'counter'),
      fc.string({ minLength: 1, maxLength: 12 }),
      fc.uint8Array({ maxLength: 3000 }),
    )
    fc.assert(
      fc.property(
        fc.array(stateArb, { maxLength: 30 }),
        fc.integer({ min: 1, max: 2000 }),
        fc.integer({ min: 1, max: 8 }),
        (states, bytesMax, statesMax) => {
          const chunks = chunksOf(states, statesMax, bytesMax)
          const assembler = new StateAssembler(3000)
          const joined = chunks.flat().flatMap((entry) => {
            const state = assembler.take(entry)
            return state === null ? [] : [state]
          })
          expect(assembler.pending).toBe(false)
          expect(joined.map(([space, key, bytes]) => [space, key, [...bytes]])).toEqual(
            states.map(([space, key, bytes]) => [space, key, [...bytes]]),
          )
          for (const chunk of chunks) {
            expect(chunk.length).toBeGreaterThan(0)
            expect(chunk.length).toBeLessThanOrEqual(statesMax)
            const bytes = chunk.reduce((sum, [, key, part]) => sum + part.length + Buffer.byteLength(key), 0)
            // Parts fill a chunk to its bound; a whole state joins one only if it fits (a byte at least per chunk).
            expect(bytes).toBeLessThanOrEqual(Math.max(bytesMax, 1 + 36))
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it('a state of 6 MB goes in chunks of about 1 MiB, each a frame far under 4 MiB', () => {
    const big = new Uint8Array(6_000_000).map((_, index) => index % 251)
    const chunks = chunksOf([['kv', 'big', big]], 1000, 1024 * 1024)
    expect(chunks.length).toBe(6)
    for (const [seq, states] of chunks.entries()) {
      const frame = encodeFrame({ type: 'snapshot-chunk', seq: seq + 1, states })
      expect(frame.length).toBeLessThan(1024 * 1024 + 1024)
      expect(decodeFrame(frame)).toMatchObject({ type: 'snapshot-chunk', seq: seq + 1 })
    }
  })

  it('buffers at most its bound of one state; a part cut off by another key is a decode error', () => {
    const over = new StateAssembler(10)
    expect(over.take(['kv', 'a', new Uint8Array(6), true])).toBeNull()
    expect(codeOf(() => over.take(['kv', 'a', new Uint8Array(5), true]))).toBe('MESHKV_ERR_FRAME_TOO_LARGE')
    const cut = new StateAssembler(100)
    expect(cut.take(['kv', 'a', new Uint8Array(6), true])).toBeNull()
    expect(codeOf(() => cut.take(['kv', 'b', new Uint8Array(6)]))).toBe('MESHKV_ERR_DECODE')
    expect(codeOf(() => cut.take(['set', 'a', new Uint8Array(6)]))).toBe('MESHKV_ERR_DECODE')
  })
})

/** A link end that records what is sent to the peer and plays the peer's messages back. */
class RecordingLink implements PeerLinkLike {
  readonly url = null
  readonly direction = 'dialed' as const
  readonly sent: PeerMessage[] = []
  closed = false
  closeCode: number | null = null
  listener: (message: PeerMessage) => void = () => undefined

  constructor(readonly nodeId: NodeId) {}
  send(message: PeerMessage): boolean {
    if (!this.closed) this.sent.push(message)
    return !this.closed
  }
  async drained(): Promise<void> {}
  onMessage(listener: (message: PeerMessage) => void): void {
    this.listener = listener
  }
  onClose(): void {}
  close(code = 1000): void {
    this.closed = true
    this.closeCode ??= code
  }
}

const stores: Store[] = []
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close()
})

async function openStore(): Promise<Store> {
  const store = await Store.open({ backend: new MemoryBackend(), now: () => NOW, randomBytes: () => new Uint8Array(8) })
  stores.push(store)
  return store
}

/** A receiver that asked `link`'s peer for a snapshot and was offered one as of `vc`. */
function receiverOffered(store: Store, link: RecordingLink, vc: VectorClock) {
  let joined = false
  const receiver = new SnapshotReceiver({
    store,
    logger: SILENT_LOGGER,
    now: () => NOW,
    onJoined: () => (joined = true),
    onRefused: () => undefined,
    recovering: () => false,
    split: () => false,
  })
  receiver.said(link.nodeId, {})
  expect(receiver.needed(link, null)).toBe(true)
  receiver.offer(link, vc, 1)
  return { receiver, joined: () => joined }
}

describe('a receiver joins a state that came in parts', () => {
  const siblings = [1, 2, 3, 4, 5, 6].map((seq) => ({
    dot: { node: PEER, seq },
    hlc: { wallMs: NOW, logical: seq },
    value: new Uint8Array(1_000_000).fill(seq),
    contentType: 'application/octet-stream',
  }))
  const encoded = encodeState({ siblings })

  it('six 1 MB siblings, as chunks of 1 MiB: staged, joined, read back whole', async () => {
    const store = await openStore()
    const link = new RecordingLink(PEER)
    const { receiver, joined } = receiverOffered(store, link, { [PEER]: 6 })
    const chunks = chunksOf([['kv', 'big', encoded]], 1000, 1024 * 1024)
    expect(chunks.length).toBeGreaterThan(5)
    chunks.forEach((states, index) => receiver.chunk(link, { type: 'snapshot-chunk', seq: index + 1, states }))
    await receiver.end(link)?.()
    expect(link.closed).toBe(false)
    expect(joined()).toBe(true)
    const state = await store.getState('kv', 'big')
    expect(state.siblings.length).toBe(6)
    expect(lwwSibling(state)?.value?.[0]).toBe(6)
    expect(store.vc).toEqual({ [PEER]: 6 })
  })

  it('a 6 MB document, as chunks of 1 MiB: staged, joined, read back whole, and writable', async () => {
    const store = await openStore()
    const theirs = new Y.Doc()
    theirs.clientID = 2
    for (const name of ['a', 'b', 'c', 'd', 'e', 'f']) theirs.getText(name).insert(0, name.repeat(1_000_000))
    const update = Y.encodeStateAsUpdate(theirs)
    const link = new RecordingLink(PEER)
    const { receiver, joined } = receiverOffered(store, link, { [PEER]: 1 })
    const chunks = chunksOf([['doc', 'big', encodeState({ update, base: update.length })]], 1000, 1024 * 1024)
    expect(chunks.length).toBeGreaterThan(5)
    chunks.forEach((states, index) => receiver.chunk(link, { type: 'snapshot-chunk', seq: index + 1, states }))
    await receiver.end(link)?.()
    expect(joined()).toBe(true)
    const own = new Y.Doc()
    own.clientID = 1
    own.getMap('meta').set('here', true)
    await store.commitLocal([{ type: 'doc.update', name: 'big', update: Y.encodeStateAsUpdate(own) }])
    const json = docJson(await store.getState('doc', 'big'))
    expect(json['meta']).toEqual({ here: true })
    expect(json['f']).toBe('f'.repeat(1_000_000))
  })

  it('a snapshot that ends in the middle of a state is dropped, the link closed 1008, nothing joined', async () => {
    const store = await openStore()
    const link = new RecordingLink(PEER)
    const { receiver, joined } = receiverOffered(store, link, { [PEER]: 6 })
    const chunks = chunksOf([['kv', 'big', encoded]], 1000, 1024 * 1024)
    chunks
      .slice(0, 2)
      .forEach((states, index) => receiver.chunk(link, { type: 'snapshot-chunk', seq: index + 1, states }))
    await receiver.end(link)?.()
    expect(link.closeCode).toBe(1008)
    expect(joined()).toBe(false)
    expect(store.vc).toEqual({})
    expect((await store.getState('kv', 'big')).siblings).toEqual([])
  })
})

describe('changes frames are sized by their encoded length', () => {
  it('with a vector clock of 500 node ids, every frame a session builds fits a frame', async () => {
    const store = await openStore()
    const origins = Array.from({ length: 500 }, (_, index) => (index + 1).toString(16).padStart(16, '0') as NodeId)
    let deps: VectorClock = {}
    for (const [index, node] of origins.entries()) {
      const change: Change = {
        dot: { node, seq: 1 },
        deps,
        hlc: { wallMs: NOW, logical: index },
        ops: [{ type: 'counter.add', name: 'c', delta: 1 }],
      }
      await store.applyRemote(change)
      deps = { ...deps, [node]: 1 }
    }
    await Promise.all(
      Array.from({ length: 600 }, (_, index) =>
        store.commitLocal([{ type: 'kv.put', key: `k${index}`, value: new Uint8Array(8), contentType: 't' }]),
      ),
    )
    const link = new RecordingLink(PEER)
    const session = new PeerSession({
      link,
      store,
      selfId: store.nodeId,
      frameChangesMax: 512,
      batchBytesMax: 2 * 1024 * 1024,
      logger: SILENT_LOGGER,
      onMessage: () => undefined,
      onSent: () => undefined,
      snapshotAfterChanges: Number.MAX_SAFE_INTEGER,
    })
    session.start()
    session.onSync({}, [])
    const sentChanges = () =>
      link.sent.reduce((sum, message) => sum + (message.type === 'changes' ? message.changes.length : 0), 0)
    await vi.waitFor(() => expect(sentChanges()).toBe(1100), { timeout: 10_000 })
    session.stop()
    expect(link.closed).toBe(false)
    const sizes = link.sent.map((message) => encodeFrame(message).length)
    console.log(`500 node ids of deps: ${sizes.length} frames, the largest ${Math.max(...sizes)} bytes`)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(FRAME_BYTES_MAX)
    // Each of the 600 local changes carries 500 ids of deps (about 14 KB): they need more than the 3 frames a count of 512 would give.
    expect(link.sent.length).toBeGreaterThan(3)
  })
})
