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
 *      restarts, clock skew up to twice the allowed offset; and the operator faults (operator.ts): a
 *      node started again on an older copy of its disk (restore), a second process of one node id
 *      (clone). Every node runs the seq guard; a write it refuses is a failure, never an ack.
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
 * The parts of a run, each in its own file: config.ts (the shape, drawn from the seed; stats; the
 * result), workload.ts (the clients), nemesis.ts (the faults and the final heal), members.ts (joins
 * and forgets), quiescence.ts (the end: quiescence, final states, changes). This file is the run
 * itself: the timeline loop, the nodes' setup, the trace, and the order of the phases.
 *
 * Internal invariants the run also checks: the replicator never hands the store a change before
 * every change it depends on (the causal buffer delivers in causal order), and no replication
 * error is logged by a live process.
 */
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import type { VectorClock } from '../../src/clock/index.js'
import { vcCovers, vcGet, vcJoin } from '../../src/clock/index.js'
import { FRAME_BYTES_MAX } from '../../src/codec/peer.js'
import type { Change } from '../../src/crdt/index.js'
import type { Logger } from '../../src/replication/index.js'
import type { ReplicaStore, Store } from '../../src/storage/index.js'
import type { Violation } from '../checkers/checks.js'
import { checkAll } from '../checkers/checks.js'
import type { HistoryEvent } from '../checkers/history.js'
import { dotString } from '../checkers/history.js'
import type { SimNode } from '../helpers/replication-sim.js'
import { START_MS, SimCluster, TICK_MS, simNodeId } from '../helpers/replication-sim.js'
import type { ConfigOverrides, SimConfig, SimResult } from './config.js'
import { EVENTS_MAX, MAX_OFFSET_MS, QUIESCE_DEADLINE_MS, SEQ_GUARD_GRACE_MS, drawConfig, emptyStats } from './config.js'
import { Members } from './members.js'
import { HeardClaims } from './nemesis-forget.js'
import { Network, summarize } from './network.js'
import { Nemesis } from './nemesis.js'
import { OperatorFaults } from './operator.js'
import { allChanges, finalStates, quiesce, valueViolations } from './quiescence.js'
import type { TimedEvent } from './timeline.js'
import { Timeline } from './timeline.js'
import { Workload, dec } from './workload.js'

export * from './config.js'
export { changeRecord } from './quiescence.js'

