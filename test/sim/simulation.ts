/**
 * The deterministic simulator (docs/testing.md, level L1): 3-5 nodes made of the real protocol core —
 * a `Store` on a `MemoryBackend` and a `Replicator` each — joined by the in-memory links of
 * test/helpers/link-pair.ts, on one virtual timeline, with ONE seeded PRNG (the cluster's) that
 * every random choice draws from: the run's shape, latencies, faults, clients, disk latencies.
 * No real clock, timer or I/O is involved: the same seed gives the same trace, hashed.
 *
 * A run, for a seed:
 * 1. Shape: nodes, clients, operations, which nodes fsync (most do), which faults are on.
 * 2. Chaos: clients (sessions with causal tokens, sticky to a node, failing over) run a mixed
 *    workload while a nemesis injects faults (network.ts has the link-level model):
 *    - register puts of unique values (blind, or with the context of the session's last read)
 *      and deletes, at w = 1, quorum or all: acknowledged once `waitForHolders(dot, required)`
 *      resolves within a virtual timeout, else `unknown`;
 *    - counter increments and decrements; set adds and removes;
 *    - reads (register, counter, set) carrying the session's causal token: the node waits on the
 *      virtual clock until its VC covers the token, or fails; at r = quorum or all the answer is
 *      the state-based join (`joinState`) of that many reachable members' states;
 *    - faults: partitions of any shape (isolate one, split, bridge, random), dropped frames
 *      (which break links), stalled links, crashes (kill -9, or a power loss — see below) and
 *      restarts, clock skew up to twice the allowed offset.
 *    - with a join, in some seeds: puts of about 1 MiB grow one key past a frame (nemesis-bigkey.ts);
 *      a live member forgotten at a random moment (`forgetLive`).
 * 3. Heal: every path up, every node restarted, faults off; run until quiescence (every node has
 *    the same VC, nothing buffered, nothing in flight) or a virtual deadline (a liveness failure).
 * 4. Check (test/checkers): the history, every node's final state, and every change from the logs.
 *
 * Durability model (MemoryBackend): most nodes run with `sync: true`; a run may have one node
 * with `sync: false`. A `process` crash (kill -9) keeps the page cache: nothing written is lost. A
 * `power` crash loses what a `sync: false` node wrote since its last synced batch (on a synced
 * node, nothing). Disk writes take virtual time (a synced one longer), and a crash before a write
 * lands loses it. "Durably held" in the ack check means: in what survives kill -9 on that node.
 *
 * Internal invariants the run also checks: the replicator never hands the store a change before
 * every change it depends on (the causal buffer delivers in causal order), and no replication
 * error is logged by a live process.
 */
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import type { Dot, NodeId, VectorClock } from '../../src/clock/index.js'
import { encodeCausalToken, vcCovers, vcEquals, vcGet, vcJoin } from '../../src/clock/index.js'
import type { AnyState, Change, Intent, Op, RegisterState, SetState, Space } from '../../src/crdt/index.js'
import { counterValue, joinState, lwwSibling, setMembers } from '../../src/crdt/index.js'
import { FRAME_BYTES_MAX } from '../../src/codec/peer.js'
import { isMeshError } from '../../src/errors.js'
import type { Logger } from '../../src/replication/index.js'
import { FORGOTTEN_SET, MEMBERS_SET, Membership } from '../../src/replication/membership.js'
import type { CommitResult, ReplicaStore, Store } from '../../src/storage/index.js'
import { digestOf, stateId } from '../../src/storage/index.js'
import type { Violation } from '../checkers/checks.js'
import { checkAll, requiredFor } from '../checkers/checks.js'
import { checkValues, valuesOf } from '../checkers/values.js'
import type {
  ChangeRecord,
  CompletionEvent,
  FinalNodeState,
  FinalSibling,
  HistoryEvent,
  InvokeEvent,
  OpRecord,
  Operation,
  ReadConcernSpec,
  ReadOperation,
  WriteConcernSpec,
  WriteOperation,
} from '../checkers/history.js'
import { dotString } from '../checkers/history.js'
import type { SimNode } from '../helpers/replication-sim.js'
import { START_MS, SimCluster, TICK_MS, simNodeId } from '../helpers/replication-sim.js'
import { Network, summarize } from './network.js'
import type { TimedEvent } from './timeline.js'
import { Timeline } from './timeline.js'
import { BIG_KEY, drawBigKey, scheduleBigPuts, valueName } from './nemesis-bigkey.js'
import { HeardClaims } from './nemesis-forget.js'

export const MAX_OFFSET_MS = 2000
export const WRITE_TIMEOUT_MS = 2500
export const READ_TIMEOUT_MS = 2000
/** Virtual time allowed from the final heal to quiescence. */
export const QUIESCE_DEADLINE_MS = 120_000

export const KV_KEYS = ['k0', 'k1', 'k2'] as const
export const COUNTER_NAMES = ['c0', 'c1'] as const
export const SET_NAMES = ['s0', 's1'] as const
export const MEMBERS = ['m0', 'm1', 'm2'] as const

export interface Faults {
  drop: boolean
  partition: boolean
  crash: boolean
  /** Crashes may be power losses (else always kill -9). */
  power: boolean
  skew: boolean
  stall: boolean
  /** A brand-new node joins mid-run, configured with one member. */
  join: boolean
  /** A member goes down for good and a live one forgets it. */
  forget: boolean
  /**
   * A live member still writing is forgotten (with force) at a random moment, and goes down for
   * good a little later; it takes the place of `forget` in the run (one forgotten member a run).
   */
  forgetLive: boolean
  /** With a join: puts of about 1 MiB grow one key past a frame around the join (nemesis-bigkey.ts). */
  bigKey: boolean
}

export const FAULT_NAMES: readonly (keyof Faults)[] = [
  'drop',
  'partition',
  'crash',
  'power',
  'skew',
  'stall',
  'join',
  'forget',
  'forgetLive',
  'bigKey',
]

export interface SimConfig {
  seed: number
  nodes: number
  clients: number
  /** Operations over all clients. */
  ops: number
  /** Nodes that do not fsync each batch (the last ones). */
  unsynced: number
  faults: Faults
}

export type ConfigOverrides = Partial<Omit<SimConfig, 'seed' | 'faults'>> & { faults?: Partial<Faults> }

export interface SimStats {
  events: number
  deliveries: number
  changes: number
  ops: number
  acknowledged: number
  unknown: number
  failed: number
  crashes: number
  lossyCrashes: number
  partitions: number
  drops: number
  refusedSkew: number
  duplicates: number
  /** Links formed, and links closed at once because their pair of nodes had one already. */
  links: number
  duplicateLinks: number
  /** Brand-new nodes that joined (became ready), and members forgotten. */
  joins: number
  forgets: number
  /** Writes a live, forgotten member refused once it learnt it was forgotten. */
  writesRefusedForgotten: number
  /** Big puts made (nemesis-bigkey.ts), and those refused for taking the key past its limit. */
  bigPuts: number
  bigPutsRefused: number
  /** States larger than a frame that a node took in a snapshot (sent in parts). */
  bigStatesSnapshotted: number
  /** Virtual ms from start to the end of quiescence. */
  virtualMs: number
}

export function emptyStats(): SimStats {
  return {
    events: 0,
    deliveries: 0,
    changes: 0,
    ops: 0,
    acknowledged: 0,
    unknown: 0,
    failed: 0,
    crashes: 0,
    lossyCrashes: 0,
    partitions: 0,
    drops: 0,
    refusedSkew: 0,
    duplicates: 0,
    links: 0,
    duplicateLinks: 0,
    joins: 0,
    forgets: 0,
    writesRefusedForgotten: 0,
    bigPuts: 0,
    bigPutsRefused: 0,
    bigStatesSnapshotted: 0,
    virtualMs: 0,
  }
}

export interface SimResult {
  seed: number
  config: SimConfig
  history: HistoryEvent[]
  finals: FinalNodeState[]
  changes: ChangeRecord[]
  nodeIds: Record<string, string>
  /** sha256 of the trace: every event, delivery and history entry, in order. */
  trace: string
  stats: SimStats
  violations: Violation[]
}

interface Client {
  id: number
  node: number
  token: VectorClock
  lastRead: Map<string, Dot[]>
  remaining: number
  busy: boolean
  written: number
}

