/**
 * The checkers over values (docs/testing.md, "Checkers"): what the public API shows, no dots. They
 * run in process chaos (L2), whose final states are read over HTTP, and in the simulator (L1) over
 * its final states seen through `valuesOf` (below), beside the dot-level checkers of
 * checks.ts. They read the same history (history.ts) and report the same `Violation`s, plus what
 * they measured.
 *
 * - Convergence: the digests read after the final heal are equal.
 * - Registers: every acknowledged put of a unique key (under `uniquePrefix`) is on every node with
 *   its value (w=2, quorum, all: always; w=1: unless the node that acknowledged it was killed
 *   after the write was sent, before it could replicate, which the report counts apart); a failed
 *   put is on no node; no node holds a value nobody wrote. On a contended key an acknowledged put
 *   may be gone only if one of the final siblings is a put that can have committed after it (only
 *   such a put can have seen it and overwritten it).
 * - Counters: final = the acknowledged increments plus some subset of the unknown ones (the rule of
 *   checks.ts, `subsetSums`; deltas may be negative).
 * - Sets: an acknowledged add is gone only if a remove of that member can have observed it; no
 *   member nobody added.
 * - Clocks (when the finals carry their vector clocks): they are equal after the final heal, as
 *   checks.ts asks; and every final clock covers the token an acknowledged write answered with (the
 *   token-level form of checks.ts's "in the final vector clock"), for each write no crash of
 *   any kind followed (a token names other nodes' changes too, which a crash may excuse).
 * - Sessions: a read carrying the session's token shows the session's last acknowledged put of
 *   that key made before the read, or a put that can have committed after that one.
 *
 * "Can have committed after W" (`mayCommitAfter`): it had not finished when W was invoked, or its
 * outcome is unknown. Invocation order alone is not enough: a request sent to a node that is
 * frozen (SIGSTOP) or slow is applied whenever the node gets to it, which may be after a write
 * invoked later elsewhere has replicated there, and then it observes (and may replace) that write.
 * A remove that came back before the add was invoked, though, cannot have observed it. "Not
 * finished when W was invoked" is read from the order of the history's events, not their times: in
 * the simulator many events share one virtual ms, and a clock's ms says nothing of the order within.
 *
 * Deletes (the simulator's workload; chaos makes none): a put may also be gone through a delete of
 * its key that can have committed after it (a tombstone shows no value).
 *
 * Lossy crashes (the simulator's power losses; chaos kills are never lossy): as in checks.ts, a
 * write acknowledged by k members may be gone if the node it was sent to and at least k members in
 * all suffered a lossy crash after it began; it then counts as unknown (counters) or excused.
 */
import { decodeCausalToken } from '../../src/clock/index.js'
import type { Violation } from './checks.js'
import { canonicalJson, checkHistoryShape, requiredFor, subsetSums } from './checks.js'
import type { FinalNodeState, HistoryEvent, NemesisEvent, OperationRecord, WriteConcernSpec } from './history.js'
import { isCompletion, isInvoke, isNemesis, operations } from './history.js'

/** What one node holds after the final heal, as its public API shows it. */
export interface NodeValues {
  n: number
  url: string
  digest: string
  /** Keys under the unique prefix → value. */
  uniques: Map<string, string>
  /** Contended keys → the values of their siblings (tombstones left out). */
  contended: Map<string, string[]>
  counters: Map<string, number>
  sets: Map<string, Set<string>>
  /** The node's vector clock, when the run read it (chaos: from the digest; saved runs may lack it). */
  vc?: Record<string, number>
}

/**
 * A dot-level final state (the simulator's) as the public API would show it: each register's
 * sibling values (tombstones left out; a key with none is left out, as a read of it shows nothing),
 * each counter's value, each set's members. Keys under `uniquePrefix` go to `uniques` with their
 * plain read (none without a prefix: the simulator's keys are all contended). `n` is the node's
 * label when it is a number, else its position among the finals; `url` is the label.
 */
