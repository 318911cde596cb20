/**
 * replication_lag.stages: where the lag of one write goes, from the stage trace of nodes run with
 * `MESHKV_TRACE_STAGES=1` (src/cli/stage-trace.ts). For each write to the origin and each observer
 * node, four stages that add up to the write's lag there:
 *
 * - `ack_to_sent`: the driver read the PUT's answer → the origin handed the `changes` frame holding
 *   it to the observer's link (negative when the frame left before the answer was read);
 * - `sent_to_received`: → the observer decoded that frame;
 * - `received_to_applied`: → the observer's commit holding it was durable;
 * - `applied_to_seen`: → the driver read the observer's SSE event for it.
 *
 * Both the nodes and this driver read CLOCK_MONOTONIC, one clock for every process of the machine
 * (the driver's `performance.now()` differs from it by a constant). Also kept, from the origin's own
 * commit: `origin_commit_to_ack` and `origin_commit_to_sent`. A write is matched through its dot,
 * read from the PUT's entity tag (a fresh key's version is its one dot).
 */
import type { StageRecord } from '../../src/cli/stage-trace.js'
import { monotonicMs } from '../../src/cli/stage-trace.js'
import { decodeVersion } from '../../src/clock/index.js'
import type { MeshkvNode } from './cluster.js'
import { round } from './report.js'

/** Add to a `performance.now()` reading of this process to get the nodes' trace clock. */
const PERF_TO_MONOTONIC = monotonicMs() - performance.now()

/** What one node's trace says of each dot: sent to which peer when, received first when and from whom, committed when. */
export interface NodeTrace {
  sent: Map<string, Map<string, number>>
  received: Map<string, { peer: string; atMs: number }>
  committed: Map<string, number>
  dropped: number
}

/** Asks a traced node for what it recorded since the last ask (and makes it forget that). */
export async function takeTrace(node: MeshkvNode, ms = 30_000): Promise<NodeTrace> {
  const proc = node.proc
  if (proc === undefined || !proc.running) throw new Error(`node ${node.n} is not running`)
  const answer = proc.waitLine((line) => line.startsWith('{"stageTrace"'), ms, 'stage trace')
  proc.child.stdin.write('\n')
  const parsed = JSON.parse(await answer) as { stageTrace: { records: StageRecord[]; dropped: number } }
  const trace: NodeTrace = { sent: new Map(), received: new Map(), committed: new Map(), dropped: 0 }
  trace.dropped = parsed.stageTrace.dropped
  for (const [kind, peer, atMs, dots] of parsed.stageTrace.records) {
    for (const dot of dots) {
      if (kind === 'committed') {
        if (!trace.committed.has(dot)) trace.committed.set(dot, atMs)
      } else if (kind === 'received') {
        if (!trace.received.has(dot)) trace.received.set(dot, { peer: peer as string, atMs })
      } else {
        let byPeer = trace.sent.get(dot)
        if (byPeer === undefined) trace.sent.set(dot, (byPeer = new Map()))
        if (!byPeer.has(peer as string)) byPeer.set(peer as string, atMs)
      }
    }
  }
  return trace
}

/** One write as the driver saw it: its dot (`node:seq`) and when its answer was read (performance.now()). */
export interface TracedWrite {
  key: string
  dot: string
  ackMs: number
}

