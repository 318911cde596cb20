/**
 * Picking replica states out of a history for the join laws: each replica's view now, and its
 * view at an earlier point of its log (a causally closed prefix), so states of many ages meet.
 */
import fc from 'fast-check'
import type { Space } from '../../src/crdt/index.js'
import type { History, View } from './replicas.js'
import { applyChange, newReplica, viewOf } from './replicas.js'

/** The views of every replica now and after a random prefix of its log, in one list. */
export function viewsOf(history: History, prefixes: readonly number[], space?: Space): View[] {
  const views: View[] = []
  history.replicas.forEach((replica, i) => {
    views.push(viewOf(replica, space))
    const length = (prefixes[i] ?? 0) % (replica.log.length + 1)
    const past = newReplica(replica.node)
    for (const change of replica.log.slice(0, length)) applyChange(past, change)
    views.push(viewOf(past, space))
  })
  return views
}

/** Three views (repeats allowed) out of a history, for commutativity, associativity, idempotence. */
export function viewTripleArb(
  historyArbitrary: fc.Arbitrary<History>,
  space?: Space,
): fc.Arbitrary<{ history: History; a: View; b: View; c: View }> {
  return fc
    .tuple(historyArbitrary, fc.array(fc.nat(), { minLength: 4, maxLength: 4 }), fc.tuple(fc.nat(), fc.nat(), fc.nat()))
    .map(([history, prefixes, [i, j, k]]) => {
      const views = viewsOf(history, prefixes, space)
      const at = (index: number): View => views[index % views.length] as View
      return { history, a: at(i), b: at(j), c: at(k) }
    })
}
