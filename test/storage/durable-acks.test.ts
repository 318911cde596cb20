/**
 * Acks say what they mean: a node acknowledges (and syncs) only changes that are fsynced, and one
 * fsync makes many commits durable. The property drives a real store on a MemoryBackend that does
 * not fsync each batch (so a power loss loses unsynced batches) under a real replicator, with one
 * fake peer sending changes, local writes, ticks, and disk writes that take random turns; every
 * `ack` and `sync` sent must name only changes the disk keeps through a power loss.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { vcCovers, vcJoin } from '../../src/clock/index.js'
import type { PeerMessage } from '../../src/codec/peer.js'
import type { Change } from '../../src/crdt/index.js'
import { isMeshError } from '../../src/errors.js'
import { Replicator } from '../../src/replication/index.js'
import type { PeerLinkLike } from '../../src/replication/link.js'
import { LevelBackend, MemoryBackend, Store } from '../../src/storage/index.js'
import type { MemoryDisk } from '../../src/storage/index.js'
import { Cluster, buildIfStale, get, put, stopAllClusters } from '../cluster/helpers.js'
import { prng, tempDir } from '../helpers/async.js'
import { RUNS } from '../helpers/runs.js'

const PEER = '0202020202020202' as NodeId
const NOW = 1_700_000_000_000

const peerChange = (seq: number): Change => ({
  dot: { node: PEER, seq },
  deps: seq === 1 ? {} : { [PEER]: seq - 1 },
  hlc: { wallMs: NOW + seq, logical: 0 },
  ops: [{ type: 'counter.add', name: `c${seq % 3}`, delta: 1 }],
})

const openStore = (backend: MemoryBackend | LevelBackend, sync = false): Promise<Store> =>
  Store.open({ backend, now: () => NOW + 1000, randomBytes: () => new Uint8Array(8).fill(1), sync })

/** The vector clock a power loss now would leave on the disk. */
function durableOnDisk(disk: MemoryDisk): VectorClock {
  const table = disk.durable.get('vc')
  const vc: Record<string, number> = {}
  for (const origin of [PEER, '0101010101010101']) {
    const bytes = table?.get(origin)
    if (bytes !== undefined) vc[origin] = Number(Buffer.from(bytes).toString('utf8'))
  }
  return vc as VectorClock
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** A link to the fake peer that checks every ack and sync against the disk as it is sent. */
function checkingLink(disk: MemoryDisk, claims: VectorClock[], problems: string[]): PeerLinkLike {
  const listeners: ((message: PeerMessage) => void)[] = []
  return {
    nodeId: PEER,
    url: null,
    direction: 'accepted',
    closed: false,
    send: (message) => {
      if (message.type === 'ack' || message.type === 'sync') {
        const onDisk = durableOnDisk(disk)
        claims.push(message.vc)
        if (!vcCovers(onDisk, message.vc))
          problems.push(`${message.type} ${JSON.stringify(message.vc)} past the disk ${JSON.stringify(onDisk)}`)
      }
      return true
    },
    drained: () => Promise.resolve(),
    onMessage: (listener) => listeners.push(listener),
    onClose: () => {},
    close: () => {},
    // The fake peer's side: frames it sends reach the replicator here.
    deliver: (message: PeerMessage) => listeners.forEach((listener) => listener(message)),
  } as PeerLinkLike & { deliver: (message: PeerMessage) => void }
}

type Action =
  | { kind: 'changes'; count: number; ack: boolean }
  | { kind: 'local' }
  | { kind: 'tick' }
  | { kind: 'later' }
  | { kind: 'wait'; turns: number }

const action: fc.Arbitrary<Action> = fc.oneof(
  // `ack`: the peer waits for acks (acked at once), else they are gathered until `later` runs.
  fc.record({ kind: fc.constant('changes' as const), count: fc.integer({ min: 1, max: 6 }), ack: fc.boolean() }),
  fc.record({ kind: fc.constant('local' as const) }),
  fc.record({ kind: fc.constant('tick' as const) }),
  fc.record({ kind: fc.constant('later' as const) }),
  fc.record({ kind: fc.constant('wait' as const), turns: fc.integer({ min: 1, max: 4 }) }),
)

/** Runs the actions, then loses power; returns what went wrong. */
async function run(actions: readonly Action[], diskSeed: number): Promise<string[]> {
  const backend = new MemoryBackend()
  const random = prng(diskSeed)
  // A write lands after 0-3 turns, so acks, commits and the durable step interleave.
  backend.disk.latency = async () => {
    for (let i = Math.floor(random() * 4); i > 0; i--) await turn()
  }
  const store = await openStore(backend)
  const later: (() => void)[] = []
  const replicator = new Replicator({ store, now: () => NOW, later: (run) => later.push(run) })
  const claims: VectorClock[] = []
  const problems: string[] = []
  const link = checkingLink(backend.disk, claims, problems) as PeerLinkLike & { deliver: (m: PeerMessage) => void }
  replicator.addLink(link)
  let sent = 0
  /** Each local commit's error, or null. */
  const local: Promise<unknown>[] = []
  for (const step of actions) {
    if (step.kind === 'changes') {
      const changes = Array.from({ length: step.count }, () => peerChange(++sent))
      link.deliver({ type: 'changes', changes, ack: step.ack })
    } else if (step.kind === 'local') {
      const commit = store.commitLocal([{ type: 'counter.add', name: 'own', delta: 1 }])
      local.push(
        commit.then(
          () => null,
          (error: unknown) => error,
        ),
      )
    } else if (step.kind === 'tick') replicator.tick()
    else if (step.kind === 'later') for (const run of later.splice(0)) run()
    else for (let i = 0; i < step.turns; i++) await turn()
  }
  for (let i = 0; i < 3; i++) await turn()
  const after = await openStore(backend.crash('power'))
  // Commits still on their way when the power went fail as the dead process's calls do.
  for (const error of await Promise.all(local))
    if (error !== null && !isMeshError(error, 'MESHKV_ERR_CLOSED'))
      problems.push(`a local commit failed: ${String(error)}`)
  const acked = claims.reduce<VectorClock>((joined, vc) => vcJoin(joined, vc), {})
  if (!vcCovers(after.vc, acked))
    problems.push(
      `after a power loss the store holds ${JSON.stringify(after.vc)}, less than acked ${JSON.stringify(acked)}`,
    )
  await replicator.close()
  await after.close()
  return problems
}

describe('durable acks', () => {
  it('acks and syncs never name a change past what survives a power loss', async () => {
    // fast-check prints the seed and the shrunk actions of a failure.
    await fc.assert(
      fc.asyncProperty(fc.array(action, { maxLength: 30 }), fc.nat(), async (actions, diskSeed) => {
        expect(await run(actions, diskSeed)).toEqual([])
      }),
      { numRuns: Math.min(RUNS, 300) },
    )
  }, 120_000)

  it('one fsync makes many commits durable, and every waiter shares it', async () => {
    const backend = new MemoryBackend()
    const store = await openStore(backend)
    for (let seq = 1; seq <= 20; seq++) await store.applyRemote(peerChange(seq))
    const before = backend.disk.syncs
    expect(store.vc[PEER]).toBe(20)
    expect(store.durableVc[PEER]).toBeUndefined()
    // Twenty unsynced groups, ten waiters: one fsync.
    await Promise.all(Array.from({ length: 10 }, () => store.makeDurable()))
    expect(backend.disk.syncs - before).toBe(1)
    expect(store.durableVc).toEqual(store.vc)
    expect(durableOnDisk(backend.disk)).toEqual(store.vc)
    // Nothing new: no fsync.
    await store.makeDurable()
    expect(backend.disk.syncs - before).toBe(1)
    // Commits queued ahead of a waiting step are fsynced as one group, and the step has nothing left.
    await store.applyRemote(peerChange(21))
    const applied = Array.from({ length: 50 }, (_, i) => store.applyRemote(peerChange(22 + i)))
    const waiters = Array.from({ length: 5 }, () => store.makeDurable())
    await Promise.all([...applied, ...waiters])
    expect(backend.disk.syncs - before).toBe(2)
    expect(store.durableVc[PEER]).toBe(71)
    expect(durableOnDisk(backend.disk)).toEqual(store.vc)
    await store.close()
  })

  it('a store with sync fsyncs every batch, so everything applied is durable at once', async () => {
    const backend = new MemoryBackend()
    const store = await openStore(backend, true)
    await store.applyRemote(peerChange(1))
    expect(store.durableVc).toEqual(store.vc)
    await store.close()
  })

  it('on LevelDB: received changes are durable only after makeDurable, and a reopen starts durable', async () => {
    const { dir, remove } = await tempDir('durable-acks')
    try {
      const store = await openStore(new LevelBackend(dir))
      await store.applyRemote(peerChange(1))
      await store.applyRemote(peerChange(2))
      expect(store.durableVc[PEER]).toBeUndefined()
      await store.makeDurable()
      expect(store.durableVc).toEqual({ [PEER]: 2 })
      await store.applyRemote(peerChange(3))
      await store.close()
      const reopened = await openStore(new LevelBackend(dir))
      expect(reopened.durableVc).toEqual({ [PEER]: 3 })
      await reopened.close()
    } finally {
      await remove()
    }
  })

  it('a real 3-node cluster without --sync meets w=all for many concurrent writes', async () => {
    buildIfStale()
    const cluster = await Cluster.start({ size: 3 })
    try {
      await cluster.waitLinked()
      const urls = cluster.urls()
      // Many writes at once on every node: the peers' fsyncs before acking are shared, not one each.
      const writes = Array.from({ length: 90 }, (_, i) =>
        put(urls[i % 3] as string, `durable-${i}`, `v${i}`, { w: 'all', timeout_ms: '10000' }),
      )
      expect((await Promise.all(writes)).map((answer) => answer.status)).toEqual(writes.map(() => 200))
      // Acknowledged at w=all: every node already holds each write.
      for (const url of urls)
        for (const i of [0, 44, 89]) expect((await get(url, `durable-${i}`)).text, `${url} durable-${i}`).toBe(`v${i}`)
    } finally {
      await stopAllClusters()
    }
  }, 90_000)
})
