/**
 * The state digest: one SHA-256 over every key state of every type, read from one snapshot, in
 * key order. Each state is first written in a canonical text form (fields in a fixed order, dots
 * and members sorted), so two nodes have equal digests exactly when their states are equal,
 * however each state was built (applied op by op, joined, or decoded). A document is written as
 * its identity (crdt/doc.ts, `docIdentity`): its bytes depend on when it was last compacted.
 *
 * A key whose siblings are all tombstones reads as absent and is purged by garbage collection
 * once stable, which each node does on its own schedule (after it has heard every member's
 * acknowledgement): such keys are left out, so two nodes that hold the same data agree whether
 * or not each has purged its stable tombstones yet.
 *
 * `DigestCache` keeps the last digest, keyed by the vector clock it was read at: every change
 * applied moves the clock, and garbage collection (which purges only such all-tombstone keys)
 * never changes a digest. A snapshot join changes states without a log entry; its commit news
 * (an empty batch) starts a new epoch, so nothing read before it is answered after it.
 */
import { createHash } from 'node:crypto'
import type { Dot, VectorClock } from '../clock/index.js'
import { compareDots } from '../clock/index.js'
import type { AnyState, CounterState, DocState, RegisterState, SetState, Space } from '../crdt/index.js'
import { SPACES, docIdentity } from '../crdt/index.js'
import type { LogEntry, StateReader, StoreSnapshot } from './store.js'

export interface Digest {
  digest: string
  vc: VectorClock
  keys: number
}

export async function digestOf(reader: StateReader): Promise<Digest> {
  const hash = createHash('sha256')
  let keys = 0
  for (const space of SPACES) {
    for await (const [key, state] of reader.iterateStates(space, {})) {
      if (space === 'kv' && (state as RegisterState).siblings.every((sibling) => sibling.value === null)) continue
      hash.update(JSON.stringify([space, key, canonicalForm(space, state)]))
      hash.update('\n')
      keys++
    }
  }
  return { digest: hash.digest('hex'), vc: reader.vc, keys }
}

/** What the cache needs of the store. */
export interface DigestSource {
  readonly vc: VectorClock
  snapshot(): Promise<StoreSnapshot>
  onCommit(listener: (entries: readonly LogEntry[]) => void): () => void
}

/** The last digest, or the one being computed, so a flood of `/v1/digest` requests costs one walk. */
export class DigestCache {
  #last: { readonly key: string; digest: Promise<Digest> } | null = null
  #epoch = 0
  #walks = 0
  readonly #unsubscribe: () => void

  constructor(private readonly source: DigestSource) {
    this.#unsubscribe = source.onCommit((entries) => {
      if (entries.length === 0) this.#epoch++
    })
  }

  /** Walks over the states since the cache was made. */
  get walks(): number {
    return this.#walks
  }

  digest(): Promise<Digest> {
    const last = this.#last
    if (last !== null && last.key === this.#keyOf(this.source.vc)) return last.digest
    // Keyed by the clock now, then by the clock of the snapshot walked (never older than this one).
    const epoch = this.#epoch
    let key = this.#keyOf(this.source.vc)
    const walk = this.#walk(epoch, (walked) => (key = walked))
    const entry = {
      get key() {
        return key
      },
      digest: walk,
    }
    this.#last = entry
    // A failed walk is not kept: the next call walks again.
    entry.digest.catch(() => {
      if (this.#last === entry) this.#last = null
    })
    return entry.digest
  }

  close(): void {
    this.#unsubscribe()
    this.#last = null
  }

  /** Digests one snapshot; `keyed` learns its key (the snapshot's clock) before the walk. */
  async #walk(epoch: number, keyed: (key: string) => void): Promise<Digest> {
    const snapshot = await this.source.snapshot()
    try {
      keyed(this.#keyOf(snapshot.vc, epoch))
      this.#walks++
      return await digestOf(snapshot)
    } finally {
      await snapshot.close()
    }
  }

  #keyOf(vc: VectorClock, epoch = this.#epoch): string {
    const origins = Object.keys(vc).sort()
    return JSON.stringify([epoch, origins.map((origin) => [origin, vc[origin as keyof VectorClock]])])
  }
}

function dotForm(dot: Dot): [string, number] {
  return [dot.node, dot.seq]
}

function canonicalForm(space: Space, state: AnyState): unknown {
  switch (space) {
    case 'kv':
      return [...(state as RegisterState).siblings]
        .sort((a, b) => compareDots(a.dot, b.dot))
        .map((sibling) => [
          dotForm(sibling.dot),
          sibling.hlc.wallMs,
          sibling.hlc.logical,
          sibling.contentType,
          sibling.value === null ? null : Buffer.from(sibling.value).toString('base64'),
        ])
    case 'counter': {
      const counter = state as CounterState
      const part = (record: Readonly<Record<string, number>>): [string, number][] =>
        Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      return [part(counter.p), part(counter.n)]
    }
    case 'set':
      return [...(state as SetState).entries]
        .sort((a, b) => (a.member < b.member ? -1 : a.member > b.member ? 1 : 0))
        .map((entry) => [entry.member, [...entry.dots].sort(compareDots).map(dotForm)])
    case 'doc':
      // The document's identity, not its bytes: nodes compact at different times.
      return docIdentity(state as DocState)
  }
}
