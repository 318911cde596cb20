/**
 * The history both the simulator (test/sim) and process chaos (test/chaos) record, and the
 * checkers read. One JSON object per line in a file (chaos), or an array in memory (sim).
 *
 * Every client operation is recorded twice: an `invoke` when it starts and one completion when it
 * ends: `ok` (acknowledged), `fail` (known not to have happened: refused before it was applied) or
 * `unknown` (may or may not have happened: timeouts, a node that died mid-request, a write concern
 * that timed out — the change may still be committed and replicating).
 */

export type WriteConcernSpec = 1 | 2 | 3 | 'quorum' | 'all'

export type Operation =
  /** A register write of a unique value (values are never reused, so a read names its write). */
  | { type: 'put'; key: string; value: string; w: WriteConcernSpec }
  | { type: 'del'; key: string; w: WriteConcernSpec }
  | { type: 'incr'; name: string; delta: number; w: WriteConcernSpec }
  | { type: 'sadd'; name: string; member: string; w: WriteConcernSpec }
  | { type: 'srem'; name: string; member: string; w: WriteConcernSpec }
  /** A read, with the session's causal token when it has one. */
  | { type: 'get'; key: string; token: string | null }

export interface InvokeEvent {
  kind: 'invoke'
  /** Unique per operation; the completion carries the same id. */
  id: number
  /** The client (session) that made it. */
  client: number
  /** The node it was sent to (index, or URL for chaos). */
  node: number | string
  /** Virtual ms (sim) or wall ms (chaos). */
  atMs: number
  op: Operation
}

export interface CompletionEvent {
  kind: 'ok' | 'fail' | 'unknown'
  id: number
  atMs: number
  /** What the operation returned: for `get`, the value read (null when missing); for `put`, the version; for `incr`, the value. */
  result?: unknown
  /** The causal token the node answered with (writes and reads), when there was one. */
  token?: string
  /** For `fail` and `unknown`: the MeshError code, if any. */
  code?: string
  /** For writes: the dot of the change, when the node told it ("node:seq"), so checkers can tie writes to state. */
  dot?: string
  /** For `sadd`/`srem`: did the node hold the member when the op was applied (known only in the sim). */
  observed?: boolean
}

export type HistoryEvent = InvokeEvent | CompletionEvent
