/**
 * The stage trace of replication (issue 13): an opt-in sink told when a `changes` frame crosses a
 * peer link and when a batch of log entries commits, so a benchmark can split replication lag into
 * its stages (ack → frame sent → frame received → applied → watch event). `meshkv node` installs
 * one when `MESHKV_TRACE_STAGES=1` (cli/stage-trace.ts); nothing else does.
 *
 * Why one sink per process and not an option handed down: one `meshkv node` process runs one
 * node, and the two call sites (transport/core.ts for frames, node/cluster.ts for commits) sit
 * under layers of options that would all grow a field for a benchmark. Why here: `api/` is the one
 * room the transport, the node and the CLI may all import. The call sites check `stageTrace` for
 * null and do nothing else, so a node without a trace pays one null check per frame and commit.
 */

/** A change's identity in the trace: its dot (clock/dot.ts; structural, as api/ imports no clock). */
export interface TracedDot {
  readonly node: string
  readonly seq: number
}

export interface StageTrace {
  /** A `changes` frame was handed to the link with `peer` (Sent), or decoded from it (Received). */
  frame(direction: 'Sent' | 'Received', peer: string, changes: readonly { readonly dot: TracedDot }[]): void
  /** A batch of log entries is durable: local writes and changes applied from peers alike. */
  committed(entries: readonly { readonly change: { readonly dot: TracedDot } }[]): void
}

/** The process's sink, or null (the default: no tracing). */
export let stageTrace: StageTrace | null = null

export function setStageTrace(trace: StageTrace | null): void {
  stageTrace = trace
}
