/**
 * Causal tokens: a vector clock handed to clients as "you have seen at least this". Compact and
 * URL-safe: `c1.` followed by base64url of (entry count, then per entry 8 raw node-id bytes and
 * an unsigned LEB128 seq). Validated on decode: a token that does not parse exactly is refused.
 * The same byte layout carries a key's version (a sorted set of dots) with the prefix `v1.`.
 */
import { MeshError } from '../errors.js'
import type { Dot, NodeId } from './dot.js'
import { compareDots, isSeq, nodeIdFromBytes } from './dot.js'
import type { VectorClock } from './vector-clock.js'
import { vcNormalize } from './vector-clock.js'

const TOKEN_PREFIX = 'c1.'
const VERSION_PREFIX = 'v1.'
/** Bound on entries so a hostile token cannot make us allocate without limit. */
export const TOKEN_ENTRIES_MAX = 4096
const BASE64URL = /^[A-Za-z0-9_-]*$/

export function encodeCausalToken(vc: VectorClock): string {
  const entries = Object.entries(vc) as [NodeId, number][]
  return TOKEN_PREFIX + encodePairs(entries.filter(([, seq]) => seq > 0))
}

/**
 * The token of the last clock asked for, kept while the same clock object is asked for again:
 * for a store's clock, which is never changed in place (a commit makes a new one), and which
 * every HTTP answer carries.
 */
export class LastCausalToken {
  #vc: VectorClock | undefined = undefined
  #token = ''

  of(vc: VectorClock): string {
    if (this.#vc !== vc) {
      this.#token = encodeCausalToken(vc)
      this.#vc = vc
    }
    return this.#token
  }
}

export function decodeCausalToken(token: string): VectorClock {
  const pairs = decodePairs(token, TOKEN_PREFIX, 'causal token')
  const seen = new Set<string>()
  for (const [node] of pairs) {
    if (seen.has(node)) throw invalid('causal token', 'repeats a node')
    seen.add(node)
  }
  return vcNormalize(pairs)
}

/** A key's version: the sorted set of dots of its current siblings. Empty for a missing key. */
export function encodeVersion(dots: readonly Dot[]): string {
  const sorted = [...dots].sort(compareDots)
  return VERSION_PREFIX + encodePairs(sorted.map((dot) => [dot.node, dot.seq]))
}

export function decodeVersion(version: string): Dot[] {
  const dots = decodePairs(version, VERSION_PREFIX, 'version').map(([node, seq]) => ({ node, seq }))
  for (let i = 1; i < dots.length; i++) {
    if (compareDots(dots[i - 1] as Dot, dots[i] as Dot) >= 0) throw invalid('version', 'is not in canonical order')
  }
  return dots
}

function encodePairs(pairs: readonly [NodeId, number][]): string {
  // Each pair takes 8 bytes of node id and at most 8 of seq (a safe integer in LEB128).
  const bytes = Buffer.allocUnsafe(varintBytes(pairs.length) + pairs.length * 16)
  let offset = writeVarint(bytes, 0, pairs.length)
  for (const [node, seq] of pairs) {
    offset += bytes.write(node, offset, 'hex')
    offset = writeVarint(bytes, offset, seq)
  }
  return bytes.toString('base64url', 0, offset)
}

function decodePairs(text: string, prefix: string, what: string): [NodeId, number][] {
  if (typeof text !== 'string' || !text.startsWith(prefix)) throw invalid(what, `must start with ${prefix}`)
  const body = text.slice(prefix.length)
  if (!BASE64URL.test(body) || body.length > TOKEN_ENTRIES_MAX * 24) throw invalid(what, 'is not base64url or too long')
  const bytes = Buffer.from(body, 'base64url')
  if (bytes.toString('base64url') !== body) throw invalid(what, 'is not canonical base64url')
  const reader = { bytes, offset: 0 }
  const count = readVarint(reader, what)
  if (count > TOKEN_ENTRIES_MAX) throw invalid(what, 'has too many entries')
  const pairs: [NodeId, number][] = []
  for (let i = 0; i < count; i++) {
    if (reader.offset + 8 > bytes.length) throw invalid(what, 'is truncated')
    const node = nodeIdFromBytes(bytes.subarray(reader.offset, reader.offset + 8))
    reader.offset += 8
    const seq = readVarint(reader, what)
    if (!isSeq(seq)) throw invalid(what, 'holds a seq below 1')
    pairs.push([node, seq])
  }
  if (reader.offset !== bytes.length) throw invalid(what, 'has trailing bytes')
  return pairs
}

/** Writes `value` as an unsigned LEB128 at `offset`; answers the offset after it. */
function writeVarint(out: Buffer, offset: number, value: number): number {
  let rest = value
  let at = offset
  while (rest >= 0x80) {
    out[at++] = (rest % 0x80) | 0x80
    rest = Math.floor(rest / 0x80)
  }
  out[at++] = rest
  return at
}

function varintBytes(value: number): number {
  let bytes = 1
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes++
  return bytes
}

function readVarint(reader: { bytes: Uint8Array; offset: number }, what: string): number {
  let value = 0
  let scale = 1
  for (let i = 0; i < 8; i++) {
    if (reader.offset >= reader.bytes.length) throw invalid(what, 'is truncated')
    const byte = reader.bytes[reader.offset++] as number
    value += (byte & 0x7f) * scale
    if (byte < 0x80) {
      if (i > 0 && byte === 0) throw invalid(what, 'has a non-minimal number')
      if (!Number.isSafeInteger(value)) throw invalid(what, 'holds a number too large')
      return value
    }
    scale *= 0x80
  }
  throw invalid(what, 'holds a number too large')
}

function invalid(what: string, why: string): MeshError {
  return new MeshError('MESHKV_ERR_INVALID_TOKEN', `the ${what} ${why}`)
}
