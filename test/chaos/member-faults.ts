/**
 * The two chaos faults that change who a node is (issue 12, part 5), applied by faults.ts's
 * `FaultRunner` on the process track:
 * - a clone: a node's directory copied while it is frozen (as a restore's is), and a second
 *   process started on the copy with the same node id beside the original. Both must be told
 *   (4009, seqGuard `conflict`) and refuse writes (409 MESHKV_ERR_NODE_ID_CONFLICT); then the clone
 *   is stopped for good, its directory thrown away, and the original restarted (the way out,
 *   docs/architecture.md "Own sequence numbers"). No w=1 write is ever sent to the clone before it
 *   is told: it happens in practice that the clone's seq guard turns writable (its grace, 2 peer
 *   timeouts, passes while the members still refuse it as a possible restart, 4000) seconds before
 *   the members can tell it is a clone (4009), and a w=1 write it takes then is acknowledged under
 *   a seq the original has used, and lost with the clone's directory. The run checks that the clone leaks
 *   nothing into the cluster and that the original loses nothing (its writes are checked at every
 *   write concern: its restart is a SIGTERM, not a crash the checkers would excuse). Until it is
 *   told, the clone is sent writes at w=2 only, recorded: one acknowledged would mean a member
 *   took the clone's link and a change under a seq the original has used, and fails the run.
 *   Once both are told, one write at w=1 is sent to each and recorded: both must fail;
 * - a live forget: a member still taking writes is forgotten through another member
 *   (`DELETE /v1/members/{id}?force=true`) and stopped for good a little later. A w=1 write only
 *   it held is lost by design (docs/architecture.md, "Membership"), and the chaos checkers cannot
 *   tell which of its writes those were (a kill excuses all its w=1 writes, more than the design
 *   loses). So the fault is shaped to lose nothing: from `FORGET_WINDOW_MS` before the forget the
 *   workload writes at w >= 2 only, no partition runs, and the forget waits until every survivor
 *   holds every change the member had made by then (its earlier w=1 writes included). Its retiring
 *   is recorded as `retire`, not as a crash: no write it acknowledged may be missing on the
 *   survivors, which are the nodes checked at the end.
 */
import { rm } from 'node:fs/promises'
import type { Cluster, ClusterNode } from '../cluster/helpers.js'
import { put, request, waitFor } from '../cluster/helpers.js'
import type { HistoryWriter } from '../checkers/history.js'
import { UNIQUE_PREFIX } from './workload.js'

/** What a fault of this file needs from its runner. */
export interface MemberFaultContext {
  cluster: Cluster
  history: HistoryWriter
  /** Nodes gone for good (a forgotten member, a clone): neither restarted nor checked at the end. */
  retired: Set<number>
  /** Sets whether the workload writes at w >= 2 only. */
  atLeastTwo: (on: boolean) => void
  /** Sleeps until `atMs`, or until the run stops; true when it stopped. */
  sleepUntil: (atMs: number) => Promise<boolean>
}

/** How long both processes of a clone may take to be told (4009). */
const FOUND_OUT_MS = 30_000
/** How long a forget may wait for the survivors to hold the member's changes. */
const SURVIVORS_MS = 15_000
/** The history's client number for the writes this file sends itself. */
const CLIENT = 1_000

let probes = 0

function guardState(status: Record<string, unknown> | null): string | undefined {
  return (status?.['seqGuard'] as { state?: string } | undefined)?.state
}

/**
 * One write of a fresh unique key through `node`, recorded in the history as any client's: the
 * checkers then hold it to its outcome (a failed write must be on no node).
 */
async function probeWrite(history: HistoryWriter, node: ClusterNode, w: 1 | 2): Promise<number> {
  const key = `${UNIQUE_PREFIX}probe/${probes}`
  const value = `probe-${probes++}`
  const invoke = history.invoke(CLIENT, node.url, { type: 'put', key, value, w })
  const answer = await put(node.url, key, value, { w: String(w), timeout_ms: '1000' }).catch(() => null)
  if (answer === null) history.complete({ kind: 'unknown', id: invoke.id, code: 'unreachable', servedBy: node.url })
  else if (answer.status === 200) history.complete({ kind: 'ok', id: invoke.id, servedBy: node.url })
  else
    history.complete({
      kind: answer.status >= 400 && answer.status < 500 ? 'fail' : 'unknown',
      id: invoke.id,
      code: String(answer.json?.['code'] ?? answer.status),
      servedBy: node.url,
    })
  return answer?.status ?? 0
}