interface Flight {
  invoke: InvokeEvent
  client: Client
  node: number
  generation: number
  write: boolean
  dot?: string
  required?: number
  timer: TimedEvent | null
  cancel: (() => void) | null
  done: boolean
}

interface ReadWaiter {
  flight: Flight
  token: VectorClock
  op: ReadOperation
}

const enc = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'))
const dec = valueName

function macroturn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** The run's shape, drawn first from the run's PRNG; overrides replace draws (the draws still happen). */
export function drawConfig(seed: number, random: () => number, overrides: ConfigOverrides = {}): SimConfig {
  const drawn: SimConfig = {
    seed,
    nodes: 3 + Math.floor(random() * 3),
    clients: 2 + Math.floor(random() * 5),
    ops: 40 + Math.floor(random() * 160),
    unsynced: random() < 0.5 ? 1 : 0,
    faults: {
      drop: random() < 0.7,
      partition: random() < 0.7,
      crash: random() < 0.6,
      power: random() < 0.6,
      skew: random() < 0.6,
      stall: random() < 0.5,
      join: random() < 0.4,
      forget: random() < 0.4,
      // From the seed, not the PRNG: runs without it draw as they did before it existed.
      forgetLive: Math.imul(seed, 2654435761) >>> 29 < 3,
      bigKey: drawBigKey(seed),
    },
  }
  return { ...drawn, ...overrides, seed, faults: { ...drawn.faults, ...overrides.faults } }
}

export class Simulation {
  readonly timeline = new Timeline(START_MS)
  readonly cluster: SimCluster
  readonly random: () => number
  readonly history: HistoryEvent[] = []
  readonly violations: Violation[] = []
  config!: SimConfig
  network!: Network
  readonly #hash: Hash = createHash('sha256')
  readonly #clients: Client[] = []
  readonly #flights = new Map<number, Flight>()
  readonly #waiters: ReadWaiter[] = []
  /** Every change a node made (as its commit answered), by dot. */
  readonly #made = new Map<string, Change>()
  readonly #restarting = new Set<number>()
  readonly #restartTimers = new Map<number, TimedEvent>()
  /** Process runs per node (the replicator's logger and store wrapper know theirs). */
  readonly #runs: number[] = []
  /** Per node: the disk's vector clock just before each lossy crash, joined. */
  readonly #lostVc: VectorClock[] = []
  #activity = 0
  #nextOp = 1
  #phase: 'chaos' | 'heal' = 'chaos'
  #nemesisTimer: TimedEvent | null = null
  #partitionEpoch = 0
  /** Per node: the membership rules of its current process run (replication/membership.ts). */
  readonly #membership: Membership[] = []
  /** Per node: its joining recorded on disk (the node's `joined` meta entry), so a restart keeps it. */
  readonly #joinedOnDisk: boolean[] = []
  /** Per node: the peer URLs it is configured with. */
  readonly #peerUrls: string[][] = []
  /** The node that joins mid-run, dormant until then; null when the run has no join. */
  #joiner: number | null = null
  /** The member that went down for good; `#forgotten` once a live member forgot it. */
  #retired: number | null = null
  #forgotten = false
  #forgetting = false
  /** The forgetting node and the dot of its forget write, while `#forgotten`. */
  #forget: { index: number; dot: Dot } | null = null
  readonly stats: SimStats = emptyStats()
  /** What each node heard its peers say they hold: the forget cut is checked against it. */
  readonly #heard = new HeardClaims()

  constructor(
    readonly seed: number,
    readonly overrides: ConfigOverrides = {},
  ) {
    this.cluster = new SimCluster(seed, {
      onQueued: (end) => this.network.queued(end),
      onDeliver: (delivery) => {
        this.stats.deliveries++
        const to = this.cluster.nodes.find((node) => node.nodeId === delivery.to)
        if (to?.alive === true) this.#heard.delivered(delivery.to, to.generation, delivery.from, delivery.message)
        this.trace(
          `d ${delivery.from.slice(-1)}>${delivery.to.slice(-1)} #${delivery.link} ${summarize(delivery.message)}`,
        )
      },
    })
    this.random = this.cluster.random
  }

  // --- plumbing ------------------------------------------------------------------------------

  activity(): void {
    this.#activity++
  }

  trace(line: string): void {
    this.#hash.update(line)
    this.#hash.update('\n')
  }