export function valuesOf(
  final: FinalNodeState,
  options: { position?: number; uniquePrefix?: string } = {},
): NodeValues {
  const { position = 0, uniquePrefix } = options
  const uniques = new Map<string, string>()
  const contended = new Map<string, string[]>()
  for (const [key, { siblings, read }] of Object.entries(final.kv)) {
    if (uniquePrefix !== undefined && key.startsWith(uniquePrefix)) {
      if (read !== null) uniques.set(key, read)
      continue
    }
    const values = siblings.flatMap((sibling) => (sibling.value === null ? [] : [sibling.value]))
    if (values.length > 0) contended.set(key, values)
  }
  const sets = new Map<string, Set<string>>()
  for (const [name, members] of Object.entries(final.sets)) {
    const present = Object.entries(members).filter(([, dots]) => dots.length > 0)
    if (present.length > 0) sets.set(name, new Set(present.map(([member]) => member)))
  }
  return {
    n: typeof final.node === 'number' ? final.node : position,
    url: String(final.node),
    digest: final.digest,
    uniques,
    contended,
    counters: new Map(Object.entries(final.counters)),
    sets,
    vc: { ...final.vc },
  }
}

export interface ValueCheckInput {
  history: readonly HistoryEvent[]
  finals: readonly NodeValues[]
  /**
   * Keys under this prefix are written once each (the workload's unique keys). Absent: every key
   * is contended (the simulator's workload writes a few keys over and over).
   */
  uniquePrefix?: string
  /** Members of the cluster, for w=quorum and w=all when a completion does not say (`required`). */
  members?: number
}

export interface LossCount {
  acknowledged: number
  lost: number
  /**
   * Lost, but excused: w=1 and the acknowledging node was killed after the write was sent, or a
   * lossy crash took it (see above).
   */
  excused: number
}

export interface ValueCheckResult {
  violations: Violation[]
  /** Per write concern: acknowledged puts and how many were lost. */
  loss: Record<string, LossCount>
  counters: { name: string; acknowledged: number; unknown: number; final: number[] }[]
  /**
   * `removedByLaterRemove`: acknowledged adds gone through a remove that can have observed them;
   * `lostToCrashes`: gone, but lossy crashes may have taken them.
   */
  sets: {
    name: string
    acknowledgedAdds: number
    removedByLaterRemove: number
    lostToCrashes: number
    finalMembers: number
  }[]
  sessions: { readsChecked: number; readsWithToken: number; violations: number }
  /**
   * The clock checks: how many final clocks were compared (0: the finals carry none), and how many
   * acknowledged writes' tokens were checked against them or passed over because a crash followed.
   */
  clocks: { compared: number; writesChecked: number; writesAfterCrash: number }
  failedWritesChecked: number
}

const MAX_LISTED = 20

type Put = OperationRecord & { invoke: { op: { type: 'put'; key: string; value: string; w: WriteConcernSpec } } }

function isPut(record: OperationRecord): record is Put {
  return record.invoke.op.type === 'put'
}

/** Where each operation's invoke and completion stand in the history (an open one: never completed). */
export type EventOrder = ReadonlyMap<number, { invoke: number; completion: number }>

export function eventOrder(history: readonly HistoryEvent[]): EventOrder {
  const order = new Map<number, { invoke: number; completion: number }>()
  for (const [position, event] of history.entries()) {
    // Faults, and events of kinds this reader does not know, are passed over.
    if (!isInvoke(event) && !isCompletion(event)) continue
    const entry = order.get(event.id) ?? { invoke: Infinity, completion: Infinity }
    if (isInvoke(event)) entry.invoke = position
    else entry.completion = position
    order.set(event.id, entry)
  }
  return order
}

/**
 * Whether `later` can have been committed after `earlier` was: it was still running when
 * `earlier` was invoked, or it may still have been applied at any time since (unknown, open).
 * With the history's `order`, "still running" is read from the events' order; without it, from
 * their times (a completion in the same ms as the invoke then counts as before it).
 */
