/**
 * The simulator's nemesis (docs/testing.md, level L1): at random moments of the chaos phase it
 * injects a fault drawn from the run's enabled ones: partitions of any shape (isolate one, split,
 * bridge, random), dropped frames (which break links), stalled links, crashes (kill -9, or a power
 * loss) and restarts, clock skew up to twice the allowed offset; and the final heal that ends them.
 * The link-level model of each fault is network.ts's. Split from simulation.ts: the run owns the
 * timeline and the nodes, this part owns the fault schedule and the nodes being restarted.
 */
import { vcJoin } from '../../src/clock/index.js'
import type { Faults } from './config.js'
import { FAULT_NAMES, MAX_OFFSET_MS } from './config.js'
import type { Simulation } from './simulation.js'
import type { TimedEvent } from './timeline.js'

export class Nemesis {
  /** Nodes whose restart is under way. */
  readonly restarting = new Set<number>()
  /** Nodes down until their restart timer fires (the final heal restarts them at once). */
  readonly restartTimers = new Map<number, TimedEvent>()
  #nemesisTimer: TimedEvent | null = null
  #partitionEpoch = 0

  constructor(readonly sim: Simulation) {}

  scheduleNemesis(): void {
    const faults = this.sim.config.faults
    const scheduled: readonly (keyof Faults)[] = ['power', 'join', 'forget', 'forgetLive', 'bigKey', 'restore', 'clone']
    if (!FAULT_NAMES.some((name) => !scheduled.includes(name) && faults[name])) return
    if (faults.drop) this.sim.network.dropRate = 0.003
    const delay = 200 + Math.floor(-Math.log(1 - this.sim.random()) * 1500)
    this.#nemesisTimer = this.sim.timeline.after(delay, 'nemesis', () => {
      this.#fault()
      if (this.sim.phase === 'chaos') this.scheduleNemesis()
    })
  }

  #fault(): void {
    const faults = this.sim.config.faults
    const kinds = (['drop', 'partition', 'crash', 'skew', 'stall'] as const).filter((name) => faults[name])
    const kind = this.sim.pick(kinds)
    // A restored node checking with its peers has its paths up and no member crashing (operator.ts).
    if ((kind === 'partition' || kind === 'crash') && this.sim.operator.holding()) return
    switch (kind) {
      case 'partition':
        return this.#partition()
      case 'drop': {
        const pairs = this.sim.network.livePairs()
        if (pairs.length === 0) return
        const pair = this.sim.pick(pairs)
        this.sim.network.breakLink(pair, this.sim.random() < 0.5 ? pair.dialer : pair.acceptor, 'dropped frame')
        return
      }
      case 'crash': {
        const alive = this.sim.cluster.nodes.filter((node) => node.alive && !this.restarting.has(node.index))
        if (alive.length <= 1) return
        const node = this.sim.pick(alive)
        const crash = faults.power && this.sim.random() < 0.5 ? 'power' : 'process'
        this.crash(node.index, crash)
        this.restartTimers.set(
          node.index,
          this.sim.timeline.after(300 + Math.floor(this.sim.random() * 5000), `restart ${node.index}`, () =>
            this.restart(node.index),
          ),
        )
        return
      }
      case 'skew': {
        const node = this.sim.pick(this.sim.cluster.nodes)
        node.skewMs = this.sim.random() < 0.3 ? 0 : Math.round((this.sim.random() * 2 - 1) * 2 * MAX_OFFSET_MS)
        this.sim.nemesis('skew', [node.index], `${node.skewMs} ms`)
        return
      }
      case 'stall': {
        const pairs = this.sim.network.livePairs()
        if (pairs.length === 0) return
        const pair = this.sim.pick(pairs)
        const ms = 200 + Math.floor(this.sim.random() * 1800)
        this.sim.network.stall(pair, this.sim.timeline.nowMs + ms)
        this.sim.nemesis(
          'stall',
          pair.ends.map((end) => Number.parseInt(end.self, 16) - 1),
          `link ${pair.id} for ${ms} ms`,
        )
        return
      }
    }
  }

  #partition(): void {
    const n = this.sim.cluster.nodes.length
    const nodes = this.sim.cluster.nodes.map((node) => node.index)
    const shape = this.sim.pick(['isolate', 'split', 'bridge', 'random'] as const)
    let up: (a: number, b: number) => boolean
    if (shape === 'isolate') {
      const x = this.sim.pick(nodes)
      up = (a, b) => a !== x && b !== x
    } else if (shape === 'split') {
      const side = nodes.map(() => this.sim.random() < 0.5)
      up = (a, b) => side[a] === side[b]
    } else if (shape === 'bridge') {
      // One node links two groups that cannot reach each other: A-B and B-C up, A-C down.
      const bridge = this.sim.pick(nodes)
      const side = nodes.map(() => this.sim.random() < 0.5)
      up = (a, b) => a === bridge || b === bridge || side[a] === side[b]
    } else {
      const down = new Set<string>()
      for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (this.sim.random() < 0.4) down.add(`${a}-${b}`)
      up = (a, b) => !down.has(`${Math.min(a, b)}-${Math.max(a, b)}`)
    }
    const cut: string[] = []
    for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (!up(a, b)) cut.push(`${a}-${b}`)
    this.sim.network.setPaths(up)
    this.sim.stats.partitions++
    this.sim.nemesis('partition', nodes, `${shape}: down ${cut.join(' ') || '(none)'}`)
    const epoch = ++this.#partitionEpoch
    this.sim.timeline.after(1000 + Math.floor(this.sim.random() * 7000), 'heal', () => {
      if (epoch !== this.#partitionEpoch || this.sim.phase !== 'chaos') return
      this.sim.network.setPaths(() => true)
      this.sim.nemesis('heal', nodes)
    })
  }

  /** A crash; `retired`: the node is gone for good and its disk with it (so lossy, whatever it synced). */
  crash(index: number, kind: 'process' | 'power', retired = false, restored = false): void {
    const node = this.sim.cluster.node(index)
    // A restore loses what the disk took since its copy, whatever it synced.
    const lossy = retired || restored || (kind === 'power' && node.options.sync !== true)
    this.sim.stats.crashes++
    if (lossy) this.sim.stats.lossyCrashes++
    this.sim.nemesis('crash', [index], retired ? 'retired' : restored ? 'for a restore' : kind, lossy)
    if (lossy) {
      const held = Object.fromEntries(
        this.sim.cluster.nodes.map((other) => [other.nodeId, this.sim.diskSeq(node, other.nodeId)]),
      )
      this.sim.lostVc[index] = vcJoin(this.sim.lostVc[index] ?? {}, held)
    }
    this.sim.cluster.crash(index, kind, { cutLinks: false })
    this.sim.network.crashed(index, kind)
    if (lossy && !retired) this.sim.members.forgetLost()
    for (const flight of [...this.sim.workload.flights.values()]) {
      if (flight.node === index)
        this.sim.workload.finish(flight, flight.write ? 'unknown' : 'fail', { code: 'MESHKV_ERR_CONNECTION_RESET' })
    }
  }

  restart(index: number, label: 'restart' | 'join' | 'restore' = 'restart'): void {
    this.restartTimers.delete(index)
    const node = this.sim.cluster.node(index)
    if (node.alive || this.restarting.has(index) || index === this.sim.members.retired) return
    this.restarting.add(index)
    this.sim.activity()
    void this.sim.cluster.restart(index).then(
      () => {
        this.restarting.delete(index)
        this.sim.attachDisk(node)
        this.sim.members.newRun(node)
        this.sim.nemesis(label, [index])
        this.sim.network.restarted(index)
        this.sim.activity()
      },
      (error: unknown) => {
        this.restarting.delete(index)
        this.sim.internal(`node ${index} could not restart: ${String(error)}`)
      },
    )
  }

  /** Every path up now, and partitions pending a heal forgotten (a restore's shape, operator.ts). */
  calm(): void {
    const down = this.sim.network.up.some((row, a) => row.some((up, b) => a !== b && !up))
    ++this.#partitionEpoch
    if (!down) return
    this.sim.network.setPaths(() => true)
    this.sim.nemesis(
      'heal',
      this.sim.cluster.nodes.map((node) => node.index),
      'for a restore',
    )
  }

  /** The final heal: every path up, faults off, every node down for a while restarted. */
  async heal(): Promise<void> {
    this.sim.phase = 'heal'
    this.sim.timeline.cancel(this.#nemesisTimer)
    this.sim.network.dropRate = 0
    this.sim.network.clearStalls()
    this.sim.network.setPaths(() => true)
    this.sim.nemesis(
      'heal',
      this.sim.cluster.nodes.map((node) => node.index),
      'final',
    )
    for (const [index, timer] of this.restartTimers) {
      this.sim.timeline.cancel(timer)
      this.restart(index)
    }
    this.restartTimers.clear()
    this.sim.operator.heal()
  }
}