  #record(event: HistoryEvent): void {
    this.history.push(event)
    this.trace(JSON.stringify(event))
  }

  nemesis(fault: string, nodes: number[], detail?: string, lossy?: boolean): void {
    if (fault === 'drop') this.stats.drops++
    this.#record({
      kind: 'nemesis',
      atMs: this.#now(),
      fault,
      nodes,
      ...(lossy === undefined ? {} : { lossy }),
      ...(detail === undefined ? {} : { detail }),
    })
  }

  #now(): number {
    return this.timeline.nowMs - START_MS
  }

  #activityCount(): number {
    let count = this.#activity
    for (const node of this.cluster.nodes) count += node.backend.disk.batches
    return count
  }

  /** Lets async work (commits, sessions, acks) run until two turns pass with nothing new. */
  async #settle(): Promise<void> {
    let idle = 0
    let last = this.#activityCount()
    while (idle < 2) {
      await macroturn()
      const now = this.#activityCount()
      if (now === last) idle++
      else {
        idle = 0
        last = now
      }
    }
  }

  /** Runs events until `done()` or the next event is past `deadlineMs` (virtual, absolute). */
  async #runUntil(done: () => boolean, deadlineMs: number): Promise<boolean> {
    while (!done()) {
      const next = this.timeline.peekMs()
      if (next === undefined || next > deadlineMs) return false
      const event = this.timeline.next() as TimedEvent
      this.cluster.clockMs = this.timeline.nowMs
      this.stats.events++
      this.trace(`${this.#now()} ${event.label}`)
      event.run()
      await this.#settle()
      this.#checkWaiters()
    }
    return true
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)] as T
  }

  internal(message: string): void {
    this.violations.push({ checker: 'internal', message })
  }

  // --- the run -------------------------------------------------------------------------------

  async run(): Promise<SimResult> {
    this.config = drawConfig(this.seed, this.random, this.overrides)
    const config = this.config
    try {
      await this.#setUp()
      this.network.start()
      for (const node of this.cluster.nodes) this.#scheduleTick(node.index, Math.floor(this.random() * TICK_MS))
      this.#startClients()
      this.#scheduleNemesis()
      const chaosDeadline = this.timeline.nowMs + 600_000
      if (
        !(await this.#runUntil(
          () => this.#clients.every((client) => client.remaining === 0 && !client.busy),
          chaosDeadline,
        ))
      ) {
        const open = [...this.#flights.values()].map((flight) => JSON.stringify(flight.invoke))
        this.violations.push({
          checker: 'liveness',
          message: `the clients did not finish within 600 virtual s; still open: ${open.slice(0, 5).join(', ')}`,
        })
      }
      await this.#heal()
      const quiet = await this.#quiesce()
      if (quiet) await this.#checkMembership()
      if (!quiet)
        this.violations.push({
          checker: 'liveness',
          message: `no quiescence within ${QUIESCE_DEADLINE_MS} virtual ms of the final heal:\n${this.describe()}`,
        })
      this.stats.virtualMs = this.#now()
      const finals = await this.#finals()
      const changes = await this.#changes()
      const nodeIds = Object.fromEntries(this.cluster.nodes.map((node) => [String(node.index), node.nodeId]))
      this.stats.changes = changes.length
      for (const node of this.cluster.nodes) this.stats.duplicates += node.replicator.counters['duplicates'] ?? 0
      const dotLevel = checkAll({ history: this.history, finals, changes, members: config.nodes, nodeIds })
      const violations = [
        ...this.violations,
        ...dotLevel,
        ...valueViolations(this.history, finals, config.nodes, dotLevel),
      ]
      return {
        seed: this.seed,
        config,
        history: this.history,
        finals,
        changes,
        nodeIds,
        trace: this.#hash.digest('hex'),
        stats: this.stats,
        violations,
      }
    } finally {
      await this.#close()
    }
  }

  /** Lets every write still on its way to a disk land, then closes the running processes. */
  async #close(): Promise<void> {
    for (const node of this.cluster.nodes) node.backend.disk.latency = null
    for (let round = 0; round < 20 && this.timeline.size > 0; round++) {
      for (let event = this.timeline.next(); event !== undefined; event = this.timeline.next()) {
        if (event.label.startsWith('disk ')) event.run()
      }
      await this.#settle()
    }
    await this.cluster.close().catch(() => {})
  }

  async #setUp(): Promise<void> {
    const config = this.config
    const count = config.nodes + (config.faults.join ? 1 : 0)
    for (let index = 0; index < count; index++) {
      this.#runs[index] = 0
      const frameChangesMax = 2 + Math.floor(this.random() * 40)
      const bufferChangesMax = this.random() < 0.25 ? 5 + Math.floor(this.random() * 20) : 20_000
      await this.cluster.addNode({
        skewMs: 0,
        sync: index < config.nodes - config.unsynced,
        maxClockOffsetMs: MAX_OFFSET_MS,
        replicator: {
          frameChangesMax,
          bufferChangesMax,
          // Garbage collection over the nodes the run starts with and the node's member set (where
          // a joining node is admitted), and snapshots for brand-new peers early.
          members: () => [
            ...this.cluster.nodes.slice(0, config.nodes).map((node) => node.nodeId),
            ...(this.#membership[index]?.members.keys() ?? []),
          ],
          logRetainEntries: this.random() < 0.5 ? 0 : 10,
          // A run with big puts sends its joiner a snapshot, which carries the big key.
          snapshotAfterChanges: this.random() < 0.5 || this.#bigKeyRun() ? 20 : 10_000,
        },
        perRun: (store) => this.#perRun(index, store),
      })
    }
    this.network = new Network(this, count)
    for (const node of this.cluster.nodes) this.#attachDisk(node)
    this.#setUpMembership()
  }

  // --- membership: joins and forgets ---------------------------------------------------------

  /**
   * The nodes the run starts with are members already, each configured with the others. A
   * joining node is made now but stays down until it joins, configured with one member; it
   * starts brand-new (an empty disk). A member may be taken down for good and then forgotten.
   */
  #setUpMembership(): void {
    const config = this.config
    const initial = this.cluster.nodes.slice(0, config.nodes)
    for (const node of initial) {
      this.#joinedOnDisk[node.index] = true
      this.#peerUrls[node.index] = initial.filter((other) => other !== node).map((other) => other.url)
    }
    if (config.faults.join) {
      const joiner = config.nodes
      this.#joiner = joiner
      this.#joinedOnDisk[joiner] = false
      this.#peerUrls[joiner] = [this.pick(initial).url]
      this.cluster.crash(joiner, 'process', { cutLinks: false })
      const joinDelay = 500 + Math.floor(this.random() * 9500)
      this.timeline.after(joinDelay, `join ${joiner}`, () => this.#restart(joiner, 'join'))
      if (this.#bigKeyRun())
        scheduleBigPuts(
          {
            timeline: this.timeline,
            random: this.random,
            writers: () => initial.filter((node) => node.alive).map((node) => node.index),
            put: (node, value, bytes) => this.#bigPut(node, value, bytes),
          },
          joinDelay,
        )
    }
    if (config.faults.forgetLive)
      this.timeline.after(1000 + Math.floor(this.random() * 9000), 'forget live', () => void this.#forgetLive())
    else if (config.faults.forget)
      this.timeline.after(1000 + Math.floor(this.random() * 9000), 'retire', () => this.#retire())
    for (const node of this.cluster.nodes) {
      this.#membership[node.index] = this.#newMembership(node.index)
      this.#admitOnLink(node)
    }
  }

  /**
   * Admission before replication, as the node's cluster wiring does it: a peer that links and is
   * not in the member set yet is written in (and the set read again) before its link reaches the
   * replicator, so from then on every acknowledgement this node gives covers the admission, and
   * no member collects garbage the newcomer has not seen (docs/architecture.md, "Membership").
   */
  #admitOnLink(node: SimNode): void {
    const replicator = node.replicator
    const generation = node.generation
    const addLink = replicator.addLink.bind(replicator)
    replicator.addLink = (link) => {
      const rules = this.#rules(node.index)
      // A node that may not write yet (its seq guard) admits the peer on a later tick.
      if (!replicator.seqGuard.writable) return addLink(link)
      const intents = rules.admit(link.nodeId, link.url)
      if (intents === null) return addLink(link)
      void this.#commitMembership(node, intents)
        .then(() => this.#readMembership(node))
        .catch(() => false)
        .finally(() => {
          rules.admitted(link.nodeId)
          // A link that outlived its node's process goes nowhere: the network cuts it on a crash.
          if (node.generation === generation) addLink(link)
        })
    }
  }

  /** The membership rules for a new process run of node `index`. */
  #newMembership(index: number): Membership {
    const node = this.cluster.node(index)
    return new Membership({
      self: node.nodeId,
      role: 'member',
      url: node.url,
      peers: this.#peerUrls[index] ?? [],
      linking: true,
      joined: this.#joinedOnDisk[index] === true || vcGet(node.store.vc, node.nodeId) > 0,
    })
  }

  #rules(index: number): Membership {
    return this.#membership[index] as Membership
  }

  /** Members as node `index` counts them (for w and r = quorum or all), as a real node does. */
  #memberCount(index: number): number {
    const node = this.cluster.node(index)
    const kept = (this.#peerUrls[index] ?? []).map((url) => ({
      url,
      nodeId: this.cluster.nodes.find((other) => other.url === url)?.nodeId ?? null,
    }))
    return this.#rules(index).count(node.replicator.knownPeerIds(), kept)
  }

  /** A tick's membership work on a live node: read the sets, then join, claim, admit and forget. */
  async #membershipTick(node: SimNode): Promise<void> {
    const generation = node.generation
    const rules = this.#rules(node.index)
    const read = await this.#readMembership(node).catch(() => false)
    if (!read || node.generation !== generation || !node.alive) return
    if (rules.tick(node.replicator.caughtUp())) {
      this.#joinedOnDisk[node.index] = true
      if (node.index === this.#joiner) this.stats.joins++
      this.trace(`joined ${node.index}`)
    }
    if (!rules.joined && vcGet(node.store.vc, node.nodeId) > 0)
      this.internal(`node ${node.index} originated a change before it was ready`)
    // Membership entries are changes of the node's own: not while its seq guard holds writes back.
    if (!node.replicator.seqGuard.writable) return
    const claim = rules.claim()
    if (claim !== null) void this.#commitMembership(node, claim).finally(() => rules.claimed())
    for (const { nodeId, url } of node.replicator.linkedPeerUrls()) {
      const admit = rules.admit(nodeId, url)
      if (admit !== null) void this.#commitMembership(node, admit).finally(() => rules.admitted(nodeId))
    }
    if (this.#mayForget()) await this.#forgetRetired(node)
  }

  /** Reads node's member and forgotten sets into its rules, and tells its replicator whom to refuse. */
  async #readMembership(node: SimNode): Promise<boolean> {
    const members = await node.store.getState('set', MEMBERS_SET)
    const forgotten = await node.store.getState('set', FORGOTTEN_SET)
    const rules = this.#rules(node.index)
    rules.update(members, forgotten)
    node.replicator.setForgotten(rules.forgotten, rules.forgetDots)
    return true
  }

  /** Commits `intents` on `node`; the change made, or null (nothing to write, or the node went down). */
  async #commitMembership(node: SimNode, intents: Intent[]): Promise<Change | null> {
    const generation = node.generation
    let change: Change | null = null
    // Held back by the seq guard (just started, or recovering its own changes): a later tick writes it.
    if (!node.replicator.seqGuard.writable) return null
    try {
      const result = await node.store.commitLocal(intents)
      if (result.change !== null) {
        this.#made.set(dotString(result.change.dot), result.change)
        node.own++
        change = result.change
      }
    } catch (error) {
      if (node.generation === generation && !isMeshError(error, 'MESHKV_ERR_CLOSED'))
        this.internal(`node ${node.index} could not write the member set: ${String(error)}`)
    }
    this.activity()
    return change
  }

  /** A member (not the joiner's configured one) goes down for good: its disk is lost with it. */
  #retire(): void {
    const joinerPeer = this.#joiner === null ? undefined : this.#peerUrls[this.#joiner]?.[0]
    const live = this.cluster.nodes.filter(
      (node) => node.alive && !this.#restarting.has(node.index) && node.index !== this.#joiner,
    )
    const candidates = live.filter((node) => node.url !== joinerPeer)
    if (candidates.length === 0 || live.length <= 2) return
    const node = this.pick(candidates)
    this.#retired = node.index
    this.#crash(node.index, 'power', true)
  }

  /**
   * A member may be forgotten once every other node is up and holds the same changes of it, with
   * nothing on the way and nothing waiting in a causal buffer but changes of it that no node can
   * ever apply: the one right after what all hold (`cut + 1`) is nowhere, so a later one waits for
   * ever (the forget drops it). No live node then holds or can come to hold a change of it the
   * forget would refuse.
   *
   * This is the careful operator's forget of a member down for good; `#forgetLive` is the careless
   * one (a live, writing member, with force, at any moment).
   */
  #mayForget(): boolean {
    if (this.#retired === null || this.#forgotten || this.#forgetting) return false
    const retired = this.cluster.node(this.#retired).nodeId
    const others = this.cluster.nodes.filter((node) => node.index !== this.#retired)
    if (this.#restarting.size > 0 || this.network.inFlight() > 0) return false
    if (!others.every((node) => node.alive)) return false
    const seqs = new Set(others.map((node) => vcGet(node.store.vc, retired)))
    if (seqs.size !== 1) return false
    const cut = [...seqs][0] as number
    return others.every((node) =>
      this.#bufferedWork(node).every((entry) => entry.origin === retired && entry.seq !== cut + 1),
    )
  }

  /**
   * What waits in `node`'s causal buffer and is still work: the entries past what its store holds
   * of their origin. One the store has overtaken (by a snapshot join, say) is no work: the buffer
   * drops it at its next take. An entry of no node of the cluster counts as work (origin '?').
   */
  #bufferedWork(node: SimNode): { origin: string; seq: number }[] {
    const work: { origin: string; seq: number }[] = []
    let listed = 0
    for (const { nodeId: origin } of this.cluster.nodes) {
      const seqs = node.replicator.bufferedOf(origin)
      listed += seqs.length
      for (const seq of seqs) if (seq > vcGet(node.store.vc, origin)) work.push({ origin, seq })
    }
    for (let i = listed; i < (node.replicator.counters['buffered'] ?? 0); i++) work.push({ origin: '?', seq: 0 })
    return work
  }

  /**
   * After a lossy crash: a forget write that no node holds any more (it was not synced, and the
   * forgetter lost it before any peer took it) forgot nothing; a live member forgets again.
   */
  #forgetLost(): void {
    const forget = this.#forget
    if (forget === null) return
    const origin = this.cluster.node(forget.index).nodeId
    const held = this.cluster.nodes.some(
      (node) =>
        node.index !== this.#retired &&
        Math.max(this.#diskSeq(node, origin), node.alive ? vcGet(node.store.vc, origin) : 0) >= forget.dot.seq,
    )
    if (held) return
    this.#forgotten = false
    this.#forget = null
    this.trace(`forget by node ${forget.index} lost`)
  }

  async #forgetRetired(node: SimNode): Promise<void> {
    const retired = this.cluster.node(this.#retired as number)
    const rules = this.#rules(node.index)
    // The retired member itself may still be up (a live forget whose write was lost): never the forgetter.
    if (!rules.joined || node === retired) return
    this.#forgetting = true
    try {
      const state = await node.store.getState('set', MEMBERS_SET)
      const seq = node.replicator.forgetCut(retired.nodeId)
      const badCut = this.#checkCut(node, retired.nodeId, seq)
      const intents = rules.forget(retired.nodeId, seq, node.replicator.linkedPeers(), state)
      const change = await this.#commitMembership(node, intents)
      // The node went down before the forget was written: nothing was forgotten, a live member
      // tries again.
      if (change === null) return
      if (badCut !== null) this.internal(badCut)
      this.#forgotten = true
      this.#forget = { index: node.index, dot: change.dot }
      this.stats.forgets++
      this.nemesis('forget', [retired.index, node.index], `forgotten by node ${node.index} after seq ${seq}`)
    } catch (error) {
      // A member this node never heard of cannot be forgotten here: another node may.
      if (!isMeshError(error, 'MESHKV_ERR_UNKNOWN_MEMBER'))
        this.internal(`node ${node.index} could not forget node ${retired.index}: ${String(error)}`)
    } finally {
      this.#forgetting = false
    }
  }

  /**
   * Forgetting a live member at a random moment, as an operator does with `--force`: the member
   * is up, linked to some survivors and writing. The forgetter takes the cut from what it knows
   * survivors hold (`forgetCut`); survivors still relay what they took from the member before
   * they learnt of the forget. The member learns it (a 4403, or itself in the forgotten set) and
   * refuses writes from then on; it goes down for good a little later, its disk with it.
   *
   * Which writes of the member survive: every one some survivor took, so every write it
   * acknowledged at w >= 2 (another member held it) stays; a w=1 write only it held may be lost,
   * which is what w=1 means and what forgetting a live member costs. The checkers need no
   * exception for that: the member's going down for good is a lossy crash, and they excuse a
   * write acknowledged by k members only when its origin and k members in all crashed lossily.
   */
  async #forgetLive(): Promise<void> {
    const live = this.cluster.nodes.filter(
      (node) => node.alive && !this.#restarting.has(node.index) && node.index !== this.#joiner,
    )
    const joinerPeer = this.#joiner === null ? undefined : this.#peerUrls[this.#joiner]?.[0]
    const candidates = live.filter((node) => node.url !== joinerPeer)
    if (candidates.length === 0 || live.length <= 2 || this.#retired !== null) return
    const member = this.pick(candidates)
    const forgetter = this.pick(live.filter((node) => node !== member && this.#rules(node.index).joined))
    if (forgetter === undefined || !forgetter.replicator.seqGuard.writable) return
    this.#retired = member.index
    this.#forgetting = true
    try {
      const state = await forgetter.store.getState('set', MEMBERS_SET)
      const seq = forgetter.replicator.forgetCut(member.nodeId)
      const badCut = this.#checkCut(forgetter, member.nodeId, seq)
      const rules = this.#rules(forgetter.index)
      const intents = rules.forget(member.nodeId, seq, forgetter.replicator.linkedPeers(), state)
      const change = await this.#commitMembership(forgetter, intents)
      if (change !== null && badCut !== null) this.internal(badCut)
      // The forgetter went down first: the member stays, and goes down for good without a forget
      // (a member down for good is forgotten the usual way, see #mayForget).
      if (change !== null) {
        this.#forgotten = true
        this.#forget = { index: forgetter.index, dot: change.dot }
        this.stats.forgets++
        this.nemesis('forget', [member.index, forgetter.index], `live, by node ${forgetter.index} after seq ${seq}`)
      }
    } catch (error) {
      // A member the forgetter never heard of (it restarted and has not read the set yet): once
      // down for good, the member is forgotten the usual way.
      if (!isMeshError(error, 'MESHKV_ERR_UNKNOWN_MEMBER'))
        this.internal(`node ${forgetter.index} could not forget node ${member.index}: ${String(error)}`)
    } finally {
      this.#forgetting = false
    }
    const after = 200 + Math.floor(this.random() * 3000)
    this.timeline.after(after, 'retire forgotten', () => this.#retireForgotten(member.index))
  }

  /** A cut below what a survivor told the forgetter it holds (nemesis-forget.ts), or null. */
  #checkCut(forgetter: SimNode, member: NodeId, seq: number): string | null {
    const rules = this.#rules(forgetter.index)
    const heard = { nodeId: forgetter.nodeId, run: forgetter.generation, own: forgetter.store.vc }
    return this.#heard.checkCut(heard, member, seq, (id) => rules.isForgotten(id))
  }

  /** The forgotten member goes down for good (the operator stops it), its disk lost with it. */
  #retireForgotten(index: number): void {
    if (this.cluster.node(index).alive) return this.#crash(index, 'power', true)
    // Down already (a crash, its restart refused now): its disk goes all the same.
    this.nemesis('crash', [index], 'retired', true)
    const node = this.cluster.node(index)
    const held = Object.fromEntries(
      this.cluster.nodes.map((other) => [other.nodeId, this.#diskSeq(node, other.nodeId)]),
    )
    this.#lostVc[index] = vcJoin(this.#lostVc[index] ?? {}, held)
  }

  /**
   * No live node knows node `index`: in no member set, linked to none, no change of it held. It
   * went down for good before any node wrote it in (a node whose seq guard still held writes back
   * when it linked admits it on a later tick), so there is nothing to forget, and no node can
   * (`MESHKV_ERR_UNKNOWN_MEMBER`; seed 91000326 with join and forgetLive).
   */
  #unknownToAll(index: number): boolean {
    const id = this.cluster.node(index).nodeId
    return this.cluster.nodes.every(
      (node) =>
        node.index === index ||
        !node.alive ||
        (!this.#rules(node.index).members.has(id) &&
          !this.#rules(node.index).isForgotten(id) &&
          !node.replicator.linkedPeers().includes(id) &&
          vcGet(node.store.vc, id) === 0),
    )
  }

  /** The node learnt the cluster forgot it, as the node's cluster wiring learns it. */
  #knowsForgotten(node: SimNode): boolean {
    return node.replicator.forgottenBy !== null || this.#rules(node.index).selfForgotten
  }

  /** After quiescence: every live node has joined, and its member set names every live node. */
  async #checkMembership(): Promise<void> {
    const live = this.cluster.nodes.filter((node) => node.alive)
    for (const node of live) {
      await this.#readMembership(node)
      const rules = this.#rules(node.index)
      if (!rules.joined) this.internal(`node ${node.index} never became ready`)
      const missing = live.filter((other) => !rules.members.has(other.nodeId)).map((other) => other.index)
      if (missing.length > 0) this.internal(`node ${node.index}'s member set misses live nodes ${missing.join(', ')}`)
      if (this.#forgotten && this.#retired !== null && rules.members.has(this.cluster.node(this.#retired).nodeId))
        this.internal(`node ${node.index}'s member set still holds the forgotten node ${this.#retired}`)
      // Quiet now: no change of the forgotten member can arrive any more, so on a node linked to
      // every live one (fresh acks) it no longer holds garbage collection back (a member never
      // heard from counts as the empty clock: nothing would be stable).
      const cut = node.replicator.stableCut()
      const linked = node.replicator.linkedPeers()
      const fresh = live.every((other) => other === node || linked.includes(other.nodeId))
      if (this.#forgotten && fresh && Object.keys(cut).length === 0)
        this.internal(`node ${node.index}: the forgotten member still holds garbage collection back after quiescence`)
    }
  }

  /** Disk writes take virtual time: a synced one longer. */
  #attachDisk(node: SimNode): void {
    node.backend.disk.latency = (sync) =>
      new Promise<void>((resolve) => {
        const ms = sync
          ? 1 + Math.floor(this.random() * (this.random() < 0.1 ? 40 : 12))
          : Math.floor(this.random() * 2)
        this.timeline.after(ms, `disk ${node.index}`, resolve)
      })
  }

  /** A process run of node `index`: a logger and a watch on what the replicator hands the store. */
  #perRun(index: number, store: Store): { replicaStore: ReplicaStore; logger: Logger } {
    const run = (this.#runs[index] ?? 0) + 1
    this.#runs[index] = run
    const current = (): boolean => this.#runs[index] === run && (this.cluster.nodes[index]?.alive ?? true)
    let handed: VectorClock = {}
    const replicaStore: ReplicaStore = {
      get nodeId() {
        return store.nodeId
      },
      get vc() {
        return store.vc
      },
      get lsn() {
        return store.lsn
      },
      get durableVc() {
        return store.durableVc
      },
      makeDurable: () => store.makeDurable(),
      guardOwnWrites: (check) => store.guardOwnWrites(check),
      readLog: (...args: Parameters<Store['readLog']>) => store.readLog(...args),
      firstLsn: () => store.firstLsn(),
      lsnOfDot: (dot) => store.lsnOfDot(dot),
      onCommit: (listener) => store.onCommit(listener),
      snapshot: () => store.snapshot(),
      stageSnapshot: (entries) => {
        this.stats.bigStatesSnapshotted += entries.filter(([, , bytes]) => bytes.length > FRAME_BYTES_MAX).length
        return store.stageSnapshot(entries)
      },
      clearStage: () => store.clearStage(),
      applyStagedSnapshot: (vc) => store.applyStagedSnapshot(vc),
      purge: (logCovered, stableCut) => store.purge(logCovered, stableCut),
      applyRemote: (change) => {
        handed = vcJoin(handed, store.vc)
        if (change.dot.seq > vcGet(handed, change.dot.node) + 1 || !vcCovers(handed, change.deps)) {
          if (current())
            this.internal(
              `node ${index} was handed ${dotString(change.dot)} (deps ${JSON.stringify(change.deps)}) before the changes it follows (handed so far: ${JSON.stringify(handed)})`,
            )
        }
        handed = vcJoin(handed, { [change.dot.node]: change.dot.seq })
        return store.applyRemote(change)
      },
    }
    const logger: Logger = {
      info: () => {},
      warn: (fields, message) => {
        if (message !== 'change refused') return
        if (fields['code'] === 'MESHKV_ERR_CLOCK_SKEW') this.stats.refusedSkew++
      },
      error: (fields, message) => {
        if (current()) this.internal(`node ${index} logged an error: ${message} ${JSON.stringify(fields)}`)
      },
    }
    return { replicaStore, logger }
  }

  #scheduleTick(index: number, delay: number): void {
    this.timeline.after(delay, `tick ${index}`, () => {
      const node = this.cluster.node(index)
      if (node.alive) {
        node.replicator.tick()
        void this.#membershipTick(node)
      }
      this.#scheduleTick(index, TICK_MS)
    })
  }

  // --- clients -------------------------------------------------------------------------------

  #startClients(): void {
    const { clients, ops, nodes } = this.config
    for (let id = 0; id < clients; id++) {
      const remaining = Math.floor(ops / clients) + (id < ops % clients ? 1 : 0)
      const client: Client = {
        id,
        node: id % nodes,
        token: {},
        lastRead: new Map(),
        remaining,
        busy: false,
        written: 0,
      }
      this.#clients.push(client)
      this.#scheduleClient(client, Math.floor(this.random() * 500))
    }
  }

  #scheduleClient(client: Client, delay: number): void {
    if (client.remaining === 0 || this.#phase !== 'chaos') return
    client.busy = true
    this.timeline.after(delay, `client ${client.id}`, () => this.#nextOperation(client))
  }

  #failOver(client: Client): void {
    const n = this.cluster.nodes.length
    client.node = (client.node + 1 + Math.floor(this.random() * (n - 1))) % n
  }

  #writeConcern(): WriteConcernSpec {
    const roll = this.random()
    return roll < 0.45 ? 1 : roll < 0.75 ? 'quorum' : 'all'
  }

  #readConcern(): ReadConcernSpec {
    const roll = this.random()
    return roll < 0.7 ? 1 : roll < 0.9 ? 'quorum' : 'all'
  }

  #nextOperation(client: Client): void {
    client.remaining--
    if (this.random() < 0.1) this.#failOver(client)
    const token = Object.keys(client.token).length === 0 ? null : encodeCausalToken(client.token)
    const roll = this.random()
    if (roll < 0.22) {
      const key = this.pick(KV_KEYS)
      const value = `v${client.id}.${client.written++}`
      const seen = client.lastRead.get(key)
      const context = seen !== undefined && this.random() < 0.4 ? seen : undefined
      const op: WriteOperation = {
        type: 'put',
        key,
        value,
        w: this.#writeConcern(),
        ...(context === undefined ? {} : { context: context.map(dotString) }),
      }
      this.#write(client, op, [
        {
          type: 'kv.put',
          key,
          value: enc(value),
          contentType: 'text/plain',
          ...(context === undefined ? {} : { context }),
        },
      ])
    } else if (roll < 0.28) {
      const key = this.pick(KV_KEYS)
      const seen = client.lastRead.get(key)
      const context = seen !== undefined && this.random() < 0.4 ? seen : undefined
      const op: WriteOperation = {
        type: 'del',
        key,
        w: this.#writeConcern(),
        ...(context === undefined ? {} : { context: context.map(dotString) }),
      }
      this.#write(client, op, [{ type: 'kv.del', key, ...(context === undefined ? {} : { context }) }])
    } else if (roll < 0.43) {
      const name = this.pick(COUNTER_NAMES)
      const delta = this.random() < 0.25 ? -1 - Math.floor(this.random() * 3) : 1 + Math.floor(this.random() * 5)
      this.#write(client, { type: 'incr', name, delta, w: this.#writeConcern() }, [
        { type: 'counter.add', name, delta },
      ])
    } else if (roll < 0.53) {
      const name = this.pick(SET_NAMES)
      const member = this.pick(MEMBERS)
      this.#write(client, { type: 'sadd', name, member, w: this.#writeConcern() }, [{ type: 'set.add', name, member }])
    } else if (roll < 0.59) {
      const name = this.pick(SET_NAMES)
      const member = this.pick(MEMBERS)
      this.#write(client, { type: 'srem', name, member, w: this.#writeConcern() }, [
        { type: 'set.remove', name, member },
      ])
    } else if (roll < 0.8) {
      this.#read(client, { type: 'get', key: this.pick(KV_KEYS), token, r: this.#readConcern() })
    } else if (roll < 0.9) {
      this.#read(client, { type: 'cget', name: this.pick(COUNTER_NAMES), token, r: this.#readConcern() })
    } else {
      this.#read(client, { type: 'smembers', name: this.pick(SET_NAMES), token, r: this.#readConcern() })
    }
  }

  #invoke(client: Client, op: Operation, write: boolean): Flight {
    const node = this.cluster.node(client.node)
    const invoke: InvokeEvent = {
      kind: 'invoke',
      id: this.#nextOp++,
      client: client.id,
      node: client.node,
      atMs: this.#now(),
      op,
    }
    this.#record(invoke)
    this.stats.ops++
    const flight: Flight = {
      invoke,
      client,
      node: client.node,
      generation: node.generation,
      write,
      timer: null,
      cancel: null,
      done: false,
    }
    this.#flights.set(invoke.id, flight)
    return flight
  }

  #finish(
    flight: Flight,
    kind: CompletionEvent['kind'],
    fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {},
  ): void {
    if (flight.done) return
    flight.done = true
    this.timeline.cancel(flight.timer)
    flight.cancel?.()
    this.#flights.delete(flight.invoke.id)
    const dot = fields.dot ?? flight.dot
    const required = fields.required ?? flight.required
    this.#record({
      kind,
      id: flight.invoke.id,
      atMs: this.#now(),
      ...fields,
      ...(dot === undefined ? {} : { dot }),
      ...(required === undefined ? {} : { required }),
    })
    if (kind === 'ok') this.stats.acknowledged++
    else if (kind === 'unknown') this.stats.unknown++
    else this.stats.failed++
    this.activity()
    const client = flight.client
    client.busy = false
    const moveOn = [
      'MESHKV_ERR_UNAVAILABLE',
      'MESHKV_ERR_CONNECTION_RESET',
      'MESHKV_ERR_NOT_READY',
      'MESHKV_ERR_RECOVERING',
      'MESHKV_ERR_NODE_ID_CONFLICT',
    ]
    if (kind !== 'ok' && fields.code !== undefined && moveOn.includes(fields.code)) this.#failOver(client)
    this.#scheduleClient(client, 20 + Math.floor(this.random() * 300))
  }

  #write(client: Client, op: WriteOperation, intents: Intent[]): void {
    const flight = this.#invoke(client, op, true)
    const node = this.cluster.node(flight.node)
    if (!node.alive) {
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
      return
    }
    // A node that learnt the cluster forgot it takes no writes: the survivors would refuse them.
    if (this.#knowsForgotten(node)) {
      this.stats.writesRefusedForgotten++
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_FORGOTTEN' })
      return
    }
    // A node that has not joined its cluster yet takes no writes (docs/architecture.md, "Membership").
    if (!this.#rules(flight.node).joined) {
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_NOT_READY' })
      return
    }
    // Nor one whose seq guard holds its own writes back (seq-guard.ts): the store would refuse them.
    const refusal = node.replicator.seqGuard.refusal()
    if (refusal !== null) {
      this.#finish(flight, 'fail', { code: refusal.code })
      return
    }
    const { replicator } = node
    node.store.commitLocal(intents).then(
      (result) => {
        if (result.change !== null) {
          this.#made.set(dotString(result.change.dot), result.change)
          node.own++
        }
        if (flight.done) return
        this.#committed(flight, op, result, replicator)
      },
      (error: unknown) => {
        if (flight.done) return
        const code = isMeshError(error) ? error.code : 'UNEXPECTED'
        // The seq guard refuses before a seq is made: nothing was written, the write failed.
        if (code === 'MESHKV_ERR_RECOVERING' || code === 'MESHKV_ERR_NODE_ID_CONFLICT') {
          this.#finish(flight, 'fail', { code })
          return
        }
        // Past the key's limit (a big put): refused, nothing written.
        if (code === 'MESHKV_ERR_STATE_TOO_LARGE') {
          this.stats.bigPutsRefused++
          return this.#finish(flight, 'fail', { code })
        }
        if (code !== 'MESHKV_ERR_CLOSED')
          this.internal(`a write failed unexpectedly: ${JSON.stringify(op)} on node ${flight.node}: ${String(error)}`)
        this.#finish(flight, 'unknown', { code })
      },
    )
  }

  #bigKeyRun(): boolean {
    return this.config.faults.bigKey && this.config.faults.join
  }

  /** A big put (nemesis-bigkey.ts), by a client of its own: each session keeps one op at a time. */
  #bigPut(node: number, value: string, bytes: Uint8Array): void {
    const id = this.config.clients + this.stats.bigPuts++
    const client: Client = { id, node, token: {}, lastRead: new Map(), remaining: 0, busy: false, written: 0 }
    const op: WriteOperation = { type: 'put', key: BIG_KEY, value, w: this.#writeConcern(), context: [] }
    const contentType = 'application/octet-stream'
    this.#write(client, op, [{ type: 'kv.put', key: BIG_KEY, value: bytes, contentType, context: [] }])
  }

  #committed(flight: Flight, op: WriteOperation, result: CommitResult, replicator: SimNode['replicator']): void {
    const client = flight.client
    const token = encodeCausalToken(result.vc)
    const fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = { token }
    const change = result.change
    if (op.type === 'incr') fields.result = counterValue(result.states.get(stateId('counter', op.name)) as never)
    if (op.type === 'sadd' || op.type === 'srem') {
      const done = change?.ops.find(
        (o) => (o.type === 'set.add' || o.type === 'set.remove') && o.member === op.member,
      ) as Extract<Op, { type: 'set.add' }> | undefined
      fields.observed = done !== undefined && done.context.length > 0
    }
    if (change === null) {
      client.token = vcJoin(client.token, result.vc)
      this.#finish(flight, 'ok', fields)
      return
    }
    flight.dot = dotString(change.dot)
    const required = requiredFor(op.w, this.#memberCount(flight.node))
    flight.required = required
    if (required <= 1) {
      client.token = vcJoin(client.token, result.vc)
      this.#finish(flight, 'ok', fields)
      return
    }
    const wait = replicator.waitForHolders(change.dot, required)
    flight.cancel = wait.cancel
    flight.timer = this.timeline.after(WRITE_TIMEOUT_MS, `w-timeout ${flight.invoke.id}`, () => {
      this.#finish(flight, 'unknown', { code: 'MESHKV_ERR_WRITE_CONCERN_TIMEOUT' })
    })
    void wait.promise.then(() => {
      if (flight.done) return
      client.token = vcJoin(client.token, result.vc)
      this.#finish(flight, 'ok', { ...fields, durableHolders: this.#durableHolders(change.dot) })
    })
  }

  /**
   * Members that durably hold `dot` or did until a lossy crash (which the checkers account for):
   * in what their disk keeps through a power loss (acks say the write is fsynced).
   */
  #durableHolders(dot: Dot): number {
    let count = 0
    for (const node of this.cluster.nodes) {
      const held = Math.max(this.#diskSeq(node, dot.node, 'durable'), vcGet(this.#lostVc[node.index] ?? {}, dot.node))
      if (held >= dot.seq) count++
    }
    return count
  }

  #diskSeq(node: SimNode, origin: string, view: 'tables' | 'durable' = 'tables'): number {
    const bytes = node.backend.disk[view].get('vc')?.get(origin)
    return bytes === undefined ? 0 : Number(dec(bytes))
  }

  #read(client: Client, op: ReadOperation): void {
    const flight = this.#invoke(client, op, false)
    const node = this.cluster.node(flight.node)
    if (!node.alive) {
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
      return
    }
    const waiter: ReadWaiter = { flight, token: client.token, op }
    if (vcCovers(node.store.vc, waiter.token)) {
      void this.#answer(waiter)
      return
    }
    flight.timer = this.timeline.after(READ_TIMEOUT_MS, `r-timeout ${flight.invoke.id}`, () =>
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_READ_TIMEOUT' }),
    )
    this.#waiters.push(waiter)
  }

  #checkWaiters(): void {
    for (let i = 0; i < this.#waiters.length; i++) {
      const waiter = this.#waiters[i] as ReadWaiter
      const { flight } = waiter
      const node = this.cluster.node(flight.node)
      if (flight.done) {
        this.#waiters.splice(i--, 1)
        continue
      }
      if (node.alive && node.generation === flight.generation && vcCovers(node.store.vc, waiter.token)) {
        this.#waiters.splice(i--, 1)
        this.timeline.cancel(flight.timer)
        flight.timer = null
        void this.#answer(waiter)
      }
    }
  }

  /** Reads from the node (and, for r above 1, from reachable members), joining their states. */
  async #answer(waiter: ReadWaiter): Promise<void> {
    const { flight, op } = waiter
    const coordinator = flight.node
    const r = op.r ?? 1
    const required = requiredFor(r, this.#memberCount(coordinator))
    const others = this.cluster.nodes
      .filter((node) => node.index !== coordinator && node.alive && this.network.isUp(coordinator, node.index))
      .map((node) => node.index)
      .sort(() => this.random() - 0.5)
    const participants = [coordinator, ...others].slice(0, required)
    if (participants.length < required) {
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
      return
    }
    const space: Space = op.type === 'get' ? 'kv' : op.type === 'cget' ? 'counter' : 'set'
    const key = op.type === 'get' ? op.key : op.name
    let joined: { state: AnyState; vc: VectorClock } | null = null
    try {
      for (const index of participants) {
        const snapshot = await this.cluster.node(index).store.snapshot()
        try {
          const state = await snapshot.getState(space, key)
          joined =
            joined === null
              ? { state, vc: snapshot.vc }
              : {
                  state: joinState<Space>(space, joined.state, joined.vc, state, snapshot.vc),
                  vc: vcJoin(joined.vc, snapshot.vc),
                }
        } finally {
          await snapshot.close()
        }
      }
    } catch (error) {
      if (!isMeshError(error, 'MESHKV_ERR_CLOSED')) this.internal(`a read failed unexpectedly: ${String(error)}`)
      this.#finish(flight, 'fail', { code: 'MESHKV_ERR_CONNECTION_RESET' })
      return
    }
    if (flight.done || joined === null) return
    const client = flight.client
    client.token = vcJoin(client.token, joined.vc)
    const fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {
      vc: { ...joined.vc },
      token: encodeCausalToken(joined.vc),
    }
    if (op.type === 'get') {
      const state = joined.state as RegisterState
      const winner = lwwSibling(state)
      fields.result = winner === undefined || winner.value === null ? null : dec(winner.value)
      fields.siblingDots = state.siblings.map((sibling) => dotString(sibling.dot))
      fields.siblings = state.siblings.flatMap((sibling) => (sibling.value === null ? [] : [dec(sibling.value)]))
      client.lastRead.set(
        op.key,
        state.siblings.map((sibling) => sibling.dot),
      )
    } else if (op.type === 'cget') {
      fields.result = counterValue(joined.state as never)
    } else {
      fields.result = setMembers(joined.state as SetState).sort()
    }
    this.#finish(flight, 'ok', fields)
  }

  // --- nemesis -------------------------------------------------------------------------------

  #scheduleNemesis(): void {
    const faults = this.config.faults
    const scheduled: readonly (keyof Faults)[] = ['power', 'join', 'forget', 'forgetLive', 'bigKey']
    if (!FAULT_NAMES.some((name) => !scheduled.includes(name) && faults[name])) return
    if (faults.drop) this.network.dropRate = 0.003
    const delay = 200 + Math.floor(-Math.log(1 - this.random()) * 1500)
    this.#nemesisTimer = this.timeline.after(delay, 'nemesis', () => {
      this.#fault()
      if (this.#phase === 'chaos') this.#scheduleNemesis()
    })
  }

  #fault(): void {
    const faults = this.config.faults
    const kinds = (['drop', 'partition', 'crash', 'skew', 'stall'] as const).filter((name) => faults[name])
    const kind = this.pick(kinds)
    switch (kind) {
      case 'partition':
        return this.#partition()
      case 'drop': {
        const pairs = this.network.livePairs()
        if (pairs.length === 0) return
        const pair = this.pick(pairs)
        this.network.breakLink(pair, this.random() < 0.5 ? pair.dialer : pair.acceptor, 'dropped frame')
        return
      }
      case 'crash': {
        const alive = this.cluster.nodes.filter((node) => node.alive && !this.#restarting.has(node.index))
        if (alive.length <= 1) return
        const node = this.pick(alive)
        const crash = faults.power && this.random() < 0.5 ? 'power' : 'process'
        this.#crash(node.index, crash)
        this.#restartTimers.set(
          node.index,
          this.timeline.after(300 + Math.floor(this.random() * 5000), `restart ${node.index}`, () =>
            this.#restart(node.index),
          ),
        )
        return
      }
      case 'skew': {
        const node = this.pick(this.cluster.nodes)
        node.skewMs = this.random() < 0.3 ? 0 : Math.round((this.random() * 2 - 1) * 2 * MAX_OFFSET_MS)
        this.nemesis('skew', [node.index], `${node.skewMs} ms`)
        return
      }
      case 'stall': {
        const pairs = this.network.livePairs()
        if (pairs.length === 0) return
        const pair = this.pick(pairs)
        const ms = 200 + Math.floor(this.random() * 1800)
        this.network.stall(pair, this.timeline.nowMs + ms)
        this.nemesis(
          'stall',
          pair.ends.map((end) => Number.parseInt(end.self, 16) - 1),
          `link ${pair.id} for ${ms} ms`,
        )
        return
      }
    }
  }

  #partition(): void {
    const n = this.cluster.nodes.length
    const nodes = this.cluster.nodes.map((node) => node.index)
    const shape = this.pick(['isolate', 'split', 'bridge', 'random'] as const)
    let up: (a: number, b: number) => boolean
    if (shape === 'isolate') {
      const x = this.pick(nodes)
      up = (a, b) => a !== x && b !== x
    } else if (shape === 'split') {
      const side = nodes.map(() => this.random() < 0.5)
      up = (a, b) => side[a] === side[b]
    } else if (shape === 'bridge') {
      // One node links two groups that cannot reach each other: A-B and B-C up, A-C down.
      const bridge = this.pick(nodes)
      const side = nodes.map(() => this.random() < 0.5)
      up = (a, b) => a === bridge || b === bridge || side[a] === side[b]
    } else {
      const down = new Set<string>()
      for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (this.random() < 0.4) down.add(`${a}-${b}`)
      up = (a, b) => !down.has(`${Math.min(a, b)}-${Math.max(a, b)}`)
    }
    const cut: string[] = []
    for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (!up(a, b)) cut.push(`${a}-${b}`)
    this.network.setPaths(up)
    this.stats.partitions++
    this.nemesis('partition', nodes, `${shape}: down ${cut.join(' ') || '(none)'}`)
    const epoch = ++this.#partitionEpoch
    this.timeline.after(1000 + Math.floor(this.random() * 7000), 'heal', () => {
      if (epoch !== this.#partitionEpoch || this.#phase !== 'chaos') return
      this.network.setPaths(() => true)
      this.nemesis('heal', nodes)
    })
  }

  /** A crash; `retired`: the node is gone for good and its disk with it (so lossy, whatever it synced). */
  #crash(index: number, kind: 'process' | 'power', retired = false): void {
    const node = this.cluster.node(index)
    const lossy = retired || (kind === 'power' && node.options.sync !== true)
    this.stats.crashes++
    if (lossy) this.stats.lossyCrashes++
    this.nemesis('crash', [index], retired ? 'retired' : kind, lossy)
    if (lossy) {
      const held = Object.fromEntries(
        this.cluster.nodes.map((other) => [other.nodeId, this.#diskSeq(node, other.nodeId)]),
      )
      this.#lostVc[index] = vcJoin(this.#lostVc[index] ?? {}, held)
    }
    this.cluster.crash(index, kind, { cutLinks: false })
    this.network.crashed(index, kind)
    if (lossy && !retired) this.#forgetLost()
    for (const flight of [...this.#flights.values()]) {
      if (flight.node === index)
        this.#finish(flight, flight.write ? 'unknown' : 'fail', { code: 'MESHKV_ERR_CONNECTION_RESET' })
    }
  }

  #restart(index: number, label: 'restart' | 'join' = 'restart'): void {
    this.#restartTimers.delete(index)
    const node = this.cluster.node(index)
    if (node.alive || this.#restarting.has(index) || index === this.#retired) return
    this.#restarting.add(index)
    this.activity()
    void this.cluster.restart(index).then(
      () => {
        this.#restarting.delete(index)
        this.#attachDisk(node)
        this.#membership[index] = this.#newMembership(index)
        this.#admitOnLink(node)
        this.nemesis(label, [index])
        this.network.restarted(index)
        this.activity()
      },
      (error: unknown) => {
        this.#restarting.delete(index)
        this.internal(`node ${index} could not restart: ${String(error)}`)
      },
    )
  }

  // --- heal and quiescence -------------------------------------------------------------------

  async #heal(): Promise<void> {
    this.#phase = 'heal'
    this.timeline.cancel(this.#nemesisTimer)
    this.network.dropRate = 0
    this.network.clearStalls()
    this.network.setPaths(() => true)
    this.nemesis(
      'heal',
      this.cluster.nodes.map((node) => node.index),
      'final',
    )
    for (const [index, timer] of this.#restartTimers) {
      this.timeline.cancel(timer)
      this.#restart(index)
    }
    this.#restartTimers.clear()
  }

  #converged(): boolean {
    const nodes = this.cluster.nodes.filter((node) => node.index !== this.#retired)
    if (this.#restarting.size > 0 || this.#flights.size > 0 || !nodes.every((node) => node.alive)) return false
    // A member down for good is forgotten before the run counts as quiet, unless no node knows it.
    if (this.#retired !== null && !this.#forgotten && !this.#unknownToAll(this.#retired)) return false
    // A forgotten member still up (forgotten alive) goes down for good before the run counts as quiet.
    if (this.#retired !== null && this.cluster.node(this.#retired).alive) return false
    const first = (nodes[0] as SimNode).store.vc
    return (
      nodes.every((node) => vcEquals(node.store.vc, first) && this.#bufferedWork(node).length === 0) &&
      this.network.inFlight() === 0
    )
  }

  async #quiesce(): Promise<boolean> {
    const deadline = this.timeline.nowMs + QUIESCE_DEADLINE_MS
    // Let the last acks and ticks pass, then make sure nothing moved (a write still landing when the
    // clocks first agreed, a membership write say, moves them); if something did, the settling
    // starts again from the next convergence, so every node has two ticks after the last change
    // it took (a joiner becomes ready on the first tick after it caught up).
    const clocks = (): string => JSON.stringify(this.cluster.nodes.map((node) => (node.alive ? node.store.vc : null)))
    for (;;) {
      if (!(await this.#runUntil(() => this.#converged(), deadline))) return false
      const before = clocks()
      const settleUntil = Math.min(this.timeline.nowMs + 2 * TICK_MS, deadline)
      await this.#runUntil(() => false, settleUntil)
      if (this.#converged() && clocks() === before) return true
    }
  }

  describe(): string {
    return this.cluster.describe()
  }

  // --- final states and changes --------------------------------------------------------------

  async #finals(): Promise<FinalNodeState[]> {
    const out: FinalNodeState[] = []
    for (const node of this.cluster.nodes) {
      if (!node.alive) continue
      const snapshot = await node.store.snapshot()
      try {
        const { digest } = await digestOf(snapshot)
        const kv: FinalNodeState['kv'] = {}
        for await (const [key, state] of snapshot.iterateStates('kv', {})) {
          const siblings: FinalSibling[] = state.siblings.map((sibling) => ({
            dot: dotString(sibling.dot),
            hlc: [sibling.hlc.wallMs, sibling.hlc.logical],
            value: sibling.value === null ? null : dec(sibling.value),
          }))
          const winner = lwwSibling(state)
          kv[key] = { siblings, read: winner === undefined || winner.value === null ? null : dec(winner.value) }
        }
        const counters: FinalNodeState['counters'] = {}
        for await (const [name, state] of snapshot.iterateStates('counter', {})) counters[name] = counterValue(state)
        const sets: FinalNodeState['sets'] = {}
        for await (const [name, state] of snapshot.iterateStates('set', {})) {
          sets[name] = Object.fromEntries(state.entries.map((entry) => [entry.member, entry.dots.map(dotString)]))
        }
        out.push({ node: node.index, digest, vc: { ...snapshot.vc }, kv, counters, sets })
      } finally {
        await snapshot.close()
      }
    }
    return out
  }

  async #changes(): Promise<ChangeRecord[]> {
    const byDot = new Map<string, ChangeRecord>()
    const extra: ChangeRecord[] = []
    const add = (change: Change): void => {
      const record = changeRecord(change)
      const known = byDot.get(record.dot)
      if (known === undefined) byDot.set(record.dot, record)
      else if (JSON.stringify(known) !== JSON.stringify(record)) extra.push(record)
    }
    for (const change of this.#made.values()) add(change)
    for (const node of this.cluster.nodes) {
      if (!node.alive) continue
      let after = 0
      for (;;) {
        const entries = await node.store.readLog(after, 1000)
        if (entries.length === 0) break
        for (const entry of entries) add(entry.change)
        after = (entries[entries.length - 1] as { lsn: number }).lsn
      }
    }
    return [...byDot.values(), ...extra]
  }
}

export function changeRecord(change: Change): ChangeRecord {
  return {
    dot: dotString(change.dot),
    deps: { ...change.deps },
    hlc: [change.hlc.wallMs, change.hlc.logical],
    ops: change.ops.map((op): OpRecord => {
      switch (op.type) {
        case 'kv.put':
          return { type: 'put', key: op.key, value: dec(op.value), context: op.context.map(dotString) }
        case 'kv.del':
          return { type: 'del', key: op.key, context: op.context.map(dotString) }
        case 'counter.add':
          return { type: 'incr', name: op.name, delta: op.delta }
        case 'set.add':
          return { type: 'sadd', name: op.name, member: op.member, context: op.context.map(dotString) }
        case 'set.remove':
          return { type: 'srem', name: op.name, member: op.member, context: op.context.map(dotString) }
        case 'doc.update':
          throw new Error('the simulation writes no documents')
      }
    }),
  }
}

/** Runs one seed. */
export async function simulate(seed: number, overrides: ConfigOverrides = {}): Promise<SimResult> {
  return new Simulation(seed >>> 0, overrides).run()
}

/**
 * The value checkers of process chaos (test/checkers/values.ts) over the same run, so both levels
 * run both sets. Every key is contended here (no unique prefix). What `checkAll` reported already
 * (the history-shape check runs in both) is not reported twice; the rest are marked as value checks.
 */
function valueViolations(
  history: readonly HistoryEvent[],
  finals: readonly FinalNodeState[],
  members: number,
  reported: readonly Violation[],
): Violation[] {
  const seen = new Set(reported.map((violation) => `${violation.checker} ${violation.message}`))
  const { violations } = checkValues({
    history,
    finals: finals.map((final, position) => valuesOf(final, { position })),
    members,
  })
  return violations
    .filter((violation) => !seen.has(`${violation.checker} ${violation.message}`))
    .map((violation) => ({ ...violation, message: `(value check) ${violation.message}` }))
}

export function replayLine(seed: number, overrides: ConfigOverrides = {}): string {
  const extra = Object.keys(overrides).length === 0 ? '' : ` --config '${JSON.stringify(overrides)}'`
  return `npm run sim -- --seed ${seed}${extra}`
}

export { simNodeId }
