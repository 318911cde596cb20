/**
 * Local writes as a client states them (intents), and how they become ops against the state the
 * node holds at commit time. Pure: the store calls `prepareOp` inside its commit, so a
 * precondition and the write it guards are one atomic step.
 */
import type { Dot, NodeId } from '../clock/index.js'
import { dotEquals, encodeVersion } from '../clock/index.js'
import { MeshError } from '../errors.js'
import type { Op } from './change.js'
import type { CounterState } from './counter.js'
import { counterAddIsExact } from './counter.js'
import type { DocState } from './doc.js'
import { prepareDocOp } from './doc-intent.js'
import type { RegisterState } from './register.js'
import {
  REGISTER_BYTES_MAX,
  REGISTER_SIBLINGS_MAX,
  registerBytes,
  registerDots,
  registerIsDeleted,
  siblingBytes,
} from './register.js'
import type { SetState } from './set.js'
import { SET_BYTES_MAX, SET_MEMBERS_MAX, setBytes, setEntryBytes, setMemberDots } from './set.js'

export interface Preconditions {
  /** The key's current version must equal this (an `ETag`). */
  readonly ifMatch?: string
  /** The key must have no live value (`If-None-Match: *`). */
  readonly ifNoneMatch?: boolean
}

export type Intent =
  | (Preconditions & {
      readonly type: 'kv.put'
      readonly key: string
      readonly value: Uint8Array
      readonly contentType: string
      /** Dots this write replaces; absent for a blind write, which replaces all the node holds. */
      readonly context?: readonly Dot[]
    })
  | (Preconditions & { readonly type: 'kv.del'; readonly key: string; readonly context?: readonly Dot[] })
  | { readonly type: 'counter.add'; readonly name: string; readonly delta: number }
  | { readonly type: 'set.add'; readonly name: string; readonly member: string }
  | { readonly type: 'set.remove'; readonly name: string; readonly member: string }
  /** Applies a Yjs update to a document. */
  | { readonly type: 'doc.update'; readonly name: string; readonly update: Uint8Array }
  /** Deletes every item of a document the node holds (crdt/doc.ts). */
  | { readonly type: 'doc.delete'; readonly name: string }

/**
 * The op for an intent, or `null` when it changes nothing (a delete of a missing key, a remove of
 * an absent member). Throws `MESHKV_ERR_PRECONDITION_FAILED`, `MESHKV_ERR_COUNTER_OVERFLOW`, or
 * `MESHKV_ERR_STATE_TOO_LARGE` for a write that would push its key past a per-key limit.
 */
export function prepareOp<I extends Intent>(
  intent: I,
  state: I extends { type: 'kv.put' | 'kv.del' }
    ? RegisterState
    : I extends { type: 'counter.add' }
      ? CounterState
      : I extends { type: 'doc.update' | 'doc.delete' }
        ? DocState
        : SetState,
  origin: NodeId,
): Op | null {
  switch (intent.type) {
    case 'kv.put':
    case 'kv.del':
      return prepareRegisterOp(intent, state as RegisterState)
    case 'counter.add':
      // A zero delta changes nothing; as an op it would leave a 0 part that no guard accepts.
      if (intent.delta === 0) return null
      if (!counterAddIsExact(state as CounterState, origin, intent.delta)) {
        throw new MeshError(
          'MESHKV_ERR_COUNTER_OVERFLOW',
          `counter ${JSON.stringify(intent.name)} would leave the range of exact integers`,
        )
      }
      return { type: 'counter.add', name: intent.name, delta: intent.delta }
    case 'set.add':
      checkSetAdd(intent.name, intent.member, state as SetState)
      return {
        type: 'set.add',
        name: intent.name,
        member: intent.member,
        context: setMemberDots(state as SetState, intent.member),
      }
    case 'set.remove': {
      const context = setMemberDots(state as SetState, intent.member)
      if (context.length === 0) return null
      return { type: 'set.remove', name: intent.name, member: intent.member, context }
    }
    case 'doc.update':
    case 'doc.delete':
      return prepareDocOp(intent, state as DocState)
  }
}

