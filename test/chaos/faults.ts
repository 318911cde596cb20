/**
 * The seeded fault schedule of a chaos run, and the code that applies it to a real cluster
 * (test/cluster/helpers.ts). Two tracks run side by side:
 * - processes: `kill -9` a node and restart it on its directory after a while, or freeze it with
 *   SIGSTOP and thaw it with SIGCONT; one node at a time.
 *   A restore in every run (the third process fault; 5 % of those after the sixth): a node's data
 *   directory is copied while it runs (frozen with SIGSTOP for the copy: LevelDB compacts, renames
 *   and deletes files as it goes, so a copy of a running store's directory can name files the copy
 *   lacks; a frozen one is what a filesystem or VM snapshot gives), the node writes on, and a few
 *   seconds later it is killed and started again from the copy (issue 12: it must get its lost
 *   changes back from its peers before it writes). Its writes since the copy that reached no peer
 *   are gone: the history records the kill as a lossy crash, which the checkers excuse as they do
 *   the simulator's power losses.
 *   A join under a big key once a run (the fourth process fault): a fourth node joins while one
 *   key grows past 4 MiB (six 1 MB siblings, under the per-key limits of 8 MiB and 32 siblings)
 *   through the first three, so what it is sent (snapshot parts or changes) carries a key larger
 *   than a frame; it stays a member to the end and is checked with the others. It has no proxy
 *   per pair: a partition pauses only the entry proxies it dials, so an isolated node may still
 *   reach it (test/cluster/helpers.ts, `isolate`).
 *   A clone (the fifth): a node's directory copied (frozen, as for a restore) and a second process
 *   started on it with the same node id; both must be told (4009) and refuse writes, then the
 *   clone is stopped for good and the original restarted (member-faults.ts).
 *   A live forget (the sixth): a member still taking writes is forgotten through another and
 *   stopped for good a little later; no later fault picks it, and the final checks run on the
 *   survivors (member-faults.ts says how the fault is shaped to lose nothing).
 *   The first six are held shorter than later ones, so a minute has room for one of each; a run
 *   too short for a restore, a join, a clone or a live forget gets a kill in its place;
 * - network: cut peer links through the proxies: one link (the third node is then a bridge
 *   between the other two), one node isolated (a 1/2 split), every node alone, or one link that
 *   flaps (cut and healed every few hundred ms); then heal. Quiet while a restored node starts:
 *   one that heard no peer within its grace (2 × the peer timeout) would write from seqs its peers
 *   hold (a documented limit, test/cluster/rollback.test.ts), which is not what this run tests.
 *   Quiet too while a clone runs (a member cut from the original would take the clone's link, and
 *   with it changes under the original's seqs: the same limit) and around a live forget.
 * The schedule is a pure function of the seed and the duration (`planFaults`), printed with the
 * seed, so a run can be replayed with the same faults at the same offsets.
 */
import { cp, rm } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import type { Cluster } from '../cluster/helpers.js'
import { put } from '../cluster/helpers.js'
import { prng } from '../helpers/async.js'
import type { HistoryWriter } from '../checkers/history.js'
import type { MemberFaultContext } from './member-faults.js'
import { cloneBeside, forgetLive } from './member-faults.js'

/**
 * For a restore, `startMs` is when the copy is taken and `holdMs` how long the node runs on before
 * it is put back; for a big-key join, `node` is the joiner's number; for a clone, `startMs` is when
 * the copy is taken and `holdMs` the least time the two processes run side by side; for a live
 * forget, `startMs` is the forget and `holdMs` how long the forgotten node runs on before it is
 * stopped for good.
 */
export type ProcessFault = {
  track: 'process'
  kind: 'kill' | 'stop' | 'restore' | 'bigKey-join' | 'clone' | 'forget-live'
  node: number
  startMs: number
  holdMs: number
}
export type NetworkFault =
  | { track: 'network'; kind: 'bridge'; cut: [number, number]; startMs: number; holdMs: number }
  | { track: 'network'; kind: 'isolate'; node: number; startMs: number; holdMs: number }
  | { track: 'network'; kind: 'isolate-all'; startMs: number; holdMs: number }
  | { track: 'network'; kind: 'flap'; cut: [number, number]; periodMs: number; startMs: number; holdMs: number }
export type Fault = ProcessFault | NetworkFault

