/**
 * `MESHKV_TRACE_STAGES=1` on `meshkv node`: the stage trace of api/trace.ts, for the
 * `replication_lag.stages` benchmark. Each `changes` frame sent or received and each commit is
 * kept in memory with its dots and the time, read from the machine-wide monotonic clock
 * (`process.hrtime`, CLOCK_MONOTONIC on Linux: one clock for every process of a machine, so a node's
 * times and a benchmark driver's compare directly; `performance.timeOrigin` would add each
 * process's own reading of the wall clock at its start). A line on stdin asks for what was kept:
 * the node writes it as one JSON line on stdout and forgets it. Nothing is written in between, so
 * tracing adds no I/O to the path it measures.
 */
import type { Readable, Writable } from 'node:stream'
import type { StageTrace, TracedDot } from '../api/trace.js'
import { setStageTrace } from '../api/trace.js'

export const TRACE_STAGES_VARIABLE = 'MESHKV_TRACE_STAGES'
/** Records kept between two requests (a few tens of MB at most); later ones are only counted as dropped. */
export const RECORDS_MAX = 200_000

export type StageKind = 'sent' | 'received' | 'committed'

/** One record as written: kind, peer node id (null for a commit), time in ms, dots as `node:seq`. */
export type StageRecord = [StageKind, string | null, number, string[]]

interface Kept {
  kind: StageKind
  peer: string | null
  atMs: number
  dots: readonly TracedDot[]
}

/** Milliseconds on CLOCK_MONOTONIC (fractional), the same clock in every process of the machine. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

export class StageRecorder implements StageTrace {
  #kept: Kept[] = []
  #dropped = 0

  constructor(private readonly clock: () => number = monotonicMs) {}

  frame(direction: 'Sent' | 'Received', peer: string, changes: readonly { readonly dot: TracedDot }[]): void {
    this.#keep(direction === 'Sent' ? 'sent' : 'received', peer, changes, (change) => change.dot)
  }

  committed(entries: readonly { readonly change: { readonly dot: TracedDot } }[]): void {
    this.#keep('committed', null, entries, (entry) => entry.change.dot)
  }

  /** What was kept since the last take, as one JSON line `{"stageTrace":{...}}`; then forgets it. */
  take(): string {
    const records: StageRecord[] = this.#kept.map(({ kind, peer, atMs, dots }) => [
      kind,
      peer,
      atMs,
      dots.map((dot) => `${dot.node}:${dot.seq}`),
    ])
    const line = JSON.stringify({ stageTrace: { records, dropped: this.#dropped, atMs: this.clock() } })
    this.#kept = []
    this.#dropped = 0
    return `${line}\n`
  }

  #keep<T>(kind: StageKind, peer: string | null, items: readonly T[], dotOf: (item: T) => TracedDot): void {
    const atMs = this.clock()
    if (this.#kept.length >= RECORDS_MAX) this.#dropped++
    else this.#kept.push({ kind, peer, atMs, dots: items.map(dotOf) })
  }
}

/**
 * Installs a recorder when `env` asks for one (`MESHKV_TRACE_STAGES=1`): every line read from
 * `input` writes what was kept to `output`. Returns the recorder, or null when not asked.
 */
export function traceStagesIfAsked(env: NodeJS.ProcessEnv, input: Readable, output: Writable): StageRecorder | null {
  if (env[TRACE_STAGES_VARIABLE] !== '1') return null
  const recorder = new StageRecorder()
  setStageTrace(recorder)
  input.setEncoding('utf8')
  input.on('data', (chunk: string) => {
    for (const char of chunk) if (char === '\n') output.write(recorder.take())
  })
  return recorder
}