function macroturn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
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
  /** Every change a node made (as its commit answered), by dot. */
  readonly made = new Map<string, Change>()
  /** Process runs per node (the replicator's logger and store wrapper know theirs). */
  readonly #runs: number[] = []
  /** Per node: the disk's vector clock just before each lossy crash, joined. */
  readonly lostVc: VectorClock[] = []
  #activity = 0
  phase: 'chaos' | 'heal' = 'chaos'
  readonly stats = emptyStats()
  readonly workload = new Workload(this)
  readonly chaos = new Nemesis(this)
  readonly members = new Members(this)
  readonly operator = new OperatorFaults(this)
  /** What each node heard its peers say they hold: the forget cut is checked against it (members.ts). */
  readonly heard = new HeardClaims()

  constructor(
    readonly seed: number,
    readonly overrides: ConfigOverrides = {},
  ) {
    this.cluster = new SimCluster(seed, {
      onQueued: (end) => this.network.queued(end),
      onDeliver: (delivery) => {
        this.stats.deliveries++
        const to = this.cluster.nodes.find((node) => node.nodeId === delivery.to)
        if (to?.alive === true) this.heard.delivered(delivery.to, to.generation, delivery.from, delivery.message)
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

  record(event: HistoryEvent): void {
    this.history.push(event)
    this.trace(JSON.stringify(event))
  }

  nemesis(fault: string, nodes: number[], detail?: string, lossy?: boolean): void {
    if (fault === 'drop') this.stats.drops++
    this.record({
      kind: 'nemesis',
      atMs: this.now(),
      fault,
      nodes,
      ...(lossy === undefined ? {} : { lossy }),
      ...(detail === undefined ? {} : { detail }),
    })
  }

  now(): number {
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
  async runUntil(done: () => boolean, deadlineMs: number): Promise<boolean> {
    while (!done()) {
      const next = this.timeline.peekMs()
      if (next === undefined || next > deadlineMs) return false
      // A run this busy is in a loop (peers answering each other with no end): a liveness failure.
      if (this.stats.events >= EVENTS_MAX) return false
      const event = this.timeline.next() as TimedEvent
      this.cluster.clockMs = this.timeline.nowMs
      this.stats.events++
      this.trace(`${this.now()} ${event.label}`)
      event.run()
      await this.#settle()
      this.workload.checkWaiters()
    }
    return true
  }

  /** A run with big puts around its join (nemesis-bigkey.ts). */
  bigKeyRun(): boolean {
    return this.config.faults.bigKey && this.config.faults.join
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
      this.workload.startClients()
      this.chaos.scheduleNemesis()
      this.operator.start()
      const chaosDeadline = this.timeline.nowMs + 600_000
      if (!(await this.runUntil(() => this.workload.finished(), chaosDeadline))) {
        const open = [...this.workload.flights.values()].map((flight) => JSON.stringify(flight.invoke))
        this.violations.push({
          checker: 'liveness',
          message: `the clients did not finish within 600 virtual s; still open: ${open.slice(0, 5).join(', ')}`,
        })
      }
      await this.chaos.heal()
      const quiet = await quiesce(this)
      if (quiet) await this.members.checkMembership()
      if (quiet) this.operator.checkGuards()
      if (!quiet)
        this.violations.push({
          checker: 'liveness',
          message: `no quiescence within ${QUIESCE_DEADLINE_MS} virtual ms of the final heal (or ${EVENTS_MAX} events in the run; ${this.stats.events} ran):\n${this.describe()}`,
        })
      this.stats.virtualMs = this.now()
      const finals = await finalStates(this)
      const changes = await allChanges(this)
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
            ...(this.members.membership[index]?.members.keys() ?? []),
          ],
          logRetainEntries: this.random() < 0.5 ? 0 : 10,
          // A run with big puts sends its joiner a snapshot, which carries the big key.
          snapshotAfterChanges: this.random() < 0.5 || this.bigKeyRun() ? 20 : 10_000,
          seqGuardGraceMs: SEQ_GUARD_GRACE_MS,
          // Gathered acks go out on the timeline, as a node's timer sends them.
          later: (run, ms) => void this.timeline.after(ms, `acks ${index}`, run),
        },
        perRun: (store) => this.#perRun(index, store),
      })
    }
    this.network = new Network(this, count)
    for (const node of this.cluster.nodes) this.attachDisk(node)
    this.members.setUpMembership()
  }

  diskSeq(node: SimNode, origin: string, view: 'tables' | 'durable' = 'tables'): number {
    const bytes = node.backend.disk[view].get('vc')?.get(origin)
    return bytes === undefined ? 0 : Number(dec(bytes))
  }

  /** Disk writes take virtual time: a synced one longer. */
  attachDisk(node: SimNode): void {
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
      checkSnapshotStates: (entries) => store.checkSnapshotStates(entries),
      receiveSnapshot: async (vc) => {
        const intake = await store.receiveSnapshot(vc)
        if (intake.into === 'place') this.stats.snapshotsIntoPlace++
        else this.stats.snapshotsStaged++
        return {
          get into() {
            return intake.into
          },
          stages: intake.stages,
          write: (states) => {
            this.stats.bigStatesSnapshotted += states.entries.filter(
              ([, , bytes]) => bytes.length > FRAME_BYTES_MAX,
            ).length
            return intake.write(states)
          },
          finish: () => intake.finish(),
          abandon: () => intake.abandon(),
        }
      },
      purge: (logCovered, stableCut) => store.purge(logCovered, stableCut),
      applyRemoteMany: (changes, sync) => {
        handed = vcJoin(handed, store.vc)
        for (const change of changes) {
          if (change.dot.seq > vcGet(handed, change.dot.node) + 1 || !vcCovers(handed, change.deps)) {
            if (current())
              this.internal(
                `node ${index} was handed ${dotString(change.dot)} (deps ${JSON.stringify(change.deps)}) before the changes it follows (handed so far: ${JSON.stringify(handed)})`,
              )
          }
          handed = vcJoin(handed, { [change.dot.node]: change.dot.seq })
        }
        return store.applyRemoteMany(changes, sync)
      },
    }
    const logger: Logger = {
      info: () => {},
      warn: (fields, message) => {
        if (message !== 'change refused') return
        if (fields['code'] === 'MESHKV_ERR_CLOCK_SKEW') this.stats.refusedSkew++
      },
      error: (fields, message) => {
        // A conflict the clone fault made is said as an error, as it should be (operator.ts).
        if (fields['state'] === 'conflict' && this.config.faults.clone) return
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
        void this.members.membershipTick(node)
      }
      this.#scheduleTick(index, TICK_MS)
    })
  }

  describe(): string {
    return this.cluster.describe()
  }
}

/** Runs one seed. */
export async function simulate(seed: number, overrides: ConfigOverrides = {}): Promise<SimResult> {
  return new Simulation(seed >>> 0, overrides).run()
}

export { simNodeId }
