/**
 * The end of a simulator run (docs/testing.md, level L1): quiescence after the final heal (every node
 * has the same vector clock, nothing buffered, nothing in flight, settled over two ticks), then what
 * the checkers read: every live node's final state and every change made. Split from simulation.ts.
 */
import { vcEquals } from '../../src/clock/index.js'
import type { Change } from '../../src/crdt/index.js'
import { counterValue, lwwSibling } from '../../src/crdt/index.js'
import { digestOf } from '../../src/storage/index.js'
import type { Violation } from '../checkers/checks.js'
import type { ChangeRecord, FinalNodeState, FinalSibling, HistoryEvent, OpRecord } from '../checkers/history.js'
import { dotString } from '../checkers/history.js'
import { checkValues, valuesOf } from '../checkers/values.js'
import type { SimNode } from '../helpers/replication-sim.js'
import { TICK_MS } from '../helpers/replication-sim.js'
import { QUIESCE_DEADLINE_MS } from './config.js'
import type { Simulation } from './simulation.js'
import { dec } from './workload.js'

/**
 * Every node that should be up is, with the same clock, nothing buffered, nothing in flight, and
 * no link half-open (a node that has not noticed a break yet still counts the peer as linked).
 */
export function converged(sim: Simulation): boolean {
  const nodes = sim.cluster.nodes.filter((node) => node.index !== sim.members.retired)
  if (sim.chaos.restarting.size > 0 || sim.workload.flights.size > 0 || !nodes.every((node) => node.alive)) return false
  // A member down for good is forgotten before the run counts as quiet, unless no node knows it.
  const { retired } = sim.members
  if (retired !== null && !sim.members.forgotten && !sim.members.unknownToAll(retired)) return false
  // A forgotten member still up (forgotten alive) goes down for good before the run counts as quiet.
  if (sim.members.retired !== null && sim.cluster.node(sim.members.retired).alive) return false
  // A node that started late in the run writes again once every member synced (or its seq guard's
  // grace ran out): a heal's restart is not over before that (the guard's other states are checks).
  if (nodes.some((node) => node.replicator.seqGuard.state === 'verifying')) return false
  const first = (nodes[0] as SimNode).store.vc
  return (
    nodes.every((node) => vcEquals(node.store.vc, first) && sim.members.bufferedWork(node).length === 0) &&
    sim.network.inFlight() === 0 &&
    sim.network.unnoticedBreaks() === 0
  )
}

/** Runs until quiescence (see `converged`), settled over two ticks, or the deadline: false. */
export async function quiesce(sim: Simulation): Promise<boolean> {
  const deadline = sim.timeline.nowMs + QUIESCE_DEADLINE_MS
  // Let the last acks and ticks pass, then make sure nothing moved (a write still landing when the
  // clocks first agreed, a membership write say, moves them); if something did, the settling
  // starts again from the next convergence, so every node has two ticks after the last change
  // it took (a joiner becomes ready on the first tick after it caught up).
  const clocks = (): string => JSON.stringify(sim.cluster.nodes.map((node) => (node.alive ? node.store.vc : null)))
  for (;;) {
    if (!(await sim.runUntil(() => converged(sim), deadline))) return false
    const before = clocks()
    const settleUntil = Math.min(sim.timeline.nowMs + 2 * TICK_MS, deadline)
    await sim.runUntil(() => false, settleUntil)
    if (converged(sim) && clocks() === before) return true
  }
}

/** Every live node's final state, for the checkers. */
export async function finalStates(sim: Simulation): Promise<FinalNodeState[]> {
  const out: FinalNodeState[] = []
  for (const node of sim.cluster.nodes) {
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

/** Every change made (as commits answered) and in any live node's log; a dot with two bodies is kept twice. */
export async function allChanges(sim: Simulation): Promise<ChangeRecord[]> {
  const byDot = new Map<string, ChangeRecord>()
  const extra: ChangeRecord[] = []
  const add = (change: Change): void => {
    const record = changeRecord(change)
    const known = byDot.get(record.dot)
    if (known === undefined) byDot.set(record.dot, record)
    else if (JSON.stringify(known) !== JSON.stringify(record)) extra.push(record)
  }
  for (const change of sim.made.values()) add(change)
  for (const node of sim.cluster.nodes) {
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

/**
 * The value checkers of process chaos (test/checkers/values.ts) over the same run, so both levels
 * run both sets. Every key is contended here (no unique prefix). What `checkAll` reported already
 * (the history-shape check runs in both) is not reported twice; the rest are marked as value checks.
 */
export function valueViolations(
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
