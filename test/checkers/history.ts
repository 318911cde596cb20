/**
 * The history both the simulator (test/sim) and process chaos (test/chaos) record, and the
 * checkers (test/checkers) read. One JSON object per line in a file (chaos), or an array in memory
 * (sim). Everything here is plain JSON: no `Uint8Array`, no `undefined` that matters, no class.
 *
 * Every client operation is recorded twice: an `invoke` when it starts and one completion when it
 * ends: `ok` (acknowledged), `fail` (known not to have happened: refused before it was applied) or
 * `unknown` (may or may not have happened: timeouts, a node that died mid-request, a write concern
 * that timed out — the change may still be committed and replicating). An operation still open
 * when the history ends counts as `unknown`.
 *
 * Faults are recorded as `nemesis` events (crashes and restarts matter to the checkers: a write
 * acknowledged by k members may be lost only to lossy crashes of k of them). A recorder may write
 * events of other kinds too (say, its own fault log); readers pass over kinds they do not know,
 * and a completion may carry extra fields.
 *
 * Beside the history, the checkers take (see checks.ts):
 * - `FinalNodeState` per node, read after the final heal and quiescence;
 * - optionally `ChangeRecord`s: every change any node made, from the nodes' logs (never purged).
 *   The precise checks (state = specification of the changes, sessions, sets) need them; without
 *   them the checkers fall back to what the history alone can show.
 *
 * `HistoryWriter` records a history as it happens (chaos: to a JSON-lines file under os.tmpdir(),
 * kept in memory too); `parseHistory`/`readHistory` read one back.
 *
 * Names here are stable: fields are only ever added (optional), never renamed or removed.
 * Dots are written `"<nodeId>:<seq>"`; vector clocks as `{ [nodeId]: seq }`; HLCs as
 * `[wallMs, logical]`; causal tokens in the wire form (`c1.…`).
 */

import { createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'

export type WriteConcernSpec = 1 | 2 | 3 | 'quorum' | 'all'

/** How many members a read joins its answer from (docs/consistency.md). */
export type ReadConcernSpec = 1 | 'quorum' | 'all'

export type Operation =
  /**
   * A register write of a unique value (values are never reused, so a read names its write).
   * `context`: the dots the client read and asks to replace; absent for a blind write.
   */
  | { type: 'put'; key: string; value: string; w: WriteConcernSpec; context?: string[] }
  | { type: 'del'; key: string; w: WriteConcernSpec; context?: string[] }
  | { type: 'incr'; name: string; delta: number; w: WriteConcernSpec }
  | { type: 'sadd'; name: string; member: string; w: WriteConcernSpec }
  | { type: 'srem'; name: string; member: string; w: WriteConcernSpec }
  /** A read, with the session's causal token when it has one. `r` defaults to 1. */
  | { type: 'get'; key: string; token: string | null; r?: ReadConcernSpec }
  /** A counter read (`result`: the value). */
  | { type: 'cget'; name: string; token: string | null; r?: ReadConcernSpec }
  /** A set read (`result`: the members, sorted). */
  | { type: 'smembers'; name: string; token: string | null; r?: ReadConcernSpec }

export type WriteOperation = Extract<Operation, { w: WriteConcernSpec }>
export type ReadOperation = Extract<Operation, { token: string | null }>

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
  /**
   * What the operation returned: for `get`, the value read (null when missing or deleted); for
   * `cget`, the value; for `smembers`, the sorted members; for `put`, the version; for `incr`,
   * the value.
   */
  result?: unknown
  /** The causal token the node answered with (writes and reads), when there was one. */
  token?: string
  /** For `fail` and `unknown`: the MeshError code, if any. */
  code?: string
  /** For writes: the dot of the change, when the node told it ("node:seq"), so checkers can tie writes to state. */
  dot?: string
  /** For `sadd`/`srem`: did the node hold the member when the op was applied (known only in the sim). */
  observed?: boolean
  /**
   * For reads (sim): the vector clock of the state the answer was read from (for `r` above 1, the
   * join of the members' clocks). With `ChangeRecord`s, the answer must equal the specification
   * of exactly the changes this clock names.
   */
  vc?: Record<string, number>
  /** For `get`: the values of every sibling the read saw (tombstones left out), when it asked for them. */
  siblings?: string[]
  /** For `get` (sim): the dots of every sibling the answer was chosen from. */
  siblingDots?: string[]
  /**
   * For acknowledged writes with w above 1 (sim): how many members durably held the change at
   * the moment it was acknowledged, counted from their disks, not from what replication believed.
   */
  durableHolders?: number
  /** For writes: how many members the write concern asked for (sim; chaos when known). */
  required?: number
  /** Chaos: the URL of the node the client's last attempt went to (the node that acknowledged an `ok`). */
  servedBy?: string
}

/**
 * A fault. `crash` (the process died), `restart`, `partition` (the links named in `detail` went
 * down), `heal`, `skew` (a node's clock moved), `drop` (a link broke), `stall` (a link slowed);
 * chaos also writes `ready`, `pause` (SIGSTOP), `resume` (SIGCONT) and `converged` after the final
 * heal. Only crashes matter to the checkers; the rest documents the run.
 */
export interface NemesisEvent {
  kind: 'nemesis'
  atMs: number
  fault: 'crash' | 'restart' | 'partition' | 'heal' | 'skew' | 'drop' | 'stall' | (string & {})
  nodes: (number | string)[]
  /**
   * For `crash`: may it lose acknowledged data of the crashed node? (A power loss on a node that
   * does not fsync each batch. `kill -9` keeps the OS page cache, so it is never lossy.)
   */
  lossy?: boolean
  detail?: string
}

