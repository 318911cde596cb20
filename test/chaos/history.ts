/**
 * The chaos run's history: the shared format of test/checkers/history.ts (one JSON object per
 * line: `invoke`, then `ok`, `fail` or `unknown` with the same id), written to a file under
 * os.tmpdir() as it happens and kept in memory for the checkers.
 *
 * Chaos fills these optional fields of a completion: `siblings` on a completed `get` (every
 * concurrent value the read saw: reads ask for siblings, so the session check can tell a missing
 * write from one that lost last-write-wins), and `servedBy`, its own: the URL of the node the
 * client's last attempt went to (the node that acknowledged an `ok`).
 * Faults are `nemesis` lines (`{"kind":"nemesis","fault":"crash","nodes":[2],"lossy":false}`), as
 * the shared format has them: `crash` (kill -9, never lossy: the OS page cache survives it),
 * `restart`, `ready`, `pause` (SIGSTOP), `resume` (SIGCONT), `partition` (which one in `detail`),
 * `heal`, and `converged` after the final heal.
 */
import { createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { CompletionEvent, HistoryEvent, InvokeEvent, Operation } from '../checkers/history.js'

export type ChaosCompletion = CompletionEvent & { servedBy?: string; siblings?: string[] }

/** A fault as it was applied (or undone): the shared format's `nemesis` event, restated. */
export interface FaultEvent {
  kind: 'nemesis'
  atMs: number
  /** crash, restart, ready, pause, resume, partition, heal, converged. */
  fault: string
  /** Node numbers (1-based) it touched. */
  nodes: number[]
  /** For `crash`: may it lose acknowledged data? Never for kill -9. */
  lossy?: boolean
  detail?: string
}

export type ChaosEvent = InvokeEvent | ChaosCompletion | FaultEvent

/** One operation, both ends joined. */
export interface OpRecord {
  id: number
  client: number
  node: number | string
  op: Operation
  invokedMs: number
  /** Undefined while it runs (a history cut short). */
  end?: ChaosCompletion
}

export class HistoryWriter {
  readonly events: ChaosEvent[] = []
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

  complete(event: Omit<ChaosCompletion, 'atMs'>): ChaosCompletion {
    const done = { ...event, atMs: Date.now() } as ChaosCompletion
    this.#write(done)
    return done
  }

  fault(fault: string, nodes: number[], detail?: string): FaultEvent {
    const event: FaultEvent = {
      kind: 'nemesis',
      atMs: Date.now(),
      fault,
      nodes,
      ...(fault === 'crash' ? { lossy: false } : {}),
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

  #write(event: ChaosEvent): void {
    this.events.push(event)
    if (!this.#closed) this.#out.write(`${JSON.stringify(event)}\n`)
  }
}

/** Reads a history file back (for replaying the checkers on a saved run). */
export async function readHistory(path: string): Promise<ChaosEvent[]> {
  const text = await readFile(path, 'utf8')
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ChaosEvent)
}

/** Pairs every invoke with its completion, in invoke order. */
export function operations(events: readonly ChaosEvent[]): OpRecord[] {
  const byId = new Map<number, OpRecord>()
  for (const event of events) {
    // Readers pass over kinds they do not know (and faults).
    if (event.kind !== 'invoke' && event.kind !== 'ok' && event.kind !== 'fail' && event.kind !== 'unknown') continue
    if (event.kind === 'invoke') {
      byId.set(event.id, { id: event.id, client: event.client, node: event.node, op: event.op, invokedMs: event.atMs })
      continue
    }
    const record = byId.get(event.id)
    if (record === undefined) throw new Error(`history: completion ${event.id} has no invoke`)
    if (record.end !== undefined) throw new Error(`history: operation ${event.id} completed twice`)
    record.end = event
  }
  return [...byId.values()].sort((a, b) => a.id - b.id)
}

export function faults(events: readonly ChaosEvent[]): FaultEvent[] {
  return events.filter((event): event is FaultEvent => event.kind === 'nemesis')
}

export type { HistoryEvent }
