/**
 * The checkers over values (docs/testing.md, "Checkers"), for runs whose final states are read
 * through the public API and so carry values but no dots: process chaos (L2). They read the same
 * history as checks.ts (history.ts) and report the same `Violation`s, plus what they measured.
 *
 * - Convergence: the digests read after the final heal are equal.
 * - Registers: every acknowledged put of a unique key (under `uniquePrefix`) is on every node with
 *   its value (w=2, quorum, all: always; w=1: unless the node that acknowledged it was killed
 *   after the write was sent, before it could replicate, which the report counts apart); a failed
 *   put is on no node; no node holds a value nobody wrote. On a contended key an acknowledged put
 *   may be gone only if one of the final siblings is a put that can have committed after it (only
 *   such a put can have seen it and overwritten it).
 * - Counters: final = the acknowledged increments plus at most the unknown ones.
 * - Sets: an acknowledged add is gone only if a remove of that member can have observed it; no
 *   member nobody added.
 * - Sessions: a read carrying the session's token shows the session's last acknowledged put of
 *   that key made before the read, or a put that can have committed after that one.
 *
 * "Can have committed after W" (`mayCommitAfter`): it had not finished when W was invoked, or its
 * outcome is unknown. Invocation order alone is not enough: a request sent to a node that is
 * frozen (SIGSTOP) or slow is applied whenever the node gets to it, which may be after a write
 * invoked later elsewhere has replicated there, and then it observes (and may replace) that write.
 * A remove that came back before the add was invoked, though, cannot have observed it.
 */
import type { Violation } from './checks.js'
import { checkHistoryShape } from './checks.js'
import type { HistoryEvent, NemesisEvent, OperationRecord, WriteConcernSpec } from './history.js'
import { isNemesis, operations } from './history.js'

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
}

export interface ValueCheckInput {
  history: readonly HistoryEvent[]
  finals: readonly NodeValues[]
  /** Keys under this prefix are written once each (the workload's unique keys). */
  uniquePrefix: string
}

export interface LossCount {
  acknowledged: number
  lost: number
  /** w=1 only: lost, but the acknowledging node was killed after the write was sent. */
  excused: number
}

export interface ValueCheckResult {
  violations: Violation[]
  /** Per write concern: acknowledged puts and how many were lost. */
  loss: Record<string, LossCount>
  counters: { name: string; acknowledged: number; unknown: number; final: number[] }[]
  /** `removedByLaterRemove`: acknowledged adds gone through a remove that can have observed them. */
  sets: { name: string; acknowledgedAdds: number; removedByLaterRemove: number; finalMembers: number }[]
  sessions: { readsChecked: number; readsWithToken: number; violations: number }
  failedWritesChecked: number
}

const MAX_LISTED = 20

type Put = OperationRecord & { invoke: { op: { type: 'put'; key: string; value: string; w: WriteConcernSpec } } }

function isPut(record: OperationRecord): record is Put {
  return record.invoke.op.type === 'put'
}

/**
 * Whether `later` can have been committed after `earlier` was: it was still running when
 * `earlier` was invoked, or it may still have been applied at any time since (unknown, open).
 */
export function mayCommitAfter(later: OperationRecord, earlier: OperationRecord): boolean {
  return later.completion.kind === 'unknown' || later.completion.atMs > earlier.invoke.atMs
}

/** The node number behind a URL (`servedBy`), or undefined. */
function nodeOfUrl(finals: readonly NodeValues[], url: string | undefined): number | undefined {
  return finals.find((final) => final.url === url)?.n
}

