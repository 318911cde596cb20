/**
 * How `MeshLevel` stores a Level key (any bytes, the empty key too) as a meshkv key (text: a
 * well-formed string, not empty, not starting with U+0000), keeping Level's byte order and making
 * text keys their own stored form.
 *
 * meshkv keys sort in UTF-8 byte order (LevelDB's), which is code point order. The encoding:
 *
 * - Text: a key that is well-formed UTF-8 without U+10FFFF is stored as that text, so what
 *   `db.put('user:1', …)` writes is `user:1` to HTTP, kvctl and `node.get` alike, as before.
 * - Bytes: a key whose longest such text head `V` is followed by anything else `R` (bytes that are
 *   not UTF-8, a truncated sequence, or U+10FFFF itself) is stored as `V`, then `c`, the greatest
 *   code point but U+10FFFF whose UTF-8 sorts below `R`, then the escape U+10FFFF, then `R` one
 *   byte to one code point (U+0000 to U+00FF, Latin-1). The escape is the greatest code point, and
 *   no stored form starts with it, so `V c U+10FFFF …` sorts after the stored form of every key
 *   `V c …` and before `V d …` for the next `d`: where `V R` sorts among the keys. Within that gap,
 *   Latin-1 keeps byte order.
 * - The start, when there is no key prefix: the node refuses keys that are empty or start with
 *   U+0000, and those (with keys starting with U+0001) sort below every other key, so they are
 *   stored as U+0001 and then the whole key in Latin-1.
 *
 * U+10FFFF is a noncharacter and U+0001 a control code, so the keys that lose their own form are
 * keys no one types. A key grows by at most 8 bytes plus one per byte after the text head (twice
 * its size plus 8 at worst); `MeshLevel` refuses one whose stored form passes the node's
 * `keyBytesMax` with `MESHKV_ERR_KEY_TOO_LARGE`.
 *
 * Reading back, a stored key that this encoding could not have made (one a text user wrote with
 * U+10FFFF in it, or, with no prefix, starting with U+0001) is no Level key: it decodes to
 * undefined and iterators pass over it. `MeshLevel.migrateKeys` rewrites such keys that MeshLevel
 * itself wrote before this encoding, when it stored them as the text they were.
 */

const KEY_ESCAPE = '\u{10FFFF}'
const ESCAPE_POINT = 0x10ffff
/** Marks a key stored whole in Latin-1 when there is no prefix. */
const KEY_LEAD = '\u0001'
/** What a key may grow by beyond one byte per byte: the code point below the gap and the escape. */
export const KEY_GROWTH_BYTES = 8

/** The stored form of `key` (bytes); `bare` when there is no key prefix in front of it. */
export function encodeKey(key: Uint8Array, bare: boolean): string {
  if (bare && (key.length === 0 || (key[0] as number) <= 0x01)) return KEY_LEAD + latin1(key)
  const head = textHeadBytes(key)
  const text = Buffer.from(key.buffer, key.byteOffset, head).toString('utf8')
  if (head === key.length) return text
  const rest = key.subarray(head)
  return text + String.fromCodePoint(pointBelow(rest)) + KEY_ESCAPE + latin1(rest)
}

/** The same for a string key: Level stores it as its UTF-8 bytes (a lone surrogate as U+FFFD). */
export function encodeTextKey(key: string, bare: boolean): string {
  if (isOwnForm(key, bare)) return key
  return encodeKey(Buffer.from(key, 'utf8'), bare)
}

/** The bytes of the Level key stored as `stored`, or undefined when this encoding never makes it. */
export function decodeKey(stored: string, bare: boolean): Uint8Array | undefined {
  if (isOwnForm(stored, bare)) return Buffer.from(stored, 'utf8')
  const bytes = bare && stored.startsWith(KEY_LEAD) ? fromLatin1(stored.slice(KEY_LEAD.length)) : escapedBytes(stored)
  // Every other malformed form (a wrong code point before the escape, a text head where bytes
  // should be) fails to encode back to itself.
  return bytes !== undefined && encodeKey(bytes, bare) === stored ? bytes : undefined
}

