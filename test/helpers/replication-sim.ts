/**
 * A small replication simulator for tests: real `Store`s on `MemoryBackend`s, one `Replicator`
 * each, joined by the in-memory links of src/transport/memory-link.ts, one virtual clock (each node may be skewed
 * from it), one seeded PRNG. Nothing here knows the protocol: it makes links, cuts them, writes,
 * ticks, moves time, and waits for quiescence. A node's process can crash (`crash`: kill -9 or a
 * power loss, with what each loses modelled by MemoryBackend) and `restart` on what its disk
 * kept. The timed simulator of test/sim drives the same cluster on a virtual timeline.
 *
 * Seeds: randomized tests take their seed from `MESHKV_REPLICATION_SEED` when it is set (replay),
 * else a fresh random one, and name it in every failure together with the command that replays it.
 */
import fc from 'fast-check'
import type { NodeId, VectorClock } from '../../src/clock/index.js'
import { vcEquals } from '../../src/clock/index.js'
import type { Intent } from '../../src/crdt/index.js'
import type { Logger, ReplicatorOptions } from '../../src/replication/index.js'
import { Replicator } from '../../src/replication/index.js'
import type { CommitResult, Digest, ReplicaStore } from '../../src/storage/index.js'
import { MemoryBackend, Store, digestOf } from '../../src/storage/index.js'
import { keepsNewLink } from '../../src/transport/core.js'
import type { Delivery, LinkEnd, LinkPair, PairOptions } from '../../src/transport/memory-link.js'
import { LinkScheduler } from '../../src/transport/memory-link.js'
import { prng } from './async.js'

export const START_MS = 1_700_000_000_000
export const TICK_MS = 1000

export const SEED_ENV = 'MESHKV_REPLICATION_SEED'
export const SEEDS_ENV = 'MESHKV_REPLICATION_SEEDS'

/** The seed to run: the replayed one from the environment, or a fresh random one. */
export function seedFromEnv(): number {
  const text = process.env[SEED_ENV]
  if (text === undefined || text === '') return Math.floor(Math.random() * 2 ** 32)
  const seed = Number(text)
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error(`${SEED_ENV} must be a non-negative integer, not ${JSON.stringify(text)}`)
  return seed
}

/** A positive integer from the environment, or `fallback`. */
export function countFromEnv(name: string, fallback: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const count = Number(text)
  if (!Number.isSafeInteger(count) || count < 1)
    throw new Error(`${name} must be a positive integer, not ${JSON.stringify(text)}`)
  return count
}

export function replayCommand(seed: number, file: string, testName: string, extra = ''): string {
  return `${SEED_ENV}=${seed}${extra} npx vitest run ${file} -t ${JSON.stringify(testName)}`
}

/** Runs `body`; a failure is rethrown naming the seed and the replay command. */
export async function withSeed<T>(seed: number, replay: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new Error(`failed with seed ${seed} (replay: ${replay}): ${message}`, { cause: error })
  }
}

export interface SimNodeOptions {
  /** How far this node's wall clock is ahead of the shared virtual clock. */
  skewMs?: number
  maxClockOffsetMs?: number
  /** fsync each batch (the store's `sync`); see MemoryBackend for what a crash loses without it. */
  sync?: boolean
  replicator?: Partial<Omit<ReplicatorOptions, 'store' | 'now'>>
  /**
   * Called at each process run, with its new store: what the replicator sees of the store (the
   * simulator wraps it to watch what is handed over) and the replicator's logger for that run.
   */
  perRun?: (store: Store) => { replicaStore?: ReplicaStore; logger?: Logger }
}

export type CrashKind = 'process' | 'power'

export class SimNode {
  /** Changes this node made itself (on this run of its process and the ones before). */
  own = 0
  /** False between `crash` and `restart`. */
  alive = true
  /** How many times the process crashed: a new process run begins after each. */
  generation = 0

  constructor(
    readonly index: number,
    readonly cluster: SimCluster,
    /** The process's current store and replicator: replaced by `restart`. */
    public store: Store,
    public replicator: Replicator,
    readonly url: string,
    public skewMs: number,
    /** The backend the current (or, while down, the next) process opens. */
    public backend: MemoryBackend,
    readonly options: SimNodeOptions,
  ) {}

  get nodeId(): NodeId {
    return this.store.nodeId
  }

  get vc(): VectorClock {
    return this.store.vc
  }