function prepareRegisterOp(intent: Extract<Intent, { type: 'kv.put' | 'kv.del' }>, state: RegisterState): Op | null {
  checkPreconditions(intent, state)
  // A client's context may name dots this node has not applied yet (read elsewhere). Only dots
  // the node holds may be replaced: they are in the change's causal past, so every replica has
  // applied them before this change; replacing any other dot would depend on delivery order.
  const held = registerDots(state)
  const context =
    intent.context === undefined ? held : intent.context.filter((dot) => held.some((own) => dotEquals(own, dot)))
  if (intent.type === 'kv.del') {
    // A blind delete of a key with no live sibling changes nothing. One whose winning sibling is
    // a tombstone but that still holds an older live sibling does write: it clears that sibling.
    if (intent.context === undefined && state.siblings.every((sibling) => sibling.value === null)) return null
    return { type: 'kv.del', key: intent.key, context }
  }
  checkRegisterPut(intent, state, context)
  return { type: 'kv.put', key: intent.key, value: intent.value, contentType: intent.contentType, context }
}

/**
 * Refuses a put that would leave the register past a per-key limit. The state after it is what
 * `applyRegister` keeps: the siblings not replaced, minus every tombstone (all held dots are in
 * the change's deps), plus the new one. A put that does not grow a state already past a limit (a
 * merge may have put it there) is let through: it is how such a key is brought back under it.
 */
function checkRegisterPut(intent: Extract<Intent, { type: 'kv.put' }>, state: RegisterState, context: Dot[]): void {
  const kept = state.siblings.filter(
    (sibling) => sibling.value !== null && !context.some((dot) => dotEquals(dot, sibling.dot)),
  )
  const siblings = kept.length + 1
  const bytes = registerBytes(kept) + siblingBytes(intent.value, intent.contentType)
  const before = { siblings: state.siblings.length, bytes: registerBytes(state.siblings) }
  if (siblings > REGISTER_SIBLINGS_MAX && siblings > before.siblings)
    throw tooLarge('siblings', intent.key, REGISTER_SIBLINGS_MAX, siblings)
  if (bytes > REGISTER_BYTES_MAX && bytes > before.bytes) throw tooLarge('bytes', intent.key, REGISTER_BYTES_MAX, bytes)
}

/** Refuses an add of a new member that would take the set past its members or bytes limit. */
function checkSetAdd(name: string, member: string, state: SetState): void {
  if (state.entries.some((entry) => entry.member === member)) return // an add of a member replaces its dots: no growth
  const members = state.entries.length + 1
  if (members > SET_MEMBERS_MAX) throw tooLarge('members', name, SET_MEMBERS_MAX, members)
  const bytes = setBytes(state) + setEntryBytes(member, 1)
  if (bytes > SET_BYTES_MAX) throw tooLarge('bytes', name, SET_BYTES_MAX, bytes)
}

export function tooLarge(limit: string, key: string, max: number, actual: number): MeshError {
  return new MeshError(
    'MESHKV_ERR_STATE_TOO_LARGE',
    `${JSON.stringify(key)} would hold ${actual} ${limit}, past its limit of ${max}; replace versions instead`,
    { details: { limit, max, actual } },
  )
}

function checkPreconditions(intent: Preconditions & { key: string }, state: RegisterState): void {
  if (intent.ifNoneMatch === true && !registerIsDeleted(state)) {
    throw new MeshError('MESHKV_ERR_PRECONDITION_FAILED', `key ${JSON.stringify(intent.key)} exists`)
  }
  if (intent.ifMatch !== undefined) {
    const current = registerIsDeleted(state) ? undefined : encodeVersion(registerDots(state))
    if (current !== intent.ifMatch) {
      throw new MeshError(
        'MESHKV_ERR_PRECONDITION_FAILED',
        `key ${JSON.stringify(intent.key)} is not at version ${intent.ifMatch}`,
        {
          details: { current: current ?? null },
        },
      )
    }
  }
}