/** The last seconds of a run hold only the final faults. */
const FINAL_WINDOW_MS = 4_000
/** The final faults last until the final heal ends them. */
export const UNTIL_FINAL_HEAL_MS = 3_600_000

/**
 * From a restore's kill: the restart, the restored node's grace (2 × 2 s) and its recovery. No
 * partition overlaps it, and the process track waits for it.
 */
const RESTORE_QUIET_MS = 8_000
/** The big key of a join: this many 1 MB siblings (6 MB: past 4 MiB, under 8 MiB and 32 siblings). */
const BIG_KEY = 'big/joined'
const BIG_SIBLINGS = 6
const MB = 1_000_000

const between = (random: () => number, low: number, high: number): number => Math.round(low + random() * (high - low))

/** Before a live forget: writes are at w >= 2 and no partition runs (see `#forgetLive`). */
export const FORGET_WINDOW_MS = 2_000
/** After a clone's hold: the clone stopped and the original restarted (no partition meanwhile). */
const CLONE_QUIET_MS = 3_000

const FIRST_PROCESS_FAULTS = ['kill', 'stop', 'restore', 'bigKey-join', 'clone', 'forget-live'] as const

/** After the first six: kills and freezes, and a restore now and then (long runs get several). */
function laterProcessFault(roll: number): ProcessFault['kind'] {
  return roll < 0.52 ? 'kill' : roll < 0.95 ? 'stop' : 'restore'
}

/**
 * A restore's node writes on 2-4 s after the copy, then restarts from it; a join and a clone take
 * longer. The first six faults are held shorter, so that a minute has room for all of them.
 */
function holdOf(kind: ProcessFault['kind'], random: () => number, first: boolean): number {
  if (kind === 'restore') return between(random, 2_000, first ? 4_000 : 5_000)
  if (kind === 'bigKey-join') return between(random, 6_000, 8_000)
  if (kind === 'clone') return between(random, 6_000, 9_000)
  if (kind === 'forget-live') return between(random, 1_000, 3_000)
  return between(random, 500, first ? 2_000 : 4_000)
}

/** How long the process track is taken: a restore's restart and recovery come after its hold. */
function busyOf(kind: ProcessFault['kind'], holdMs: number): number {
  if (kind === 'restore') return holdMs + RESTORE_QUIET_MS
  if (kind === 'clone') return holdMs + CLONE_QUIET_MS
  return holdMs
}

/** When the network track stays quiet around a process fault (none for most). */
function quietOf(fault: Fault): readonly [number, number] | undefined {
  const end = fault.startMs + fault.holdMs
  if (fault.kind === 'restore') return [end, end + RESTORE_QUIET_MS]
  if (fault.kind === 'clone') return [fault.startMs, end + CLONE_QUIET_MS]
  if (fault.kind === 'forget-live') return [fault.startMs - FORGET_WINDOW_MS, end]
  return undefined
}