  get counters(): Readonly<Record<string, number>> {
    return this.replicator.counters
  }

  now(): number {
    return this.cluster.clockMs + this.skewMs
  }
}

/** The node that dialed the link `end` is one end of. */
export function dialerOf(end: LinkEnd): NodeId {
  return end.direction === 'dialed' ? end.self : end.nodeId
}

/** Node ids in index order: node i gets `000000000000000{i+1}` (hex), so lower index, lower id. */
export function simNodeId(index: number): NodeId {
  return (index + 1).toString(16).padStart(16, '0') as NodeId
}

export class SimCluster {
  readonly scheduler: LinkScheduler
  readonly nodes: SimNode[] = []
  clockMs = START_MS
  #closed = false
  /** Per process run (its replicator), the link admitted to each peer, as its transport would hold it. */
  readonly #admitted = new WeakMap<Replicator, Map<NodeId, LinkEnd>>()

  constructor(
    readonly seed: number,
    options: { trace?: boolean; onQueued?: (end: LinkEnd) => void; onDeliver?: (delivery: Delivery) => void } = {},
  ) {
    this.scheduler = new LinkScheduler(prng(seed), options)
  }

  static async open(
    count: number,
    seed: number,
    options: { node?: (index: number) => SimNodeOptions; trace?: boolean } = {},
  ): Promise<SimCluster> {
    const cluster = new SimCluster(seed, { trace: options.trace ?? false })
    for (let index = 0; index < count; index++) await cluster.addNode(options.node?.(index) ?? {})
    return cluster
  }

  get random(): () => number {
    return this.scheduler.random
  }

  async addNode(options: SimNodeOptions = {}): Promise<SimNode> {
    const index = this.nodes.length
    // The store and replicator read the node's clock, and the node is made after them.
    const made: { node?: SimNode } = {}
    const now = (): number => (made.node === undefined ? this.clockMs : made.node.now())
    const backend = new MemoryBackend()
    const { store, replicator } = await this.#boot(index, backend, options, now)
    const node = new SimNode(
      index,
      this,
      store,
      replicator,
      `sim://node-${index}`,
      options.skewMs ?? 0,
      backend,
      options,
    )
    made.node = node
    this.nodes.push(node)
    return node
  }

