/**
 * The checkers (docs/testing.md): the same code for the simulator (L1) and process chaos (L2). Each
 * takes the history, the final node states and, when the run can give them, every change made
 * (from the logs), and returns violations (empty: the run passed).
 *
 * - convergence: after heal and quiescence every node's digest and vector clock are equal.
 * - registers: no lost acknowledged write. Every acknowledged put/del is in the final clock and is
 *   a final sibling or was replaced by a change (in the final clock) whose context held its dot;
 *   every node's plain read is the max by (HLC, node id, seq) of its final siblings; a failed
 *   write's value is nowhere.
 * - counters: final = the acknowledged increments plus some subset of the unknown ones.
 * - sets: an acknowledged add leaves only through an add or remove that observed it.
 * - sessions: a read with a causal token was answered from a state covering the token, and the
 *   answer is the specification of that state.
 * - state: each final state is the specification of exactly the changes its clock names; no
 *   dot names two different changes.
 * - durability: a write acknowledged at w=k was durably held by at least k members then.
 *
 * Lossy crashes: a write acknowledged by k members may be lost only if its origin and at least k
 * members in all suffered a lossy crash (a `nemesis` crash with `lossy: true`) after it began.
 */
import { decodeCausalToken } from '../../src/clock/index.js'
import type {
  ChangeRecord,
  CompletionEvent,
  FinalNodeState,
  HistoryEvent,
  InvokeEvent,
  OperationRecord,
  ReadConcernSpec,
  WriteConcernSpec,
} from './history.js'
import { isCompletion, isInvoke, isNemesis, operations, parseDot, vcHas } from './history.js'
import { ChangeIndex, plainRead } from './oracle.js'

export type CheckerName =
  | 'convergence'
  | 'registers'
  | 'counters'
  | 'sets'
  | 'sessions'
  | 'state'
  | 'durability'
  | 'history'
  | 'liveness'
  | 'internal'

export interface Violation {
  checker: CheckerName
  message: string
}

export interface CheckInput {
  history: readonly HistoryEvent[]
  /** One per node, read after the final heal and quiescence. */
  finals: readonly FinalNodeState[]
  /** Every change any node made (the union of the logs), when the run can give them. */
  changes?: readonly ChangeRecord[]
  /** Members of the cluster, for w=quorum and w=all. */
  members: number
  /** Node label (as in `invoke.node` and `nemesis.nodes`) → node id, to tie dots to nodes. */
  nodeIds?: Readonly<Record<string, string>>
}

/** Members a concern asks for: src/api/concern.ts restated on purpose, so the checker does not trust the rule it checks. */
export function requiredFor(w: WriteConcernSpec | ReadConcernSpec, members: number): number {
  if (w === 'all') return members
  if (w === 'quorum') return Math.floor(members / 2) + 1
  return w
}

/** Runs every checker. */
export function checkAll(input: CheckInput): Violation[] {
  const context = new Context(input)
  return [
    ...checkHistoryShape(input),
    ...checkConvergence(input.finals),
    ...checkRegisters(context),
    ...checkCounters(context),
    ...checkSets(context),
    ...checkSessions(context),
    ...checkStates(context),
    ...checkDurability(context),
  ]
}

/** What every checker needs, computed once. */
export class Context {
  readonly ops: OperationRecord[]
  readonly index: ChangeIndex | null
  readonly final: FinalNodeState | undefined
  readonly finalVc: Readonly<Record<string, number>>
  readonly #lossy: { atMs: number; nodeId: string }[]

  constructor(readonly input: CheckInput) {
    this.ops = operations(input.history)
    this.index = input.changes === undefined ? null : new ChangeIndex(input.changes)
    this.final = input.finals[0]
    this.finalVc = this.final?.vc ?? {}
    this.#lossy = input.history
      .filter(isNemesis)
      .flatMap((event) =>
        event.fault === 'crash' && event.lossy === true
          ? event.nodes.map((node) => ({ atMs: event.atMs, nodeId: input.nodeIds?.[String(node)] ?? String(node) }))
          : [],
      )
  }

