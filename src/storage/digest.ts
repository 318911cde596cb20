/**
 * The state digest: one SHA-256 over every key state of every type, read from one snapshot, in
 * key order. Each state is first written in a canonical text form (fields in a fixed order, dots
 * and members sorted), so two nodes have equal digests exactly when their states are equal,
 * however each state was built (applied op by op, joined, or decoded).
 *
 * A key whose siblings are all tombstones reads as absent and is purged by garbage collection
 * once stable, which each node does on its own schedule (after it has heard every member's
 * acknowledgement): such keys are left out, so two nodes that hold the same data agree whether
 * or not each has purged its stable tombstones yet.
 */
import { createHash } from 'node:crypto'
import type { Dot, VectorClock } from '../clock/index.js'
import { compareDots } from '../clock/index.js'
import type { AnyState, CounterState, RegisterState, SetState, Space } from '../crdt/index.js'
import { SPACES } from '../crdt/index.js'
import type { StateReader } from './store.js'

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
  }
}
