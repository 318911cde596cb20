/**
 * The codec room: MessagePack with limits (`msgpack.ts`), shape guards (`guards.ts`), the compact
 * change format (`change.ts`), key states (below) and peer frames (`peer.ts`, imported on its own).
 */
import type { Space } from '../crdt/index.js'
import type { AnyState, StateOf } from '../crdt/index.js'
import { isCounterState, isDocState, isRegisterState, isSetState } from './guards.js'
import { STATE_BYTES_MAX, decodeChecked, encode } from './msgpack.js'

export * from './guards.js'
export * from './msgpack.js'
export * from './change.js'

const STATE_GUARDS: { [S in Space]: (value: unknown) => value is StateOf[S] } = {
  kv: isRegisterState,
  counter: isCounterState,
  set: isSetState,
  doc: isDocState,
}

export function encodeState(state: AnyState, limitBytes = STATE_BYTES_MAX): Uint8Array {
  return encode(state, limitBytes)
}

export function decodeState<S extends Space>(space: S, bytes: Uint8Array, limitBytes = STATE_BYTES_MAX): StateOf[S] {
  return decodeChecked(bytes, STATE_GUARDS[space], `${space} state`, limitBytes)
}
