/**
 * The checkers of a chaos run, over its history (the shared format) and the state each node holds
 * once every fault is healed and the digests are equal. Each returns what it measured and the
 * violations it found; a run passes when there are none.
 *
 * - Registers: every acknowledged put of a unique key is on every node with its value (w=2,
 *   quorum, all: always; w=1: unless the node that acknowledged it was killed after the write
 *   was sent, before it could replicate, which the report counts apart); a failed put is on no node; no node holds a
 *   value nobody wrote. On a contended key an acknowledged put may be gone only if one of the
 *   final siblings is a put that can have committed after it (only such a put can have seen it
 *   and overwritten it).
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
import type { WriteConcernSpec } from '../checkers/history.js'
import type { FaultEvent, OpRecord } from './history.js'
import { UNIQUE_PREFIX } from './workload.js'

/** What one node holds after the final heal. */
export interface NodeFinal {
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

export interface LossCount {
  acknowledged: number
  lost: number
  /** w=1 only: lost, but the acknowledging node was killed after the write was sent. */
  excused: number
}

export interface CheckResult {
  violations: string[]
  /** Per write concern: acknowledged puts and how many were lost. */
  loss: Record<string, LossCount>
  counters: { name: string; acknowledged: number; unknown: number; final: number[] }[]
  /** `removedByLaterRemove`: acknowledged adds gone through a remove that can have observed them. */
  sets: { name: string; acknowledgedAdds: number; removedByLaterRemove: number; finalMembers: number }[]
  sessions: { readsChecked: number; readsWithToken: number; violations: number }
  failedWritesChecked: number
}

const MAX_LISTED = 20

type Put = OpRecord & { op: { type: 'put'; key: string; value: string; w: WriteConcernSpec } }

function isPut(record: OpRecord): record is Put {
  return record.op.type === 'put'
}

/**
 * Whether `later` can have been committed after `earlier` was: it was still running when
 * `earlier` was invoked, or it may still have been applied at any time since (unknown, open).
 */
export function mayCommitAfter(later: OpRecord, earlier: OpRecord): boolean {
  const end = later.end
  if (end === undefined || end.kind === 'unknown') return true
  return end.atMs > earlier.invokedMs
}

function statusOf(record: OpRecord): 'ok' | 'fail' | 'unknown' | 'open' {
  return record.end?.kind ?? 'open'
}

/** The node number behind a URL (`servedBy`), or undefined. */
function nodeOfUrl(finals: readonly NodeFinal[], url: string | undefined): number | undefined {
  return finals.find((final) => final.url === url)?.n
}

export function checkRun(
  ops: readonly OpRecord[],
  faultEvents: readonly FaultEvent[],
  finals: readonly NodeFinal[],
): CheckResult {
  const violations: string[] = []
  const report = (message: string): void => {
    violations.push(message)
  }
  const loss: Record<string, LossCount> = {}
  const lossOf = (w: WriteConcernSpec): LossCount => (loss[String(w)] ??= { acknowledged: 0, lost: 0, excused: 0 })

  // Digests: the caller waited for equality; check it holds in what was read.
  const digests = new Set(finals.map((final) => final.digest))
  if (digests.size !== 1)
    report(
      `digests differ after the final heal: ${finals.map((final) => `node ${final.n} ${final.digest}`).join(', ')}`,
    )

  const puts = ops.filter(isPut)
  const putByValue = new Map<string, Put>()
  for (const put of puts) {
    if (putByValue.has(put.op.value)) throw new Error(`the workload reused the value ${put.op.value}`)
    putByValue.set(put.op.value, put)
  }
  /** A final sibling that can have overwritten `put`: written by a put that can have committed after it. */
  const mayFollow = (value: string, put: Put): boolean => {
    const other = putByValue.get(value)
    return other !== undefined && other !== put && mayCommitAfter(other, put)
  }
  const kills = faultEvents.filter((event) => event.fault === 'crash')
  const killedAfter = (n: number | undefined, atMs: number): boolean =>
    n !== undefined && kills.some((kill) => kill.nodes.includes(n) && kill.atMs >= atMs)

  // --- Registers ---------------------------------------------------------------------------------
  let failedWritesChecked = 0
  const lostSamples: string[] = []
  for (const put of puts) {
    const status = statusOf(put)
    const { key, value, w } = put.op
    const unique = key.startsWith(UNIQUE_PREFIX)
    if (status === 'ok') lossOf(w).acknowledged++
    const missingOn: number[] = []
    for (const final of finals) {
      if (unique) {
        const held = final.uniques.get(key)
        if (status === 'ok' && held !== value) missingOn.push(final.n)
        if (status === 'fail' && held !== undefined)
          report(`node ${final.n} holds ${key}=${held}, written by a put that failed (${put.end?.code ?? '?'})`)
        if (held !== undefined && held !== value)
          report(`node ${final.n} holds ${key}=${held}, but the only put of ${key} wrote ${value}`)
      } else {
        const siblings = final.contended.get(key) ?? []
        if (status === 'fail' && siblings.includes(value))
          report(`node ${final.n} holds ${value} on ${key}, written by a put that failed (${put.end?.code ?? '?'})`)
        if (status === 'ok' && !siblings.includes(value) && !siblings.some((other) => mayFollow(other, put))) {
          missingOn.push(final.n)
        }
      }
    }
    if (status === 'fail') failedWritesChecked++
    if (missingOn.length === 0) continue
    const count = lossOf(w)
    const servedBy = nodeOfUrl(finals, put.end?.servedBy)
    // Killed any time after the write went out (the kill and the answer may cross).
    if (w === 1 && killedAfter(servedBy, put.invokedMs)) {
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
      if (put === undefined || put.op.key !== key) report(`node ${final.n} holds ${key}=${held}, which no put wrote`)
    }
    for (const [key, siblings] of final.contended) {
      for (const held of siblings) {
        const put = putByValue.get(held)
        if (put === undefined || put.op.key !== key)
          report(`node ${final.n} holds ${held} on ${key}, which no put wrote`)
      }
    }
  }

  // --- Counters ----------------------------------------------------------------------------------
  const counterNames = new Set<string>()
  for (const record of ops) if (record.op.type === 'incr') counterNames.add(record.op.name)
  for (const final of finals) for (const name of final.counters.keys()) counterNames.add(name)
  const counters: CheckResult['counters'] = []
  for (const name of [...counterNames].sort()) {
    let acknowledged = 0
    let unknown = 0
    for (const record of ops) {
      if (record.op.type !== 'incr' || record.op.name !== name) continue
      const status = statusOf(record)
      if (status === 'ok') acknowledged += record.op.delta
      else if (status === 'unknown' || status === 'open') unknown += record.op.delta
    }
    const values = finals.map((final) => final.counters.get(name) ?? 0)
    counters.push({ name, acknowledged, unknown, final: values })
    for (const [index, value] of values.entries()) {
      if (value < acknowledged || value > acknowledged + unknown) {
        report(
          `counter ${name} is ${value} on node ${finals[index]?.n}: acknowledged increments sum to ${acknowledged}, unknown ones to ${unknown}`,
        )
      }
    }
  }

  // --- Sets --------------------------------------------------------------------------------------
  const setNames = new Set<string>()
  for (const record of ops) if (record.op.type === 'sadd' || record.op.type === 'srem') setNames.add(record.op.name)
  const sets: CheckResult['sets'] = []
  for (const name of [...setNames].sort()) {
    const adds = ops.filter((record) => record.op.type === 'sadd' && record.op.name === name)
    const removes = ops.filter(
      (record) => record.op.type === 'srem' && record.op.name === name && statusOf(record) !== 'fail',
    )
    let acknowledgedAdds = 0
    let removedByLaterRemove = 0
    for (const add of adds) {
      if (add.op.type !== 'sadd' || statusOf(add) !== 'ok') continue
      acknowledgedAdds++
      const member = add.op.member
      const absentOn = finals.filter((final) => !(final.sets.get(name)?.has(member) ?? false)).map((final) => final.n)
      if (absentOn.length === 0) continue
      const observed = removes.some(
        (remove) => remove.op.type === 'srem' && remove.op.member === member && mayCommitAfter(remove, add),
      )
      if (observed) removedByLaterRemove++
      else
        report(
          `set ${name}: the acknowledged add of ${member} is gone on nodes ${absentOn.join(',')}, and no remove of it can have observed it`,
        )
    }
    for (const final of finals) {
      for (const member of final.sets.get(name) ?? []) {
        const added = adds.some((add) => add.op.type === 'sadd' && add.op.member === member && statusOf(add) !== 'fail')
        if (!added) report(`set ${name} on node ${final.n} holds ${member}, which no add that may have run added`)
      }
    }
    sets.push({ name, acknowledgedAdds, removedByLaterRemove, finalMembers: finals[0]?.sets.get(name)?.size ?? 0 })
  }

  // --- Sessions ----------------------------------------------------------------------------------
  let readsChecked = 0
  let readsWithToken = 0
  const byClient = new Map<number, OpRecord[]>()
  for (const record of ops) {
    const list = byClient.get(record.client) ?? []
    list.push(record)
    byClient.set(record.client, list)
  }
  const sessionSamples: string[] = []
  let sessionViolations = 0
  for (const [client, list] of byClient) {
    for (const read of list) {
      if (read.op.type !== 'get' || statusOf(read) !== 'ok') continue
      if (read.op.token === null) continue
      readsWithToken++
      const key = read.op.key
      // The session's last acknowledged put of this key, acknowledged before the read began.
      let own: Put | undefined
      for (const record of list) {
        if (
          isPut(record) &&
          record.op.key === key &&
          statusOf(record) === 'ok' &&
          (record.end?.atMs ?? Infinity) <= read.invokedMs
        ) {
          if (own === undefined || record.invokedMs > own.invokedMs) own = record
        }
      }
      if (own === undefined) continue
      readsChecked++
      const seen = read.end?.siblings ?? (typeof read.end?.result === 'string' ? [read.end.result] : [])
      const covered = seen.includes(own.op.value) || seen.some((value) => mayFollow(value, own))
      if (covered) continue
      sessionViolations++
      if (sessionSamples.length < MAX_LISTED) {
        sessionSamples.push(
          `session ${client}: read ${read.id} of ${key} on ${read.end?.servedBy ?? '?'} saw ${JSON.stringify(seen)}, missing its own write ${own.op.value} (put ${own.id})`,
        )
      }
    }
  }
  for (const sample of sessionSamples) report(`session read missed a write its token covers: ${sample}`)
  if (sessionViolations > sessionSamples.length)
    report(`... and ${sessionViolations - sessionSamples.length} more session reads that missed a write`)

  return {
    violations,
    loss,
    counters,
    sets,
    sessions: { readsChecked, readsWithToken, violations: sessionViolations },
    failedWritesChecked,
  }
}