  /** A process run of node `index`: a store opened on `backend`, and a replicator over it. */
  async #boot(
    index: number,
    backend: MemoryBackend,
    options: SimNodeOptions,
    now: () => number,
  ): Promise<{ store: Store; replicator: Replicator }> {
    const id = simNodeId(index)
    const store = await Store.open({
      backend,
      now,
      randomBytes: () => new Uint8Array(Buffer.from(id, 'hex')),
      ...(options.sync === undefined ? {} : { sync: options.sync }),
      ...(options.maxClockOffsetMs === undefined ? {} : { maxClockOffsetMs: options.maxClockOffsetMs }),
    })
    const run = options.perRun?.(store) ?? {}
    const replicator = new Replicator({
      ...options.replicator,
      ...(run.logger === undefined ? {} : { logger: run.logger }),
      store: run.replicaStore ?? store,
      now,
    })
    return { store, replicator }
  }

  /**
   * The process of node `index` dies (`process`: kill -9, `power`: power loss; see MemoryBackend
   * for what each loses). Its store and replicator are abandoned mid-flight, not closed: every
   * later call of theirs into the backend fails. With `cutLinks` (the default) each of its live
   * links is cut and both ends hear it now; pass false to let the caller model how peers notice.
   */
  crash(index: number, kind: CrashKind, options: { cutLinks?: boolean } = {}): void {
    const node = this.node(index)
    if (!node.alive) throw new Error(`node ${index} is already down`)
    node.alive = false
    node.generation++
    node.backend = node.backend.crash(kind)
    if (options.cutLinks ?? true) {
      for (const pair of [...this.scheduler.pairs])
        if (pair.dialer.self === node.nodeId || pair.acceptor.self === node.nodeId) pair.cut()
    }
  }

  /** A new process for node `index`, on what its disk kept. */
  async restart(index: number): Promise<SimNode> {
    const node = this.node(index)
    if (node.alive) throw new Error(`node ${index} is running`)
    const { store, replicator } = await this.#boot(index, node.backend, node.options, () => node.now())
    node.store = store
    node.replicator = replicator
    node.alive = true
    return node
  }

  /**
   * A second process of node `index` on `backend` (a copy of its disk: the clone of an operator
   * fault), beside the running one: same options but no `perRun` (the node's runs are the
   * original's). The caller owns it: it is not one of `nodes`, and the caller closes it.
   */
  async spawn(index: number, backend: MemoryBackend): Promise<{ store: Store; replicator: Replicator }> {
    const node = this.node(index)
    const { perRun: _perRun, ...options } = node.options
    return this.#boot(index, backend, options, () => node.now())
  }

  node(index: number): SimNode {
    const node = this.nodes[index]
    if (node === undefined) throw new Error(`no node ${index}`)
    return node
  }

  /** A new link dialed by node `from` to node `to`, admitted by both nodes (dialer first). */
  link(from: number, to: number, options: PairOptions = {}): LinkPair {
    const a = this.node(from)
    const b = this.node(to)
    const pair = this.scheduler.pair({ nodeId: a.nodeId, url: a.url }, { nodeId: b.nodeId, url: b.url }, options)
    if (this.admit(pair.dialer)) this.admit(pair.acceptor)
    return pair
  }

  /** Links every pair of nodes once (a full mesh), lower index dialing. */
  linkAll(): LinkPair[] {
    const pairs: LinkPair[] = []
    for (let from = 0; from < this.nodes.length; from++)
      for (let to = from + 1; to < this.nodes.length; to++) pairs.push(this.link(from, to))
    return pairs
  }

  /**
   * Admits `end` at its node as the transport does (one link per peer, `keepsNewLink`): the loser
   * of a new and a live link to one peer is closed with 4000, and only a winner reaches the
   * replicator. False when `end` itself lost.
   */
  admit(end: LinkEnd): boolean {
    const node = this.nodes.find((candidate) => candidate.nodeId === end.self)
    if (node === undefined) throw new Error(`no node ${end.self}`)
    let admitted = this.#admitted.get(node.replicator)
    if (admitted === undefined) this.#admitted.set(node.replicator, (admitted = new Map()))
    const held = admitted.get(end.nodeId)
    if (held !== undefined && !held.closed) {
      if (!keepsNewLink(dialerOf(end), dialerOf(held))) {
        end.close(4000, 'already linked')
        return false
      }
      admitted.set(end.nodeId, end)
      held.close(4000, 'replaced by a newer link')
    }
    admitted.set(end.nodeId, end)
    node.replicator.addLink(end)
    return true
  }

  /** Live links between two nodes, either direction. */
  linksBetween(a: number, b: number): LinkPair[] {
    const x = this.node(a).nodeId
    const y = this.node(b).nodeId
    return [...this.scheduler.pairs].filter(
      (pair) =>
        (pair.dialer.self === x && pair.acceptor.self === y) || (pair.dialer.self === y && pair.acceptor.self === x),
    )
  }

  /** The network fails between two nodes: every live link between them is cut. */
  cut(a: number, b: number): void {
    for (const pair of this.linksBetween(a, b)) pair.cut()
  }

  async write(index: number, intents: readonly Intent[]): Promise<CommitResult> {
    const result = await this.node(index).store.commitLocal(intents)
    if (result.change !== null) this.node(index).own++
    return result
  }

  /** Starts a write without waiting for it (concurrent writes); counts it once committed. */
  startWrite(index: number, intents: readonly Intent[]): Promise<CommitResult> {
    return this.write(index, intents)
  }

  advance(ms: number): void {
    this.clockMs += ms
  }

  tickAll(): void {
    for (const node of this.nodes) node.replicator.tick()
  }

  /** Every node has applied the same changes and buffers nothing. */
  converged(): boolean {
    const first = this.nodes[0]
    if (first === undefined) return true
    return this.nodes.every((node) => vcEquals(node.vc, first.vc) && node.counters['buffered'] === 0)
  }

  /**
   * Delivers, ticks and moves time a second per round until every node has the same VC, then
   * lets the last acks settle. Fails (describing every node) after `roundsMax` rounds.
   */
  async quiesce(roundsMax = 40): Promise<number> {
    for (let round = 0; round < roundsMax; round++) {
      await this.scheduler.run()
      if (this.converged()) {
        this.tickAll()
        await this.scheduler.run()
        return round
      }
      this.advance(TICK_MS)
      this.tickAll()
    }
    throw new Error(`no quiescence after ${roundsMax} rounds:\n${this.describe()}`)
  }

  /** One line per node: VC, counters, live links. */
  describe(): string {
    return this.nodes
      .map(
        (node) =>
          `node ${node.index} (${node.nodeId}) own=${node.own} vc=${JSON.stringify(node.vc)} linked=${JSON.stringify(node.replicator.linkedPeers())} counters=${JSON.stringify(node.counters)}`,
      )
      .join('\n')
  }

  async digests(): Promise<Digest[]> {
    const out: Digest[] = []
    for (const node of this.nodes) {
      const snapshot = await node.store.snapshot()
      try {
        out.push(await digestOf(snapshot))
      } finally {
        await snapshot.close()
      }
    }
    return out
  }

  /** Total changes made by every node. */
  totalChanges(): number {
    return this.nodes.reduce((sum, node) => sum + node.own, 0)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const node of this.nodes) if (node.alive) await node.replicator.close()
    for (const node of this.nodes) if (node.alive) await node.store.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Random writes over small pools, so writes collide often.

