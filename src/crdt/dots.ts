/** Helpers over sets of dots shared by the register and the set (both are dot-kernel CRDTs). */
import type { Dot, VectorClock } from '../clock/index.js'
import { dotKey, vcHasDot } from '../clock/index.js'

export function dotSet(dots: readonly Dot[]): Set<string> {
  return new Set(dots.map(dotKey))
}

/**
 * The dot-kernel join: keep an entry of `a` if `b` has it too or `b` has never seen it (it is not
 * in `contextB`); the same for `b`. An entry one side has seen and dropped stays dropped.
 * Entries are matched by dot; `a`'s copy wins for equal dots (they are equal by construction).
 */
export function joinByDot<T extends { readonly dot: Dot }>(
  a: readonly T[],
  contextA: VectorClock,
  b: readonly T[],
  contextB: VectorClock,
): T[] {
  const inA = new Set(a.map((entry) => dotKey(entry.dot)))
  const inB = new Set(b.map((entry) => dotKey(entry.dot)))
  const out: T[] = []
  for (const entry of a) {
    if (inB.has(dotKey(entry.dot)) || !vcHasDot(contextB, entry.dot)) out.push(entry)
  }
  for (const entry of b) {
    if (!inA.has(dotKey(entry.dot)) && !vcHasDot(contextA, entry.dot)) out.push(entry)
  }
  return out
}