export function mayCommitAfter(later: OperationRecord, earlier: OperationRecord, order?: EventOrder): boolean {
  if (later.completion.kind === 'unknown') return true
  if (order === undefined) return later.completion.atMs > earlier.invoke.atMs
  return (order.get(later.invoke.id)?.completion ?? Infinity) > (order.get(earlier.invoke.id)?.invoke ?? Infinity)
}

/** What the value checkers share: the operations, their order, and the lossy crashes. */
class Runs {
  readonly ops: OperationRecord[]
  readonly order: EventOrder
  readonly #lossy: NemesisEvent[]

  constructor(readonly input: ValueCheckInput) {
    this.ops = operations(input.history)
    this.order = eventOrder(input.history)
    this.#lossy = input.history.filter(isNemesis).filter((event) => event.fault === 'crash' && event.lossy === true)
  }

  after(later: OperationRecord, earlier: OperationRecord): boolean {
    return mayCommitAfter(later, earlier, this.order)
  }

  /** Is there a delete of `key`, not failed, that can have committed after `record`? */
  deletedAfter(key: string, record: OperationRecord): boolean {
    return this.ops.some(
      (other) =>
        other.invoke.op.type === 'del' &&
        other.invoke.op.key === key &&
        other.completion.kind !== 'fail' &&
        this.after(other, record),
    )
  }