export const KV_KEYS = ['a', 'b', 'c'] as const
export const COUNTERS = ['hits', 'stock'] as const
export const SETS = ['tags'] as const
export const MEMBERS = ['x', 'y', 'z'] as const

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T
}

/** One random intent: a register put or delete, a counter step, a set add or remove. */
export function randomIntent(random: () => number): Intent {
  const roll = random()
  if (roll < 0.35) {
    const text = `v${Math.floor(random() * 1000)}`
    return {
      type: 'kv.put',
      key: pick(random, KV_KEYS),
      value: new Uint8Array(Buffer.from(text)),
      contentType: 'text/plain',
    }
  }
  if (roll < 0.45) return { type: 'kv.del', key: pick(random, KV_KEYS) }
  if (roll < 0.7) {
    const delta = Math.floor(random() * 11) - 5
    return { type: 'counter.add', name: pick(random, COUNTERS), delta: delta === 0 ? 1 : delta }
  }
  if (roll < 0.88) return { type: 'set.add', name: pick(random, SETS), member: pick(random, MEMBERS) }
  return { type: 'set.remove', name: pick(random, SETS), member: pick(random, MEMBERS) }
}

function targetOf(intent: Intent): string {
  switch (intent.type) {
    case 'kv.put':
    case 'kv.del':
      return `kv\0${intent.key}`
    case 'counter.add':
      return `counter\0${intent.name}`
    case 'set.add':
    case 'set.remove':
      return `set\0${intent.name}\0${intent.member}`
    case 'doc.update':
    case 'doc.delete':
      return `doc\0${intent.name}`
  }
}

/** One to three intents with distinct targets (the store refuses two writes of one key in a change). */
export function randomIntents(random: () => number): Intent[] {
  const count = 1 + Math.floor(random() * 3)
  const out: Intent[] = []
  const seen = new Set<string>()
  for (let i = 0; i < count; i++) {
    const intent = randomIntent(random)
    if (seen.has(targetOf(intent))) continue
    seen.add(targetOf(intent))
    out.push(intent)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// fast-check with a replay env var.

export const FC_SEED_ENV = 'MESHKV_REPLICATION_FC_SEED'
export const FC_PATH_ENV = 'MESHKV_REPLICATION_FC_PATH'

/**
 * `fc.assert` that, on failure, names the seed and path and the command that replays exactly
 * that case (`MESHKV_REPLICATION_FC_SEED` / `MESHKV_REPLICATION_FC_PATH`).
 */
export function assertProperty<T>(
  property: fc.IProperty<T>,
  options: { numRuns: number; file: string; name: string },
): void {
  const seedText = process.env[FC_SEED_ENV]
  const path = process.env[FC_PATH_ENV]
  const replaying = seedText !== undefined && seedText !== ''
  const details = fc.check(property, {
    numRuns: options.numRuns,
    ...(replaying ? { seed: Number(seedText), ...(path === undefined || path === '' ? {} : { path }) } : {}),
  })
  if (!details.failed) return
  const replay = `${FC_SEED_ENV}=${details.seed} ${FC_PATH_ENV}=${details.counterexamplePath ?? ''} npx vitest run ${options.file} -t ${JSON.stringify(options.name)}`
  throw new Error(`${fc.defaultReportMessage(details) ?? 'property failed'}\nreplay: ${replay}`)
}