/** The bytes of `V c U+10FFFF R`: `V` as UTF-8, `R` from Latin-1. */
function escapedBytes(stored: string): Uint8Array | undefined {
  // `c` is never U+10FFFF and Latin-1 never holds it, so the first one is the escape.
  const at = stored.indexOf(KEY_ESCAPE)
  if (at <= 0) return undefined
  // `c` may be a surrogate pair: then `at - 1` holds its low half.
  const low = stored.charCodeAt(at - 1)
  const head = at - (low >= 0xdc00 && low <= 0xdfff ? 2 : 1)
  const rest = fromLatin1(stored.slice(at + KEY_ESCAPE.length))
  return rest === undefined ? undefined : Buffer.concat([Buffer.from(stored.slice(0, head), 'utf8'), rest])
}

/** The key as text when its stored form is itself (no decoding needed), else undefined. */
export function ownText(stored: string, bare: boolean): string | undefined {
  return isOwnForm(stored, bare) ? stored : undefined
}

function isOwnForm(key: string, bare: boolean): boolean {
  if (bare && (key.length === 0 || key.charCodeAt(0) <= 0x01)) return false
  return key.isWellFormed() && !key.includes(KEY_ESCAPE)
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1')
}

function fromLatin1(text: string): Uint8Array | undefined {
  for (let index = 0; index < text.length; index++) if (text.charCodeAt(index) > 0xff) return undefined
  return Buffer.from(text, 'latin1')
}

/** Scalar values (code points less the surrogates) by rank, so a search can walk them in order. */
const SCALARS = 0x110000 - 0x800

function scalarAt(rank: number): number {
  return rank < 0xd800 ? rank : rank + 0x800
}

/**
 * The greatest code point but U+10FFFF whose UTF-8 sorts below `rest` (a prefix sorts below).
 * Never U+10FFFF: a stored key then never starts with the escape, so `V c U+10FFFF …` sorts above
 * the stored form of every key that starts with `V c` as text.
 */
function pointBelow(rest: Uint8Array): number {
  // `rest` starts with a byte from 0x80 up (bytes below are whole code points), so U+007F is below.
  let low = 0x7f
  let high = SCALARS - 2
  while (low < high) {
    const middle = Math.ceil((low + high) / 2)
    if (Buffer.compare(Buffer.from(String.fromCodePoint(scalarAt(middle)), 'utf8'), rest) < 0) low = middle
    else high = middle - 1
  }
  return scalarAt(low)
}

/** How many leading bytes of `key` are well-formed UTF-8 without U+10FFFF (Unicode table 3-7). */
function textHeadBytes(key: Uint8Array): number {
  let index = 0
  while (index < key.length) {
    const size = sequenceSize(key, index)
    if (size === 0) return index
    index += size
  }
  return index
}

/** The size of the well-formed sequence at `index`, or 0 when there is none (or it is U+10FFFF). */
function sequenceSize(key: Uint8Array, index: number): number {
  const lead = key[index] as number
  if (lead < 0x80) return 1
  const inRange = (offset: number, low = 0x80, high = 0xbf): boolean => {
    const byte = key[index + offset]
    return byte !== undefined && byte >= low && byte <= high
  }
  if (lead >= 0xc2 && lead <= 0xdf) return inRange(1) ? 2 : 0
  if (lead >= 0xe0 && lead <= 0xef) {
    const second = lead === 0xe0 ? inRange(1, 0xa0) : lead === 0xed ? inRange(1, 0x80, 0x9f) : inRange(1)
    return second && inRange(2) ? 3 : 0
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const second = lead === 0xf0 ? inRange(1, 0x90) : lead === 0xf4 ? inRange(1, 0x80, 0x8f) : inRange(1)
    if (!second || !inRange(2) || !inRange(3)) return 0
    return codePoint4(key, index) === ESCAPE_POINT ? 0 : 4
  }
  return 0
}

function codePoint4(key: Uint8Array, index: number): number {
  const byte = (offset: number): number => key[index + offset] as number
  return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3f) << 12) | ((byte(2) & 0x3f) << 6) | (byte(3) & 0x3f)
}