/** Both tracks' faults for `durationMs` of workload on `size` nodes, from `seed`. */
export function planFaults(seed: number, durationMs: number, size = 3): Fault[] {
  const random = prng(seed)
  // A member forgotten live is gone for good: no later fault picks it.
  let forgotten: number | undefined
  const node = (): number => {
    for (;;) {
      const n = 1 + Math.floor(random() * size)
      if (n !== forgotten) return n
    }
  }
  const pair = (): [number, number] => {
    const a = node()
    let b = node()
    while (b === a) b = node()
    return a < b ? [a, b] : [b, a]
  }
  const plan: Fault[] = []
  // Processes: a kill or a freeze every few seconds, held 0.5-4 s; now and then a restore.
  const end = durationMs - FINAL_WINDOW_MS
  for (let at = between(random, 1_000, 2_000); ;) {
    // The first six are one of each kind, so every run long enough has each; one join, one clone
    // and one live forget at most.
    const index = plan.length
    const first = index < FIRST_PROCESS_FAULTS.length
    let kind: ProcessFault['kind'] = FIRST_PROCESS_FAULTS[index] ?? laterProcessFault(random())
    let holdMs = holdOf(kind, random, first)
    // A fault that no longer fits gives way to a kill.
    if (at + busyOf(kind, holdMs) > end && kind !== 'kill' && kind !== 'stop') {
      kind = 'kill'
      holdMs = holdOf(kind, random, first)
    }
    if (at + busyOf(kind, holdMs) > end) break
    const target = kind === 'bigKey-join' ? size + 1 : node()
    plan.push({ track: 'process', kind, node: target, startMs: at, holdMs })
    if (kind === 'forget-live') forgotten = target
    // A live forget is preceded by its window (writes at w >= 2, no partition).
    const next = FIRST_PROCESS_FAULTS[index + 1] === 'forget-live' ? FORGET_WINDOW_MS : 0
    at += busyOf(kind, holdMs) + next + between(random, 1_000, first ? 2_000 : 3_500)
  }
  const quiet = plan.flatMap((fault) => {
    const window = quietOf(fault)
    return window === undefined ? [] : [window]
  })
  // Network: a partition every few seconds, held 1-5 s.
  for (let at = between(random, 500, 2_500); ;) {
    const holdMs = between(random, 1_000, 5_000)
    if (at + holdMs > durationMs - FINAL_WINDOW_MS) break
    const restoring = quiet.find(([from, to]) => at < to && at + holdMs > from)
    if (restoring !== undefined) {
      at = restoring[1] + between(random, 500, 1_500)
      continue
    }
    // The first two are a bridge and an isolated node, so every run has both.
    const index = plan.filter((fault) => fault.track === 'network').length
    const roll = index === 0 ? 0 : index === 1 ? 0.5 : random()
    if (roll < 0.4) plan.push({ track: 'network', kind: 'bridge', cut: pair(), startMs: at, holdMs })
    else if (roll < 0.75) plan.push({ track: 'network', kind: 'isolate', node: node(), startMs: at, holdMs })
    else if (roll < 0.85) plan.push({ track: 'network', kind: 'isolate-all', startMs: at, holdMs })
    else
      plan.push({
        track: 'network',
        kind: 'flap',
        cut: pair(),
        periodMs: between(random, 150, 600),
        startMs: at,
        holdMs,
      })
    at += holdMs + between(random, 500, 3_000)
  }
  // The run ends under faults: a node killed or frozen, and a partition, that only the final heal
  // undoes (so the convergence clock measures a real heal).
  plan.push({
    track: 'process',
    kind: random() < 0.5 ? 'kill' : 'stop',
    node: node(),
    startMs: durationMs - between(random, 1_500, FINAL_WINDOW_MS - 500),
    holdMs: UNTIL_FINAL_HEAL_MS,
  })
  const last = random()
  const startMs = durationMs - between(random, 1_000, FINAL_WINDOW_MS - 500)
  if (last < 0.4) plan.push({ track: 'network', kind: 'bridge', cut: pair(), startMs, holdMs: UNTIL_FINAL_HEAL_MS })
  else if (last < 0.85)
    plan.push({ track: 'network', kind: 'isolate', node: node(), startMs, holdMs: UNTIL_FINAL_HEAL_MS })
  else plan.push({ track: 'network', kind: 'isolate-all', startMs, holdMs: UNTIL_FINAL_HEAL_MS })
  return plan.sort((a, b) => a.startMs - b.startMs)
}

export function describeFault(fault: Fault): string {
  const span = `@${(fault.startMs / 1000).toFixed(1)}s+${fault.holdMs >= UNTIL_FINAL_HEAL_MS ? 'final heal' : `${(fault.holdMs / 1000).toFixed(1)}s`}`
  switch (fault.kind) {
    case 'kill':
      return `${span} kill -9 node ${fault.node}, restart`
    case 'stop':
      return `${span} SIGSTOP node ${fault.node}, SIGCONT`
    case 'restore':
      return `${span} copy node ${fault.node}'s directory (frozen), then kill -9 it and restart it from the copy`
    case 'bigKey-join':
      return `${span} node ${fault.node} joins while ${BIG_KEY} grows to ${BIG_SIBLINGS} siblings of 1 MB`
    case 'clone':
      return `${span} copy node ${fault.node}'s directory (frozen), run a second process on it until both are told (4009), stop it, restart the original`
    case 'forget-live':
      return `${span} forget node ${fault.node} while it takes writes (w >= 2 from ${FORGET_WINDOW_MS / 1000} s before), then stop it for good`
    case 'bridge':
      return `${span} cut ${fault.cut[0]}-${fault.cut[1]} (bridge)`
    case 'isolate':
      return `${span} isolate node ${fault.node}`
    case 'isolate-all':
      return `${span} isolate every node`
    case 'flap':
      return `${span} flap ${fault.cut[0]}-${fault.cut[1]} every ${fault.periodMs} ms`
  }
}

