/**
 * MessagePack (msgpackr) underneath every record meshkv stores or sends: one encoder, one decoder
 * for what this node wrote and one for what strangers send, the size limits, and `decodeChecked`:
 * every decode checks the size limit first, then the shape with a guard: truncated, garbage or
 * wrongly shaped bytes give `MESHKV_ERR_DECODE`, never a crash or a half-built object.
 */
import { Packr, Unpackr } from 'msgpackr'
import { MeshError } from '../errors.js'

/** Largest encoded change or log entry (a change this node makes is at most 3.5 MiB). */
export const RECORD_BYTES_MAX_DEFAULT = 64 * 1024 * 1024

/**
 * Largest encoded key state, stored or moved by a snapshot. A local write keeps a state under
 * 8 MiB (crdt/register.ts, crdt/set.ts), but merges are never refused: a key that several nodes
 * each pushed to that limit while apart holds the union. 256 MiB is 32 such nodes' worth. A
 * stored state that failed to encode would stop its origin's replication on every node that
 * merges it, so this bound is kept far from what honest writes reach.
 */
export const STATE_BYTES_MAX = 256 * 1024 * 1024

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  bundleStrings: false,
  int64AsType: 'number',
})

/**
 * Decodes what strangers send (peer frames): no records, maps as plain objects, no structured
 * clone, 64-bit integers as numbers (a guard then refuses the unsafe ones). msgpackr's extensions
 * are one global table that no option turns off, so `decodePlain` checks the result instead.
 */
export const strangerUnpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  moreTypes: false,
  bundleStrings: false,
  int64AsType: 'number',
})

/**
 * Whether a decoded value is plain MessagePack data: null, booleans, numbers, strings, binary (a
 * Buffer, as msgpackr makes for `bin`), arrays and plain objects. What only an extension can make
 * (undefined, BigInt, Date, Set, Map, RegExp, Error, typed arrays, class instances) is not.
 * Iterative, so a deeply nested value cannot exhaust the stack here.
 */
export function isPlainData(root: unknown): boolean {
  const pending: unknown[] = [root]
  while (pending.length > 0) {
    const value = pending.pop()
    if (value === null) continue
    switch (typeof value) {
      case 'boolean':
      case 'number':
      case 'string':
        continue
      case 'object':
        break
      default:
        return false
    }
    const proto = Object.getPrototypeOf(value) as unknown
    if (proto === Buffer.prototype) continue
    if (Array.isArray(value) && proto === Array.prototype) pending.push(...(value as unknown[]))
    else if (proto === Object.prototype || proto === null) pending.push(...Object.values(value))
    else return false
  }
  return true
}

export function encode(value: unknown, limitBytes = RECORD_BYTES_MAX_DEFAULT): Uint8Array {
  const bytes = packr.pack(value)
  if (bytes.length > limitBytes) {
    throw new MeshError(
      'MESHKV_ERR_FRAME_TOO_LARGE',
      `an encoded record of ${bytes.length} bytes exceeds the limit of ${limitBytes}`,
      {
        details: { limitBytes, actualBytes: bytes.length },
      },
    )
  }
  return bytes
}

/**
 * Decodes and checks shape. `what` names the record in the error so a person can find it.
 */
export function decodeChecked<T>(
  bytes: Uint8Array,
  guard: (value: unknown) => value is T,
  what: string,
  limitBytes = RECORD_BYTES_MAX_DEFAULT,
  unpackr: Unpackr = packr,
): T {
  if (!(bytes instanceof Uint8Array)) throw new MeshError('MESHKV_ERR_DECODE', `${what}: expected bytes`)
  if (bytes.length > limitBytes) {
    throw new MeshError(
      'MESHKV_ERR_FRAME_TOO_LARGE',
      `${what}: ${bytes.length} bytes exceed the limit of ${limitBytes}`,
      {
        details: { limitBytes, actualBytes: bytes.length },
      },
    )
  }
  let value: unknown
  try {
    // unpack refuses trailing bytes ("end of buffer not reached"): a record is exactly one value.
    value = unpackr.unpack(bytes as Buffer)
  } catch (error) {
    throw new MeshError('MESHKV_ERR_DECODE', `${what}: not valid MessagePack`, { cause: error })
  }
  if (!guard(value)) throw new MeshError('MESHKV_ERR_DECODE', `${what}: wrong shape`)
  return value
}

/**
 * `decodeChecked` for bytes from a stranger (a peer frame): the decoder above, and the value must
 * be plain data (`isPlainData`) before its shape is checked. An extension or a BigInt is a
 * `MESHKV_ERR_DECODE`, never an exotic object in a change.
 */
export function decodePlain<T>(
  bytes: Uint8Array,
  guard: (value: unknown) => value is T,
  what: string,
  limitBytes: number,
): T {
  return decodeChecked(
    bytes,
    (value): value is T => isPlainData(value) && guard(value),
    what,
    limitBytes,
    strangerUnpackr,
  )
}