/** The dot of a fresh key's write from its entity tag, or undefined when it names not exactly one. */
export function dotOfEtag(etag: string | undefined): string | undefined {
  if (etag === undefined) return undefined
  const dots = decodeVersion(etag.replace(/^W\//, '').replaceAll('"', ''))
  return dots.length === 1 ? `${dots[0]?.node}:${dots[0]?.seq}` : undefined
}

export interface StageSummary {
  p50_ms: number
  p99_ms: number
  max_ms: number
  negative: number
}

/** Percentiles by nearest rank over signed samples (a stage may be negative: see the header). */
export function signedSummary(samples: number[]): StageSummary {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0
  return {
    p50_ms: round(at(50), 3),
    p99_ms: round(at(99), 3),
    max_ms: round(sorted[sorted.length - 1] ?? 0, 3),
    negative: sorted.filter((value) => value < 0).length,
  }
}

const STAGES = [
  'ack_to_sent',
  'sent_to_received',
  'received_to_applied',
  'applied_to_seen',
  'origin_commit_to_ack',
  'origin_commit_to_sent',
] as const

/**
 * The stages of every write on every observer. `traces` and `ids` by node (the origin's included);
 * `observers` are indexes into them, with `seen[i]` the SSE read times (performance.now()) by key
 * on `observers[i]`. Samples missing a record anywhere are counted as `incomplete`.
 */
export function stagesOf(
  writes: readonly TracedWrite[],
  origin: number,
  observers: readonly number[],
  traces: readonly NodeTrace[],
  ids: readonly string[],
  seen: readonly Map<string, number>[],
): Record<string, unknown> {
  const samples = Object.fromEntries(STAGES.map((stage) => [stage, [] as number[]])) as Record<
    (typeof STAGES)[number],
    number[]
  >
  let incomplete = 0
  let viaOtherPeer = 0
  const originTrace = traces[origin] as NodeTrace
  for (const write of writes) {
    const ack = write.ackMs + PERF_TO_MONOTONIC
    observers.forEach((observer, index) => {
      const trace = traces[observer] as NodeTrace
      const received = trace.received.get(write.dot)
      const from = received === undefined ? -1 : ids.indexOf(received.peer)
      const sent = traces[from]?.sent.get(write.dot)?.get(ids[observer] as string)
      const applied = trace.committed.get(write.dot)
      const seenAt = seen[index]?.get(write.key)
      const originCommit = originTrace.committed.get(write.dot)
      if (received === undefined || sent === undefined || applied === undefined || seenAt === undefined) {
        incomplete++
        return
      }
      if (from !== origin) viaOtherPeer++
      samples.ack_to_sent.push(sent - ack)
      samples.sent_to_received.push(received.atMs - sent)
      samples.received_to_applied.push(applied - received.atMs)
      samples.applied_to_seen.push(seenAt + PERF_TO_MONOTONIC - applied)
      if (originCommit !== undefined) {
        samples.origin_commit_to_ack.push(ack - originCommit)
        samples.origin_commit_to_sent.push(sent - originCommit)
      }
    })
  }
  return {
    ...Object.fromEntries(STAGES.map((stage) => [stage, signedSummary(samples[stage])])),
    samples: samples.ack_to_sent.length,
    incomplete,
    via_other_peer: viaOtherPeer,
    dropped_records: traces.reduce((sum, trace) => sum + trace.dropped, 0),
    clock: 'CLOCK_MONOTONIC (process.hrtime) in the nodes and the driver; stages of one sample add up to its lag',
  }
}

/** Told of each ack (with its entity tag) and each first SSE event per observer (0: node 2, 1: node 3, 2: node 1). */
export interface LagProbe {
  onAck(key: string, atMs: number, etag: string | undefined): void
  onSeen(observer: number, key: string, atMs: number): void
}

/**
 * Runs `run` (a lag run writing to node 1 and watching nodes 2 and 3 first) on traced `nodes`, with
 * a probe; returns its result and the stages of its writes. What the nodes recorded before is
 * asked for first and left out.
 */
export async function withStages<T>(
  nodes: readonly MeshkvNode[],
  run: (probe: LagProbe) => Promise<T>,
): Promise<{ result: T; stages: Record<string, unknown> }> {
  await Promise.all(nodes.map((node) => takeTrace(node)))
  const writes: TracedWrite[] = []
  const seen = [new Map<string, number>(), new Map<string, number>()]
  let untagged = 0
  const result = await run({
    onAck(key, atMs, etag) {
      const dot = dotOfEtag(etag)
      if (dot === undefined) untagged++
      else writes.push({ key, dot, ackMs: atMs })
    },
    onSeen(observer, key, atMs) {
      seen[observer]?.set(key, atMs)
    },
  })
  const traces = await Promise.all(nodes.map((node) => takeTrace(node)))
  const ids = (await Promise.all(nodes.map((node) => node.status()))).map((status) => status.nodeId)
  return { result, stages: { ...stagesOf(writes, 0, [1, 2], traces, ids, seen), untagged } }
}

/** The four stages' p50 on one line, for the run's log. */
export function stageLine(stages: Record<string, unknown>): string {
  return ['ack_to_sent', 'sent_to_received', 'received_to_applied', 'applied_to_seen']
    .map((stage) => `${stage} ${(stages[stage] as StageSummary).p50_ms}`)
    .join(', ')
}