export type HistoryEvent = InvokeEvent | CompletionEvent | NemesisEvent

// ---------------------------------------------------------------------------------------------
// Final states and changes.

export interface FinalSibling {
  dot: string
  hlc: [number, number]
  /** null for a tombstone. */
  value: string | null
}

/** One node's state after the final heal and quiescence. */
export interface FinalNodeState {
  node: number | string
  /** The state digest (storage/digest.ts): equal digests, equal states. */
  digest: string
  vc: Record<string, number>
  /** Every register: its siblings, and what a plain read answered (null: missing or deleted). */
  kv: Record<string, { siblings: FinalSibling[]; read: string | null }>
  counters: Record<string, number>
  /** Every set: member → the dots of the adds that keep it there. */
  sets: Record<string, Record<string, string[]>>
}

export type OpRecord =
  | { type: 'put'; key: string; value: string; context: string[] }
  | { type: 'del'; key: string; context: string[] }
  | { type: 'incr'; name: string; delta: number }
  | { type: 'sadd'; name: string; member: string; context: string[] }
  | { type: 'srem'; name: string; member: string; context: string[] }

/** A change as its origin made it (from the logs). */
export interface ChangeRecord {
  dot: string
  deps: Record<string, number>
  hlc: [number, number]
  ops: OpRecord[]
}

// ---------------------------------------------------------------------------------------------
// Small helpers over the format.

export function isInvoke(event: HistoryEvent): event is InvokeEvent {
  return event.kind === 'invoke'
}

export function isCompletion(event: HistoryEvent): event is CompletionEvent {
  return event.kind === 'ok' || event.kind === 'fail' || event.kind === 'unknown'
}

export function isNemesis(event: HistoryEvent): event is NemesisEvent {
  return event.kind === 'nemesis'
}

export function isWrite(op: Operation): op is WriteOperation {
  return 'w' in op
}

/** An operation with its completion (`unknown` for one never completed). */
export interface OperationRecord {
  invoke: InvokeEvent
  completion: CompletionEvent
}

/** Pairs invokes with completions, in invoke order. An open operation completes as `unknown`. */
export function operations(history: readonly HistoryEvent[]): OperationRecord[] {
  const completions = new Map<number, CompletionEvent>()
  for (const event of history) if (isCompletion(event)) completions.set(event.id, event)
  const end = history.reduce((max, event) => Math.max(max, event.atMs), 0)
  return history.filter(isInvoke).map((invoke) => ({
    invoke,
    completion: completions.get(invoke.id) ?? { kind: 'unknown', id: invoke.id, atMs: end, code: 'OPEN' },
  }))
}

/** Parses a JSON-lines history (chaos writes one event per line). */
export function parseHistory(text: string): HistoryEvent[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as HistoryEvent)
}

export function dotString(dot: { node: string; seq: number }): string {
  return `${dot.node}:${dot.seq}`
}

export function parseDot(text: string): { node: string; seq: number } {
  const at = text.lastIndexOf(':')
  return { node: text.slice(0, at), seq: Number(text.slice(at + 1)) }
}

/** Does the vector clock `vc` name the change `dot`? */
export function vcHas(vc: Readonly<Record<string, number>>, dot: string): boolean {
  const { node, seq } = parseDot(dot)
  return (vc[node] ?? 0) >= seq
}

/** Reads a JSON-lines history file back (to run the checkers again over a saved run). */
export async function readHistory(path: string): Promise<HistoryEvent[]> {
  return parseHistory(await readFile(path, 'utf8'))
}

/**
 * Records a history as it happens, with wall-clock times: each event is kept in `events` and
 * written as one JSON line to `path`, so a run cut short still leaves what it did on disk.
 */
export class HistoryWriter {
  readonly events: HistoryEvent[] = []
  readonly #out: WriteStream
  #nextId = 1
  #closed = false

  constructor(readonly path: string) {
    this.#out = createWriteStream(path, { flags: 'w' })
  }

  invoke(client: number, node: number | string, op: Operation): InvokeEvent {
    const event: InvokeEvent = { kind: 'invoke', id: this.#nextId++, client, node, atMs: Date.now(), op }
    this.#write(event)
    return event
  }

  complete(event: Omit<CompletionEvent, 'atMs'>): CompletionEvent {
    const done: CompletionEvent = { ...event, atMs: Date.now() }
    this.#write(done)
    return done
  }

  /**
   * A `crash` is recorded as not lossy (kill -9 keeps the OS page cache) unless `lossy` says
   * otherwise: a node whose directory is put back from an older copy loses what it wrote since.
   */
  fault(fault: NemesisEvent['fault'], nodes: (number | string)[], detail?: string, lossy = false): NemesisEvent {
    const event: NemesisEvent = {
      kind: 'nemesis',
      atMs: Date.now(),
      fault,
      nodes,
      ...(fault === 'crash' ? { lossy } : {}),
      ...(detail === undefined ? {} : { detail }),
    }
    this.#write(event)
    return event
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await new Promise<void>((resolve, reject) =>
      this.#out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    )
  }

  #write(event: HistoryEvent): void {
    this.events.push(event)
    if (!this.#closed) this.#out.write(`${JSON.stringify(event)}\n`)
  }
}