/**
 * Writes ${BIG_SIBLINGS} values of 1 MB to the big key through `urls` in turn, each naming only its
 * first version, so each adds a sibling: a state past 4 MiB that no one write made.
 */
async function growBigKey(urls: readonly string[]): Promise<void> {
  const first = await put(urls[0] as string, BIG_KEY, 'first')
  const context = first.headers.get('etag')
  if (first.status !== 200 || context === null) throw new Error(`${BIG_KEY}: ${first.status} ${first.text}`)
  for (let index = 0; index < BIG_SIBLINGS; index++) {
    const answer = await put(
      urls[index % urls.length] as string,
      BIG_KEY,
      `sibling ${index}`.padEnd(MB, '.'),
      {},
      {
        'x-context': context,
      },
    )
    if (answer.status !== 200) throw new Error(`${BIG_KEY} sibling ${index}: ${answer.status} ${answer.text}`)
  }
}

/** Sleeps until `atMs` (a Date.now() value), or until `signal` aborts; true when it aborted. */
async function sleepUntil(atMs: number, signal: AbortSignal): Promise<boolean> {
  // An abort rejects the delay; that is the early wake-up, not an error.
  await delay(Math.max(0, atMs - Date.now()), undefined, { signal }).catch(() => undefined)
  return signal.aborted
}

/**
 * Applies a plan to `cluster` from now on. `finish()` stops it: the fault in progress on each
 * track is undone at once (a killed node restarted, a frozen one thawed, links healed).
 */
export class FaultRunner {
  readonly #cluster: Cluster
  readonly #history: HistoryWriter
  readonly #stop = new AbortController()
  readonly #tracks: Promise<void>[]
  readonly #errors: unknown[] = []
  readonly applied: Record<string, number> = {}
  /** Nodes gone for good (a forgotten member, a clone): neither restarted nor checked at the end. */
  readonly retired = new Set<number>()
  readonly #members: MemberFaultContext

