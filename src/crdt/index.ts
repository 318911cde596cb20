/**
 * The merges, by key space: each type is a state with `apply(state, op)` and a state-based
 * `join(a, ctxA, b, ctxB)`. Pure and deterministic; no I/O.
 */
import type { Dot, Hlc, VectorClock } from '../clock/index.js'
import { unreachable } from '../errors.js'
import type { Op, Space } from './change.js'
import type { CounterState } from './counter.js'
import { COUNTER_EMPTY, applyCounter, joinCounter } from './counter.js'
import type { DocState } from './doc.js'
import { DOC_EMPTY, applyDoc, isEmptyUpdate, joinDoc } from './doc.js'
import type { RegisterState } from './register.js'
import { REGISTER_EMPTY, applyRegister, joinRegister } from './register.js'
import type { SetState } from './set.js'
import { SET_EMPTY, applySet, joinSet } from './set.js'

export * from './change.js'
export * from './counter.js'
export * from './doc.js'
export * from './doc-intent.js'
export * from './doc-json.js'
export * from './intent.js'
export * from './register.js'
export * from './set.js'

export interface StateOf {
  kv: RegisterState
  counter: CounterState
  set: SetState
  doc: DocState
}

export type AnyState = StateOf[Space]

export function emptyState<S extends Space>(space: S): StateOf[S] {
  switch (space) {
    case 'kv':
      return REGISTER_EMPTY as StateOf[S]
    case 'counter':
      return COUNTER_EMPTY as StateOf[S]
    case 'set':
      return SET_EMPTY as StateOf[S]
    case 'doc':
      return DOC_EMPTY as StateOf[S]
  }
  return unreachable(space)
}

/** Applies one op of a change (with that change's dot, HLC and deps) to the state of its key. */
export function applyOp(state: AnyState, op: Op, dot: Dot, hlc: Hlc, deps: VectorClock): AnyState {
  switch (op.type) {
    case 'kv.put':
    case 'kv.del':
      return applyRegister(state as RegisterState, op, dot, hlc, deps)
    case 'counter.add':
      return applyCounter(state as CounterState, op, dot)
    case 'set.add':
    case 'set.remove':
      return applySet(state as SetState, op, dot)
    case 'doc.update':
      return applyDoc(state as DocState, op)
  }
}

export function joinState<S extends Space>(
  space: S,
  a: StateOf[S],
  contextA: VectorClock,
  b: StateOf[S],
  contextB: VectorClock,
): StateOf[S] {
  switch (space) {
    case 'kv':
      return joinRegister(a as RegisterState, contextA, b as RegisterState, contextB) as StateOf[S]
    case 'counter':
      return joinCounter(a as CounterState, b as CounterState) as StateOf[S]
    case 'set':
      return joinSet(a as SetState, contextA, b as SetState, contextB) as StateOf[S]
    case 'doc':
      return joinDoc(a as DocState, b as DocState) as StateOf[S]
  }
  return unreachable(space)
}

/**
 * True when a state holds nothing worth keeping (an empty register or set, a zero-part counter).
 * A document is kept once written, deleted or not: its struct ids are what later updates build on.
 */
export function isEmptyState(space: Space, state: AnyState): boolean {
  switch (space) {
    case 'kv':
      return (state as RegisterState).siblings.length === 0
    case 'counter': {
      const counter = state as CounterState
      return Object.keys(counter.p).length === 0 && Object.keys(counter.n).length === 0
    }
    case 'set':
      return (state as SetState).entries.length === 0
    case 'doc':
      return isEmptyUpdate((state as DocState).update)
  }
}