/** Runs every value checker. */
export function checkValues(input: ValueCheckInput): ValueCheckResult {
  const ops = operations(input.history)
  const kills = input.history.filter(isNemesis).filter((event) => event.fault === 'crash')
  const violations: Violation[] = [...checkHistoryShape({ history: input.history, finals: [], members: 0 })]
  const digests = new Set(input.finals.map((final) => final.digest))
  if (digests.size !== 1)
    violations.push({
      checker: 'convergence',
      message: `digests differ after the final heal: ${input.finals.map((final) => `node ${final.n} ${final.digest}`).join(', ')}`,
    })
  const registers = checkRegisterValues(ops, kills, input)
  const counters = checkCounterValues(ops, input.finals)
  const sets = checkSetValues(ops, input.finals)
  const sessions = checkSessionValues(ops, registers.putByValue)
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
    failedWritesChecked: registers.failedWritesChecked,
  }
}

/** A final sibling that can have overwritten `put`: written by a put that can have committed after it. */
function mayFollow(putByValue: ReadonlyMap<string, Put>, value: string, put: Put): boolean {
  const other = putByValue.get(value)
  return other !== undefined && other !== put && mayCommitAfter(other, put)
}

function checkRegisterValues(ops: readonly OperationRecord[], kills: readonly NemesisEvent[], input: ValueCheckInput) {
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
    const unique = key.startsWith(input.uniquePrefix)
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
          !siblings.some((other) => mayFollow(putByValue, other, put))
        )
          missingOn.push(final.n)
      }
    }
    if (status === 'fail') failedWritesChecked++
    if (missingOn.length === 0) continue
    const count = lossOf(w)
    const servedBy = nodeOfUrl(finals, put.completion.servedBy)
    // Killed any time after the write went out (the kill and the answer may cross).
    if (w === 1 && killedAfter(servedBy, put.invoke.atMs)) {
      count.excused++
      continue
    }
    count.lost++
    if (lostSamples.length < MAX_LISTED)
      lostSamples.push(
        `${key}=${value} (w=${w}, acknowledged by node ${servedBy ?? '?'}) missing on nodes ${missingOn.join(',')}`,
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

function checkCounterValues(ops: readonly OperationRecord[], finals: readonly NodeValues[]) {
  const violations: Violation[] = []
  const names = new Set<string>()
  for (const record of ops) if (record.invoke.op.type === 'incr') names.add(record.invoke.op.name)
  for (const final of finals) for (const name of final.counters.keys()) names.add(name)
  const summary: ValueCheckResult['counters'] = []
  for (const name of [...names].sort()) {
    let acknowledged = 0
    let unknown = 0
    for (const record of ops) {
      const op = record.invoke.op
      if (op.type !== 'incr' || op.name !== name) continue
      if (record.completion.kind === 'ok') acknowledged += op.delta
      else if (record.completion.kind === 'unknown') unknown += op.delta
    }
    const values = finals.map((final) => final.counters.get(name) ?? 0)
    summary.push({ name, acknowledged, unknown, final: values })
    for (const [index, value] of values.entries()) {
      if (value < acknowledged || value > acknowledged + unknown)
        violations.push({
          checker: 'counters',
          message: `counter ${name} is ${value} on node ${finals[index]?.n}: acknowledged increments sum to ${acknowledged}, unknown ones to ${unknown}`,
        })
    }
  }
  return { violations, summary }
}

function checkSetValues(ops: readonly OperationRecord[], finals: readonly NodeValues[]) {
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
    for (const add of adds) {
      if (add.completion.kind !== 'ok') continue
      acknowledgedAdds++
      const member = memberOf(add) as string
      const absentOn = finals.filter((final) => !(final.sets.get(name)?.has(member) ?? false)).map((final) => final.n)
      if (absentOn.length === 0) continue
      if (removes.some((remove) => memberOf(remove) === member && mayCommitAfter(remove, add))) removedByLaterRemove++
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
    summary.push({ name, acknowledgedAdds, removedByLaterRemove, finalMembers: finals[0]?.sets.get(name)?.size ?? 0 })
  }
  return { violations, summary }
}

function checkSessionValues(ops: readonly OperationRecord[], putByValue: ReadonlyMap<string, Put>) {
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
      if (seen.includes(mine.invoke.op.value) || seen.some((value) => mayFollow(putByValue, value, mine))) continue
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