  /** `atLeastTwo` switches the workload to writes at w >= 2 around a live forget. */
  constructor(cluster: Cluster, history: HistoryWriter, plan: readonly Fault[], atLeastTwo: (on: boolean) => void) {
    this.#cluster = cluster
    this.#history = history
    this.#members = {
      cluster,
      history,
      retired: this.retired,
      atLeastTwo,
      sleepUntil: (atMs) => sleepUntil(atMs, this.#stop.signal),
    }
    const t0 = Date.now()
    this.#tracks = (['process', 'network'] as const).map((track) =>
      this.#run(
        t0,
        plan.filter((fault) => fault.track === track),
      ).catch((error: unknown) => {
        this.#errors.push(error)
      }),
    )
  }

  /** Stops the schedule and undoes what is in progress; throws if applying a fault failed. */
  async finish(): Promise<void> {
    this.#stop.abort()
    await Promise.all(this.#tracks)
    if (this.#errors.length > 0)
      throw new Error(`a fault could not be applied: ${this.#errors.map(String).join('; ')}`, {
        cause: this.#errors[0],
      })
  }

  async #run(t0: number, faults: readonly Fault[]): Promise<void> {
    const signal = this.#stop.signal
    for (const fault of faults) {
      // A live forget begins with its window: writes at w >= 2 from then on.
      const window = fault.kind === 'forget-live' ? FORGET_WINDOW_MS : 0
      if (await sleepUntil(t0 + fault.startMs - window, signal)) return
      this.applied[fault.kind] = (this.applied[fault.kind] ?? 0) + 1
      await this.#apply(fault, t0 + fault.startMs + fault.holdMs, signal)
    }
  }

  /**
   * A restore: node `n`'s directory copied while it is frozen, and once `untilMs` comes, the node
   * killed and started again from the copy (not when the run stops first: the copy is dropped).
   */
  async #restore(n: number, untilMs: number, signal: AbortSignal): Promise<void> {
    const node = this.#cluster.node(n)
    const history = this.#history
    const copy = `${node.dir}.copy`
    history.fault('pause', [n], 'SIGSTOP to copy its directory')
    node.suspend()
    try {
      await cp(node.dir, copy, { recursive: true })
    } finally {
      node.continue()
    }
    history.fault('resume', [n], 'SIGCONT, its directory copied')
    if (!(await sleepUntil(untilMs, signal))) {
      history.fault('crash', [n], 'kill -9, its directory put back from the copy', true)
      await node.kill('SIGKILL')
      await rm(node.dir, { recursive: true, force: true })
      await cp(copy, node.dir, { recursive: true })
      history.fault('restart', [n], 'from the copy')
      await this.#cluster.restart(n)
      // What the seq guard saw: the seq it started at, and the most of its own a peer held.
      const guard = (await node.status())['seqGuard'] as { startSeq: number; claimedSeq: number }
      history.fault('ready', [n], `own seq ${guard.startSeq} at start, peers held up to ${guard.claimedSeq}`)
    }
    await rm(copy, { recursive: true, force: true })
  }

  /** A new node joins while one key grows past 4 MiB through the first three; it stays a member. */
  async #bigKeyJoin(n: number, untilMs: number, signal: AbortSignal): Promise<void> {
    const cluster = this.#cluster
    const writers = cluster.nodes.filter((node) => node.n < n).map((node) => node.url)
    this.#history.fault('join', [n], `joins while ${BIG_KEY} grows past 4 MiB`)
    const joined = cluster.addNode({ peers: cluster.nodes.map((node) => node.entry.url), waitReady: false })
    await growBigKey(writers)
    const node = await joined
    if (node.n !== n) throw new Error(`the joiner is node ${node.n}, not node ${n}`)
    await node.waitReady(60_000)
    this.#history.fault('ready', [n], 'joined')
    await sleepUntil(untilMs, signal)
  }

  /** Applies one fault, holds it until `untilMs` (or the stop), undoes it. */
  async #apply(fault: Fault, untilMs: number, signal: AbortSignal): Promise<void> {
    const cluster = this.#cluster
    const history = this.#history
    switch (fault.kind) {
      case 'kill': {
        const node = cluster.node(fault.node)
        history.fault('crash', [fault.node], 'kill -9')
        await node.kill('SIGKILL')
        await sleepUntil(untilMs, signal)
        history.fault('restart', [fault.node])
        await cluster.restart(fault.node)
        history.fault('ready', [fault.node])
        return
      }
      case 'restore':
        return this.#restore(fault.node, untilMs, signal)
      case 'bigKey-join':
        return this.#bigKeyJoin(fault.node, untilMs, signal)
      case 'clone':
        return cloneBeside(this.#members, fault.node, untilMs)
      case 'forget-live': {
        this.#members.atLeastTwo(true)
        history.fault('window', [fault.node], 'writes at w >= 2 until the forgotten member is stopped')
        if (await sleepUntil(untilMs - fault.holdMs, signal)) return this.#members.atLeastTwo(false)
        return forgetLive(this.#members, fault.node, untilMs)
      }
      case 'stop': {
        const node = cluster.node(fault.node)
        history.fault('pause', [fault.node], 'SIGSTOP')
        node.suspend()
        await sleepUntil(untilMs, signal)
        node.continue()
        history.fault('resume', [fault.node], 'SIGCONT')
        return
      }
      case 'bridge':
        history.fault('partition', fault.cut, `cut ${fault.cut.join('-')} (bridge)`)
        cluster.cut(...fault.cut)
        break
      case 'isolate':
        history.fault('partition', [fault.node], `isolate ${fault.node}`)
        cluster.isolate(fault.node)
        break
      case 'isolate-all':
        history.fault(
          'partition',
          cluster.nodes.map((node) => node.n),
          'isolate all',
        )
        cluster.isolateAll()
        break
      case 'flap': {
        history.fault('partition', fault.cut, `flap ${fault.cut.join('-')} every ${fault.periodMs} ms`)
        // The network track owns every proxy, so healing all of them heals this link.
        for (let cut = true; Date.now() < untilMs && !signal.aborted; cut = !cut) {
          if (cut) cluster.cut(...fault.cut)
          else cluster.heal()
          await sleepUntil(Math.min(untilMs, Date.now() + fault.periodMs), signal)
        }
        cluster.heal()
        history.fault('heal', fault.cut)
        return
      }
    }
    await sleepUntil(untilMs, signal)
    cluster.heal()
    history.fault('heal', [])
  }
}