/** A clone of node `n` beside it until both are told and `untilMs` came; then the way out. */
export async function cloneBeside(ctx: MemberFaultContext, n: number, untilMs: number): Promise<void> {
  const { cluster, history } = ctx
  const original = cluster.node(n)
  history.fault('pause', [n], 'SIGSTOP to copy its directory for a clone')
  original.suspend()
  let clone: ClusterNode
  try {
    clone = await cluster.cloneNode(n, { frozen: true })
  } finally {
    original.continue()
  }
  history.fault('resume', [n], 'SIGCONT, its directory copied')
  ctx.retired.add(clone.n)
  const started = Date.now()
  history.fault('clone', [n, clone.n], `node ${clone.n} runs node ${n}'s copy, same node id`)
  clone.spawn()
  // What the clone's seq guard went through before it was told (writable: past its grace, it
  // would have taken writes under seqs the original had used).
  const seen = new Set<string>()
  try {
    const outcome = await waitFor(
      `both processes of node ${n} (${n} and its clone ${clone.n}) to be told`,
      FOUND_OUT_MS,
      async () => {
        const states = await Promise.all([original, clone].map(async (node) => guardState(await node.status())))
        if (states[1] !== undefined) seen.add(states[1])
        if (states.every((state) => state === 'conflict')) return 'told'
        // Until it is told, the clone can have a write acknowledged at w=2 only if a member took its
        // link, and with it a change under a seq the original has used (or will): the fault failed.
        if (states[1] !== 'conflict' && (await probeWrite(history, clone, 2)) === 200) return 'leaked'
        return undefined
      },
    )
    if (outcome === 'leaked')
      throw new Error(`the clone of node ${n} had a write acknowledged at w=2 before it was told`)
    history.fault(
      'conflict',
      [n, clone.n],
      `both told ${Date.now() - started} ms after the clone started; the clone's seq guard was ${[...seen].join(', ')}`,
    )
    const refused = [await probeWrite(history, original, 1), await probeWrite(history, clone, 1)]
    if (refused.some((status) => status !== 409))
      throw new Error(`a clone and its original must refuse writes (409), they answered ${refused.join(', ')}`)
    await ctx.sleepUntil(untilMs)
  } finally {
    history.fault('retire', [clone.n], 'the clone stopped for good, its directory thrown away')
    if (clone.running) await clone.kill('SIGKILL')
    await rm(clone.dir, { recursive: true, force: true })
  }
  history.fault('restart', [n], 'SIGTERM and start again: the way out of a clone')
  await original.kill('SIGTERM')
  await cluster.restart(n)
  history.fault('ready', [n])
}

/** The members still in the run other than `n`, running. */
function survivorsOf(ctx: MemberFaultContext, n: number): ClusterNode[] {
  return ctx.cluster.nodes.filter((node) => node.n !== n && !ctx.retired.has(node.n) && node.running)
}

/**
 * Forgets member `n` through another member once every survivor holds what `n` made; stops it
 * for good at `untilMs`. The workload writes at w >= 2 from the window's start (the caller's).
 */
export async function forgetLive(ctx: MemberFaultContext, n: number, untilMs: number): Promise<void> {
  try {
    await forgetAndRetire(ctx, n, untilMs)
  } finally {
    ctx.atLeastTwo(false)
  }
}

async function forgetAndRetire(ctx: MemberFaultContext, n: number, untilMs: number): Promise<void> {
  const { history } = ctx
  const member = ctx.cluster.node(n)
  const id = (await member.status()).nodeId
  const made = (await member.status()).vc[id] ?? 0
  const survivors = survivorsOf(ctx, n)
  await waitFor(`every survivor to hold node ${n}'s changes up to ${made}`, SURVIVORS_MS, async () => {
    const held = await Promise.all(survivors.map(async (node) => (await node.status()).vc[id] ?? 0))
    return held.every((seq) => seq >= made) ? true : undefined
  })
  const forgetter = survivors[0]
  if (forgetter === undefined) throw new Error(`no member left to forget node ${n} through`)
  const answer = await waitFor(`node ${forgetter.n} to forget node ${n}`, SURVIVORS_MS, async () => {
    const tried = await request(`${forgetter.url}/v1/members/${id}?force=true`, { method: 'DELETE' })
    return tried.status === 200 ? tried : undefined
  })
  history.fault('forget', [n, forgetter.n], `live, through node ${forgetter.n} (${answer.status}), after seq ${made}`)
  await ctx.sleepUntil(untilMs)
  const told = (await member.status().catch(() => null))?.['forgotten']
  history.fault('retire', [n], `stopped for good; it knew it was forgotten: ${JSON.stringify(told ?? null)}`)
  ctx.retired.add(n)
  await member.kill('SIGTERM')
}