  /**
   * May the acknowledged write `record` (with dot `dot`) be gone? Only if its origin and at least
   * as many members as acknowledged it crashed losing data after it began.
   */
  mayBeLost(record: OperationRecord, dot: string): boolean {
    if (this.#lossy.length === 0) return false
    const op = record.invoke.op
    const acknowledgedBy = 'w' in op ? (record.completion.required ?? requiredFor(op.w, this.input.members)) : 1
    const after = new Set(this.#lossy.filter((crash) => crash.atMs >= record.invoke.atMs).map((crash) => crash.nodeId))
    return after.has(parseDot(dot).node) && after.size >= acknowledgedBy
  }
}

/** JSON with object keys sorted at every level, so equal values print equal. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item !== null && typeof item === 'object' && !Array.isArray(item)
      ? Object.fromEntries(
          Object.entries(item as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : item,
  )
}

function describeOp(record: OperationRecord): string {
  const { invoke, completion } = record
  return `op ${invoke.id} (client ${invoke.client} on node ${String(invoke.node)} at ${invoke.atMs} ms: ${JSON.stringify(invoke.op)} → ${completion.kind}${completion.dot === undefined ? '' : ` ${completion.dot}`} at ${completion.atMs} ms)`
}

// ---------------------------------------------------------------------------------------------

export function checkHistoryShape(input: CheckInput): Violation[] {
  const out: Violation[] = []
  const invoked = new Map<number, InvokeEvent>()
  const completed = new Set<number>()
  for (const event of input.history) {
    if (!isInvoke(event) && !isCompletion(event)) continue
    if (event.kind === 'invoke') {
      if (invoked.has(event.id)) out.push({ checker: 'history', message: `operation id ${event.id} invoked twice` })
      invoked.set(event.id, event)
      continue
    }
    if (!invoked.has(event.id))
      out.push({ checker: 'history', message: `operation ${event.id} completed before it was invoked` })
    if (completed.has(event.id)) out.push({ checker: 'history', message: `operation ${event.id} completed twice` })
    completed.add(event.id)
  }
  return out
}

export function checkConvergence(finals: readonly FinalNodeState[]): Violation[] {
  const first = finals[0]
  if (first === undefined) return []
  const out: Violation[] = []
  for (const other of finals.slice(1)) {
    if (other.digest === first.digest && canonicalJson(other.vc) === canonicalJson(first.vc)) continue
    const differing: string[] = []
    const keysOf = (state: FinalNodeState): string[] => [
      ...Object.keys(state.kv).map((key) => `kv/${key}`),
      ...Object.keys(state.counters).map((name) => `counter/${name}`),
      ...Object.keys(state.sets).map((name) => `set/${name}`),
    ]
    const valueOf = (state: FinalNodeState, id: string): string => {
      const [space, ...rest] = id.split('/')
      const key = rest.join('/')
      if (space === 'kv')
        return canonicalJson([...(state.kv[key]?.siblings ?? [])].sort((a, b) => (a.dot < b.dot ? -1 : 1)))
      if (space === 'counter') return canonicalJson(state.counters[key] ?? 0)
      return canonicalJson(
        Object.fromEntries(Object.entries(state.sets[key] ?? {}).map(([member, dots]) => [member, [...dots].sort()])),
      )
    }
    for (const id of new Set([...keysOf(first), ...keysOf(other)])) {
      if (valueOf(first, id) !== valueOf(other, id))
        differing.push(`${id}: ${valueOf(first, id)} vs ${valueOf(other, id)}`)
    }
    out.push({
      checker: 'convergence',
      message: `node ${String(other.node)} differs from node ${String(first.node)} after heal and quiescence: vc ${JSON.stringify(other.vc)} vs ${JSON.stringify(first.vc)}; ${differing.slice(0, 6).join('; ') || 'digests differ'}`,
    })
  }
  return out
}

export function checkRegisters(context: Context): Violation[] {
  const out: Violation[] = []
  const { final, index, finalVc } = context
  if (final === undefined) return out
  for (const record of context.ops) {
    const { invoke, completion } = record
    const op = invoke.op
    if (op.type !== 'put' && op.type !== 'del') continue
    if (completion.kind !== 'ok' || completion.dot === undefined) continue
    const dot = completion.dot
    if (context.mayBeLost(record, dot)) continue
    if (!vcHas(finalVc, dot)) {
      out.push({
        checker: 'registers',
        message: `acknowledged write lost: ${describeOp(record)} is not in the final vector clock ${JSON.stringify(finalVc)}`,
      })
      continue
    }
    const siblings = final.kv[op.key]?.siblings ?? []
    if (siblings.some((sibling) => sibling.dot === dot)) continue
    if (index !== null) {
      // A stable tombstone is purged by garbage collection.
      if (
        op.type === 'del' &&
        siblings.length === 0 &&
        isCollectedTombstone(index.registerSiblings(op.key, finalVc), context.input.finals)
      )
        continue
      if (index.replacersOf(op.key, dot, finalVc, op.type === 'del').length === 0) {
        out.push({
          checker: 'registers',
          message: `acknowledged write lost: ${describeOp(record)} is no final sibling of ${JSON.stringify(op.key)} and no change replaced it (final siblings ${JSON.stringify(siblings.map((s) => s.dot))})`,
        })
      }
    } else if (
      !context.ops.some(
        (other) =>
          other !== record &&
          other.invoke.op.type !== 'get' &&
          'key' in other.invoke.op &&
          other.invoke.op.key === op.key &&
          other.completion.kind !== 'fail',
      )
    ) {
      out.push({
        checker: 'registers',
        message: `acknowledged write lost: ${describeOp(record)} is no final sibling and no other write of the key could have replaced it`,
      })
    }
  }
  // A plain read answers the max by (HLC, node id, seq) of the siblings.
  for (const state of context.input.finals) {
    for (const [key, { siblings, read }] of Object.entries(state.kv)) {
      const expected = plainRead(siblings)
      if (read !== expected)
        out.push({
          checker: 'registers',
          message: `node ${String(state.node)}: a plain read of ${JSON.stringify(key)} answered ${JSON.stringify(read)}, but the LWW-highest sibling holds ${JSON.stringify(expected)} (siblings ${JSON.stringify(siblings)})`,
        })
    }
  }
  // A failed write did not happen: its value is nowhere.
  const failed = context.ops.filter((record) => record.completion.kind === 'fail' && record.invoke.op.type === 'put')
  if (failed.length > 0) {
    const present =
      index?.putValues() ??
      new Set(Object.values(final.kv).flatMap((entry) => entry.siblings.map((sibling) => sibling.value ?? '')))
    for (const record of failed) {
      const op = record.invoke.op as Extract<InvokeEvent['op'], { type: 'put' }>
      if (present.has(op.value))
        out.push({ checker: 'registers', message: `a failed write happened: ${describeOp(record)}` })
    }
  }
  return out
}

/** Every sum of a subset of `deltas`. */
export function subsetSums(deltas: readonly number[]): Set<number> {
  let sums = new Set<number>([0])
  for (const delta of deltas) sums = new Set([...sums, ...[...sums].map((sum) => sum + delta)])
  return sums
}

export function checkCounters(context: Context): Violation[] {
  const out: Violation[] = []
  const { final } = context
  if (final === undefined) return out
  const names = new Set<string>()
  for (const record of context.ops) if (record.invoke.op.type === 'incr') names.add(record.invoke.op.name)
  for (const name of names) {
    let acknowledged = 0
    const unknown: number[] = []
    const mayBeLost: string[] = []
    for (const record of context.ops) {
      const op = record.invoke.op
      if (op.type !== 'incr' || op.name !== name) continue
      if (record.completion.kind === 'unknown') unknown.push(op.delta)
      else if (record.completion.kind === 'ok') {
        const dot = record.completion.dot
        if (dot !== undefined && context.mayBeLost(record, dot)) {
          unknown.push(op.delta)
          mayBeLost.push(dot)
          continue
        }
        acknowledged += op.delta
        if (dot !== undefined && !vcHas(context.finalVc, dot))
          out.push({
            checker: 'counters',
            message: `acknowledged increment lost: ${describeOp(record)} is not in the final vector clock`,
          })
      }
    }
    const value = final.counters[name] ?? 0
    if (!subsetSums(unknown).has(value - acknowledged)) {
      out.push({
        checker: 'counters',
        message: `counter ${JSON.stringify(name)} is ${value}: acknowledged increments sum to ${acknowledged}, and no subset of the ${unknown.length} unknown ones (${JSON.stringify(unknown)}) makes up the difference ${value - acknowledged}`,
      })
    }
  }
  return out
}

export function checkSets(context: Context): Violation[] {
  const out: Violation[] = []
  const { final, index, finalVc } = context
  if (final === undefined) return out
  for (const record of context.ops) {
    const op = record.invoke.op
    if (op.type !== 'sadd' || record.completion.kind !== 'ok' || record.completion.dot === undefined) continue
    const dot = record.completion.dot
    if (context.mayBeLost(record, dot)) continue
    if (!vcHas(finalVc, dot)) {
      out.push({
        checker: 'sets',
        message: `acknowledged add lost: ${describeOp(record)} is not in the final vector clock`,
      })
      continue
    }
    const dots = final.sets[op.name]?.[op.member] ?? []
    if (dots.includes(dot)) continue
    if (index !== null) {
      if (index.setObserversOf(op.name, op.member, dot, finalVc).length === 0) {
        out.push({
          checker: 'sets',
          message: `acknowledged add gone without a remove that observed it: ${describeOp(record)} (final dots of the member: ${JSON.stringify(dots)})`,
        })
      }
    } else if (
      dots.length === 0 &&
      !context.ops.some(
        (other) =>
          other.invoke.op.type === 'srem' &&
          other.invoke.op.name === op.name &&
          other.invoke.op.member === op.member &&
          other.completion.kind !== 'fail',
      )
    ) {
      out.push({
        checker: 'sets',
        message: `acknowledged add gone and no remove of the member was ever made: ${describeOp(record)}`,
      })
    }
  }
  return out
}

function readAnswerProblem(
  index: ChangeIndex,
  op: InvokeEvent['op'],
  completion: CompletionEvent,
  vc: Readonly<Record<string, number>>,
): string | null {
  switch (op.type) {
    case 'get': {
      const siblings = index.registerSiblings(op.key, vc)
      if (completion.siblingDots !== undefined) {
        const got = [...completion.siblingDots].sort()
        const want = siblings.map((sibling) => sibling.dot)
        // A key whose siblings are all tombstones may have been purged (garbage collection).
        const collected = got.length === 0 && siblings.length > 0 && siblings.every((sibling) => sibling.value === null)
        if (!collected && JSON.stringify(got) !== JSON.stringify(want))
          return `siblings ${JSON.stringify(got)}, but the changes of its clock leave ${JSON.stringify(want)}`
      }
      const want = plainRead(siblings)
      return completion.result === want
        ? null
        : `answered ${JSON.stringify(completion.result)}, but the changes of its clock make it ${JSON.stringify(want)}`
    }
    case 'cget': {
      const want = index.counterValue(op.name, vc)
      return completion.result === want
        ? null
        : `answered ${JSON.stringify(completion.result)}, but the increments of its clock sum to ${want}`
    }
    case 'smembers': {
      const want = [...index.setState(op.name, vc).keys()]
      return JSON.stringify(completion.result) === JSON.stringify(want)
        ? null
        : `answered ${JSON.stringify(completion.result)}, but the changes of its clock leave ${JSON.stringify(want)}`
    }
    default:
      return null
  }
}

export function checkSessions(context: Context): Violation[] {
  const out: Violation[] = []
  const { index } = context
  for (const record of context.ops) {
    const { invoke, completion } = record
    const op = invoke.op
    if (op.type !== 'get' && op.type !== 'cget' && op.type !== 'smembers') continue
    if (completion.kind !== 'ok') continue
    const token = op.token === null ? {} : decodeCausalToken(op.token)
    if (completion.vc !== undefined) {
      const missed = Object.entries(token).filter(([node, seq]) => (completion.vc?.[node] ?? 0) < seq)
      if (missed.length > 0) {
        out.push({
          checker: 'sessions',
          message: `a read missed writes its token covers: ${describeOp(record)} read at ${JSON.stringify(completion.vc)}, token ${JSON.stringify(token)}`,
        })
        continue
      }
      if (index !== null) {
        const problem = readAnswerProblem(index, op, completion, completion.vc)
        if (problem !== null)
          out.push({
            checker: 'sessions',
            message: `a read's answer is not its state's: ${describeOp(record)} ${problem}`,
          })
      }
    } else if (index !== null && op.type === 'get' && typeof completion.result === 'string') {
      // Without the read's clock: the value read must not be one that the token shows replaced.
      const writer = [...index.byDot.values()].find((change) =>
        change.ops.some((o) => o.type === 'put' && o.key === op.key && o.value === completion.result),
      )
      if (writer !== undefined && index.replacersOf(op.key, writer.dot, token).length > 0) {
        out.push({
          checker: 'sessions',
          message: `a read returned a value its token shows replaced: ${describeOp(record)} (written by ${writer.dot})`,
        })
      }
    }
  }
  return out
}

export function checkStates(context: Context): Violation[] {
  const { index } = context
  if (index === null) return []
  const out: Violation[] = []
  for (const dot of index.conflicts)
    out.push({
      checker: 'state',
      message: `two different changes carry the dot ${dot}: a node reused an identity it had given out`,
    })
  for (const state of context.input.finals) {
    const where = `node ${String(state.node)}`
    const missing = index.missingFrom(state.vc)
    if (missing.length > 0)
      out.push({
        checker: 'state',
        message: `${where}: its clock names changes no log holds: ${missing.slice(0, 5).join(', ')}`,
      })
    for (const key of new Set([...Object.keys(state.kv), ...index.registerKeys()])) {
      const want = index.registerSiblings(key, state.vc)
      const got = [...(state.kv[key]?.siblings ?? [])].sort((a, b) => (a.dot < b.dot ? -1 : a.dot > b.dot ? 1 : 0))
      if (got.length === 0 && isCollectedTombstone(want, context.input.finals)) continue
      if (canonicalJson(got) !== canonicalJson(want))
        out.push({
          checker: 'state',
          message: `${where}: register ${JSON.stringify(key)} holds ${JSON.stringify(got)}, but its changes leave ${JSON.stringify(want)}`,
        })
    }
    for (const name of new Set([...Object.keys(state.counters), ...index.counterNames()])) {
      const want = index.counterValue(name, state.vc)
      if ((state.counters[name] ?? 0) !== want)
        out.push({
          checker: 'state',
          message: `${where}: counter ${JSON.stringify(name)} is ${state.counters[name] ?? 0}, but its increments sum to ${want}`,
        })
    }
    for (const name of new Set([...Object.keys(state.sets), ...index.setNames()])) {
      const want = canonicalJson(Object.fromEntries(index.setState(name, state.vc)))
      const got = canonicalJson(
        Object.fromEntries(Object.entries(state.sets[name] ?? {}).map(([member, dots]) => [member, [...dots].sort()])),
      )
      if (got !== want)
        out.push({
          checker: 'state',
          message: `${where}: set ${JSON.stringify(name)} holds ${got}, but its changes leave ${want}`,
        })
    }
  }
  return out
}

/**
 * Garbage collection may purge a key whose siblings are all tombstones once they are stable; by
 * the end of a run every final node must hold each of those dots (else the purge was early).
 */
function isCollectedTombstone(
  want: readonly { dot: string; value: unknown }[],
  finals: readonly FinalNodeState[],
): boolean {
  if (want.length === 0 || !want.every((sibling) => sibling.value === null)) return false
  return want.every(({ dot }) => {
    const at = dot.lastIndexOf(':')
    const node = dot.slice(0, at)
    const seq = Number(dot.slice(at + 1))
    return finals.every((final) => ((final.vc as Record<string, number>)[node] ?? 0) >= seq)
  })
}

export function checkDurability(context: Context): Violation[] {
  const out: Violation[] = []
  for (const record of context.ops) {
    const { completion } = record
    const op = record.invoke.op
    if (!('w' in op) || completion.kind !== 'ok' || completion.durableHolders === undefined) continue
    const required = completion.required ?? requiredFor(op.w, context.input.members)
    if (completion.durableHolders < required) {
      out.push({
        checker: 'durability',
        message: `acknowledged at w=${String(op.w)} (${required} members) while only ${completion.durableHolders} held it durably: ${describeOp(record)}`,
      })
    }
  }
  return out
}