  /**
   * May the acknowledged write `record` be gone to lossy crashes (checks.ts, `mayBeLost`)? The
   * node it was sent to and as many members as acknowledged it crashed losing data after it began.
   */
  lostToCrashes(record: OperationRecord): boolean {
    if (this.#lossy.length === 0) return false
    const op = record.invoke.op
    if (!('w' in op)) return false
    const required =
      record.completion.required ??
      (typeof op.w === 'number' ? op.w : requiredFor(op.w, this.input.members ?? Number.POSITIVE_INFINITY))
    const crashed = new Set(
      this.#lossy.filter((crash) => crash.atMs >= record.invoke.atMs).flatMap((crash) => crash.nodes.map(String)),
    )
    return crashed.has(String(record.invoke.node)) && crashed.size >= required
  }
}

/** The node number behind a URL (`servedBy`), or undefined. */
function nodeOfUrl(finals: readonly NodeValues[], url: string | undefined): number | undefined {
  return finals.find((final) => final.url === url)?.n
}

/**
 * The final clocks, when the run read them: equal everywhere, and covering the token of every
 * acknowledged write that no crash followed.
 */
function checkClocks(runs: Runs, kills: readonly NemesisEvent[]) {
  const { finals } = runs.input
  const summary: ValueCheckResult['clocks'] = { compared: 0, writesChecked: 0, writesAfterCrash: 0 }
  const clocks = finals.flatMap((final) => (final.vc === undefined ? [] : [{ n: final.n, vc: final.vc }]))
  if (clocks.length === 0 || clocks.length !== finals.length) return { violations: [], summary }
  summary.compared = clocks.length
  const out: Violation[] = []
  if (new Set(clocks.map(({ vc }) => canonicalJson(vc))).size > 1)
    out.push({
      checker: 'convergence',
      message: `vector clocks differ after the final heal: ${clocks.map(({ n, vc }) => `node ${n} ${JSON.stringify(vc)}`).join(', ')}`,
    })
  const samples: string[] = []
  let uncovered = 0
  for (const record of runs.ops) {
    const { invoke, completion } = record
    if (!('w' in invoke.op) || completion.kind !== 'ok' || completion.token === undefined) continue
    if (kills.some((kill) => kill.atMs >= invoke.atMs)) {
      summary.writesAfterCrash++
      continue
    }
    summary.writesChecked++
    let token: Record<string, number>
    try {
      token = decodeCausalToken(completion.token)
    } catch {
      out.push({
        checker: 'history',
        message: `op ${invoke.id} answered a token that does not parse: ${completion.token}`,
      })
      continue
    }
    const short = clocks.filter(({ vc }) => Object.entries(token).some(([node, seq]) => (vc[node] ?? 0) < seq))
    if (short.length === 0) continue
    uncovered++
    if (samples.length < MAX_LISTED)
      samples.push(
        `op ${invoke.id} (${JSON.stringify(invoke.op)}) answered ${JSON.stringify(token)}, beyond the final clock of nodes ${short.map(({ n }) => n).join(',')}`,
      )
  }
  for (const sample of samples)
    out.push({ checker: 'registers', message: `an acknowledged write is not in the final clock: ${sample}` })
  if (uncovered > samples.length)
    out.push({
      checker: 'registers',
      message: `... and ${uncovered - samples.length} more writes not in the final clock`,
    })
  return { violations: out, summary }
}

/** Runs every value checker. */
export function checkValues(input: ValueCheckInput): ValueCheckResult {
  const runs = new Runs(input)
  const kills = input.history.filter(isNemesis).filter((event) => event.fault === 'crash')
  const violations: Violation[] = [...checkHistoryShape({ history: input.history, finals: [], members: 0 })]
  const digests = new Set(input.finals.map((final) => final.digest))
  if (digests.size !== 1)
    violations.push({
      checker: 'convergence',
      message: `digests differ after the final heal: ${input.finals.map((final) => `node ${final.n} ${final.digest}`).join(', ')}`,
    })
  const clocks = checkClocks(runs, kills)
  violations.push(...clocks.violations)
  const registers = checkRegisterValues(runs, kills)
  const counters = checkCounterValues(runs)
  const sets = checkSetValues(runs)
  const sessions = checkSessionValues(runs, registers.putByValue)
  return {
    violations: [
      ...violations,
      ...registers.violations,
      ...counters.violations,
      ...sets.violations,
      ...sessions.violations,
    ],
    loss: registers.loss,
    counters: counters.summary,
    sets: sets.summary,
    sessions: sessions.summary,
    clocks: clocks.summary,
    failedWritesChecked: registers.failedWritesChecked,
  }
}

/** A final sibling that can have overwritten `put`: written by a put that can have committed after it. */
function mayFollow(runs: Runs, putByValue: ReadonlyMap<string, Put>, value: string, put: Put): boolean {
  const other = putByValue.get(value)
  return other !== undefined && other !== put && runs.after(other, put)
}

function checkRegisterValues(runs: Runs, kills: readonly NemesisEvent[]) {
  const { input, ops } = runs
  const { finals } = input
  const violations: Violation[] = []
  const report = (message: string): void => void violations.push({ checker: 'registers', message })
  const loss: Record<string, LossCount> = {}
  const lossOf = (w: WriteConcernSpec): LossCount => (loss[String(w)] ??= { acknowledged: 0, lost: 0, excused: 0 })
  const puts = ops.filter(isPut)
  const putByValue = new Map<string, Put>()
  for (const put of puts) {
    if (putByValue.has(put.invoke.op.value)) throw new Error(`the workload reused the value ${put.invoke.op.value}`)
    putByValue.set(put.invoke.op.value, put)
  }
  const killedAfter = (n: number | undefined, atMs: number): boolean =>
    n !== undefined && kills.some((kill) => kill.nodes.includes(n) && kill.atMs >= atMs)
  let failedWritesChecked = 0
  const lostSamples: string[] = []
  for (const put of puts) {
    const status = put.completion.kind
    const { key, value, w } = put.invoke.op
    const unique = input.uniquePrefix !== undefined && key.startsWith(input.uniquePrefix)
    if (status === 'ok') lossOf(w).acknowledged++
    const missingOn: number[] = []
    for (const final of finals) {
      if (unique) {
        const held = final.uniques.get(key)
        if (status === 'ok' && held !== value) missingOn.push(final.n)
        if (status === 'fail' && held !== undefined)
          report(`node ${final.n} holds ${key}=${held}, written by a put that failed (${put.completion.code ?? '?'})`)
        if (held !== undefined && held !== value)
          report(`node ${final.n} holds ${key}=${held}, but the only put of ${key} wrote ${value}`)
      } else {
        const siblings = final.contended.get(key) ?? []
        if (status === 'fail' && siblings.includes(value))
          report(
            `node ${final.n} holds ${value} on ${key}, written by a put that failed (${put.completion.code ?? '?'})`,
          )
        if (
          status === 'ok' &&
          !siblings.includes(value) &&
          !siblings.some((other) => mayFollow(runs, putByValue, other, put)) &&
          !runs.deletedAfter(key, put)
        )
          missingOn.push(final.n)
      }
    }
    if (status === 'fail') failedWritesChecked++
    if (missingOn.length === 0) continue
    const count = lossOf(w)
    const servedBy = nodeOfUrl(finals, put.completion.servedBy)
    // Killed any time after the write went out (the kill and the answer may cross).
    if ((w === 1 && killedAfter(servedBy, put.invoke.atMs)) || runs.lostToCrashes(put)) {
      count.excused++
      continue
    }
    count.lost++
    if (lostSamples.length < MAX_LISTED)
      lostSamples.push(
        `${key}=${value} (w=${w}, acknowledged by node ${servedBy ?? String(put.invoke.node)}) missing on nodes ${missingOn.join(',')}`,
      )
  }
  for (const sample of lostSamples) report(`acknowledged write lost: ${sample}`)
  const lostTotal = Object.values(loss).reduce((sum, count) => sum + count.lost, 0)
  if (lostTotal > lostSamples.length) report(`... and ${lostTotal - lostSamples.length} more acknowledged writes lost`)
  // No node holds a value nobody wrote (or a value written to another key).
  for (const final of finals) {
    for (const [key, held] of final.uniques) {
      const put = putByValue.get(held)
      if (put === undefined || put.invoke.op.key !== key)
        report(`node ${final.n} holds ${key}=${held}, which no put wrote`)
    }
    for (const [key, siblings] of final.contended) {
      for (const held of siblings) {
        const put = putByValue.get(held)
        if (put === undefined || put.invoke.op.key !== key)
          report(`node ${final.n} holds ${held} on ${key}, which no put wrote`)
      }
    }
  }
  return { violations, loss, failedWritesChecked, putByValue }
}

function checkCounterValues(runs: Runs) {
  const { ops } = runs
  const { finals } = runs.input
  const violations: Violation[] = []
  const names = new Set<string>()
  for (const record of ops) if (record.invoke.op.type === 'incr') names.add(record.invoke.op.name)
  for (const final of finals) for (const name of final.counters.keys()) names.add(name)
  const summary: ValueCheckResult['counters'] = []
  for (const name of [...names].sort()) {
    let acknowledged = 0
    const unknowns: number[] = []
    for (const record of ops) {
      const op = record.invoke.op
      if (op.type !== 'incr' || op.name !== name) continue
      // An acknowledged increment a lossy crash may have taken is as good as unknown.
      if (record.completion.kind === 'ok' && !runs.lostToCrashes(record)) acknowledged += op.delta
      else if (record.completion.kind !== 'fail') unknowns.push(op.delta)
    }
    const unknown = unknowns.reduce((sum, delta) => sum + delta, 0)
    const values = finals.map((final) => final.counters.get(name) ?? 0)
    summary.push({ name, acknowledged, unknown, final: values })
    const sums = subsetSums(unknowns)
    for (const [index, value] of values.entries()) {
      if (!sums.has(value - acknowledged))
        violations.push({
          checker: 'counters',
          message: `counter ${name} is ${value} on node ${finals[index]?.n}: acknowledged increments sum to ${acknowledged}, and no subset of the ${unknowns.length} unknown ones (${JSON.stringify(unknowns.slice(0, 20))}, sum ${unknown}) makes up the difference ${value - acknowledged}`,
        })
    }
  }
  return { violations, summary }
}

function checkSetValues(runs: Runs) {
  const { ops } = runs
  const { finals } = runs.input
  const violations: Violation[] = []
  const report = (message: string): void => void violations.push({ checker: 'sets', message })
  const names = new Set<string>()
  for (const { invoke } of ops) if (invoke.op.type === 'sadd' || invoke.op.type === 'srem') names.add(invoke.op.name)
  const summary: ValueCheckResult['sets'] = []
  const ofSet = (type: 'sadd' | 'srem', name: string): OperationRecord[] =>
    ops.filter(
      ({ invoke, completion }) => invoke.op.type === type && invoke.op.name === name && completion.kind !== 'fail',
    )
  const memberOf = (record: OperationRecord): string | undefined =>
    'member' in record.invoke.op ? record.invoke.op.member : undefined
  for (const name of [...names].sort()) {
    const adds = ofSet('sadd', name)
    const removes = ofSet('srem', name)
    let acknowledgedAdds = 0
    let removedByLaterRemove = 0
    let lostToCrashes = 0
    for (const add of adds) {
      if (add.completion.kind !== 'ok') continue
      acknowledgedAdds++
      const member = memberOf(add) as string
      const absentOn = finals.filter((final) => !(final.sets.get(name)?.has(member) ?? false)).map((final) => final.n)
      if (absentOn.length === 0) continue
      if (removes.some((remove) => memberOf(remove) === member && runs.after(remove, add))) removedByLaterRemove++
      else if (runs.lostToCrashes(add)) lostToCrashes++
      else
        report(
          `set ${name}: the acknowledged add of ${member} is gone on nodes ${absentOn.join(',')}, and no remove of it can have observed it`,
        )
    }
    for (const final of finals) {
      for (const member of final.sets.get(name) ?? []) {
        if (!adds.some((add) => memberOf(add) === member))
          report(`set ${name} on node ${final.n} holds ${member}, which no add that may have run added`)
      }
    }
    summary.push({
      name,
      acknowledgedAdds,
      removedByLaterRemove,
      lostToCrashes,
      finalMembers: finals[0]?.sets.get(name)?.size ?? 0,
    })
  }
  return { violations, summary }
}

function checkSessionValues(runs: Runs, putByValue: ReadonlyMap<string, Put>) {
  const { ops } = runs
  const byClient = new Map<number, OperationRecord[]>()
  for (const record of ops) {
    const list = byClient.get(record.invoke.client) ?? []
    list.push(record)
    byClient.set(record.invoke.client, list)
  }
  const samples: string[] = []
  const summary = { readsChecked: 0, readsWithToken: 0, violations: 0 }
  for (const [client, list] of byClient) {
    for (const read of list) {
      const op = read.invoke.op
      if (op.type !== 'get' || read.completion.kind !== 'ok' || op.token === null) continue
      summary.readsWithToken++
      // The session's last acknowledged put of this key, acknowledged before the read began.
      let own: Put | undefined
      for (const record of list) {
        if (
          isPut(record) &&
          record.invoke.op.key === op.key &&
          record.completion.kind === 'ok' &&
          record.completion.atMs <= read.invoke.atMs &&
          (own === undefined || record.invoke.atMs > own.invoke.atMs)
        )
          own = record
      }
      if (own === undefined) continue
      summary.readsChecked++
      const result = read.completion.result
      const seen = read.completion.siblings ?? (typeof result === 'string' ? [result] : [])
      const mine = own
      if (
        seen.includes(mine.invoke.op.value) ||
        seen.some((value) => mayFollow(runs, putByValue, value, mine)) ||
        runs.deletedAfter(op.key, mine) ||
        runs.lostToCrashes(mine)
      )
        continue
      summary.violations++
      if (samples.length < MAX_LISTED)
        samples.push(
          `session ${client}: read ${read.invoke.id} of ${op.key} on ${read.completion.servedBy ?? '?'} saw ${JSON.stringify(seen)}, missing its own write ${mine.invoke.op.value} (put ${mine.invoke.id})`,
        )
    }
  }
  const violations: Violation[] = samples.map((sample) => ({
    checker: 'sessions',
    message: `session read missed a write its token covers: ${sample}`,
  }))
  if (summary.violations > samples.length)
    violations.push({
      checker: 'sessions',
      message: `... and ${summary.violations - samples.length} more session reads that missed a write`,
    })
  return { violations, summary }
}
