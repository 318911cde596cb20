import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Dot, NodeId, VectorClock } from '../../src/clock/index.js'
import {
  TOKEN_ENTRIES_MAX,
  compareDots,
  decodeCausalToken,
  decodeVersion,
  encodeCausalToken,
  encodeVersion,
  isDot,
  isVectorClock,
  vcNormalize,
} from '../../src/clock/index.js'
import { MeshError } from '../../src/errors.js'
import { nodeIdArb } from '../helpers/replicas.js'
import { PROPERTY, expectEachRefused, meshErrorCode, thrown } from '../helpers/runs.js'

const URL_SAFE = /^[A-Za-z0-9._-]+$/
const seqArb = fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))
const vcArb: fc.Arbitrary<VectorClock> = fc
  .uniqueArray(fc.tuple(nodeIdArb, seqArb), { selector: ([node]) => node, maxLength: 8 })
  .map((entries) => vcNormalize(entries))
const dotsArb: fc.Arbitrary<Dot[]> = fc.uniqueArray(
  fc.record({
    node: fc.oneof(nodeIdArb, fc.constantFrom('00000000000000a1' as NodeId, '00000000000000b2' as NodeId)),
    seq: seqArb,
  }),
  { selector: (dot) => `${dot.node}:${dot.seq}`, maxLength: 8 },
)

// Hand-built token bodies, to reach every refusal on purpose.
function varint(value: number): number[] {
  const out: number[] = []
  let rest = value
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  out.push(rest)
  return out
}
const NODE_A = [0, 0, 0, 0, 0, 0, 0, 0xa1]
const NODE_B = [0, 0, 0, 0, 0, 0, 0, 0xb2]
const raw = (prefix: string, bytes: readonly number[]): string => prefix + Buffer.from(bytes).toString('base64url')

/** Every strict prefix of `text`, the empty string included. */
function prefixes(text: string): string[] {
  return Array.from({ length: text.length }, (_, length) => text.slice(0, length))
}

/** Decoding refuses with MESHKV_ERR_INVALID_TOKEN and nothing else. */
function expectInvalid(run: () => unknown): void {
  expect(meshErrorCode(run)).toBe('MESHKV_ERR_INVALID_TOKEN')
}

describe('causal tokens', () => {
  it('round trip any vector clock, and are URL-safe', () => {
    fc.assert(
      fc.property(vcArb, (vc) => {
        const token = encodeCausalToken(vc)
        expect(token).toMatch(URL_SAFE)
        expect(token.startsWith('c1.')).toBe(true)
        expect(decodeCausalToken(token)).toEqual(vc)
      }),
      PROPERTY,
    )
  })

  it('encode a clock the same whatever its key order, dropping zero entries', () => {
    fc.assert(
      fc.property(vcArb, (vc) => {
        const entries = Object.entries(vc).reverse()
        const shuffled = Object.fromEntries([...entries, ['00000000000000ff', 0]]) as VectorClock
        expect(decodeCausalToken(encodeCausalToken(shuffled))).toEqual(vc)
      }),
      PROPERTY,
    )
  })

  it('refuse every strict prefix of a token', () => {
    fc.assert(
      fc.property(vcArb, (vc) => {
        const token = encodeCausalToken(vc)
        expectEachRefused(prefixes(token), decodeCausalToken, 'MESHKV_ERR_INVALID_TOKEN')
      }),
      PROPERTY,
    )
  })

  it('refuse garbage with MESHKV_ERR_INVALID_TOKEN, or decode it to a valid clock', () => {
    const garbageArb = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 40 }).map((text) => `c1.${text}`),
      fc.uint8Array({ maxLength: 60 }).map((bytes) => raw('c1.', [...bytes])),
      // Mostly well-formed: a count, then entries whose lengths may be off.
      fc
        .tuple(fc.nat(4), fc.array(fc.uint8Array({ minLength: 6, maxLength: 11 }), { maxLength: 4 }))
        .map(([count, parts]) => raw('c1.', [count, ...parts.flatMap((part) => [...part])])),
    )
    fc.assert(
      fc.property(garbageArb, (token) => {
        const error = thrown(() => decodeCausalToken(token))
        if (error === undefined) {
          const vc = decodeCausalToken(token)
          expect(isVectorClock(vc)).toBe(true)
          expect(decodeCausalToken(encodeCausalToken(vc))).toEqual(vc)
        } else {
          expect(error).toBeInstanceOf(MeshError)
          expect((error as MeshError).code).toBe('MESHKV_ERR_INVALID_TOKEN')
        }
      }),
      PROPERTY,
    )
  })

  it('refuse a token that is not a string', () => {
    for (const value of [undefined, null, 5, {}, ['c1.AA'], Buffer.from('c1.AA')]) {
      expectInvalid(() => decodeCausalToken(value as unknown as string))
    }
  })

  it('refuse a wrong or missing prefix', () => {
    const body = encodeCausalToken({ '00000000000000a1': 3 } as VectorClock).slice(3)
    for (const prefix of ['', 'c2.', 'v1.', 'C1.', 'c1', 'c1..', ' c1.'])
      expectInvalid(() => decodeCausalToken(prefix + body))
  })

  it('refuse base64url that is not canonical: padding, standard alphabet, spare bits, stray length', () => {
    const token = raw('c1.', [1, ...NODE_A, 5])
    expect(decodeCausalToken(token)).toEqual({ '00000000000000a1': 5 })
    const body = token.slice(3)
    expect(body.length % 4).not.toBe(0)
    // The last character carries spare low bits; setting one decodes to the same bytes.
    const last = body.at(-1) as string
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const spare = alphabet[alphabet.indexOf(last) + 1] as string
    expect(Buffer.from(body.slice(0, -1) + spare, 'base64url')).toEqual(Buffer.from(body, 'base64url'))
    expectInvalid(() => decodeCausalToken(`c1.${body.slice(0, -1)}${spare}`))
    expectInvalid(() => decodeCausalToken(`c1.${body}==`))
    expectInvalid(() => decodeCausalToken(`c1.${body}A`))
    // The standard alphabet's + and / are not base64url.
    const standard = Buffer.from([1, ...NODE_A, 0xfb, 0xff, 0x7f]).toString('base64')
    expect(standard).toMatch(/[+/]/)
    expectInvalid(() => decodeCausalToken(`c1.${standard}`))
    expectInvalid(() => decodeCausalToken(`c1.${body.slice(0, 4)} ${body.slice(4)}`))
  })

  it('refuse trailing bytes, truncation, duplicated nodes, seq 0 and oversized numbers', () => {
    expectInvalid(() => decodeCausalToken(raw('c1.', [1, ...NODE_A, 5, 0])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [0, 0])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [2, ...NODE_A, 5])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [1, ...NODE_A.slice(0, 5)])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [1, ...NODE_A])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [2, ...NODE_A, 5, ...NODE_A, 6])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [3, ...NODE_A, 5, ...NODE_B, 6, ...NODE_A, 7])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [1, ...NODE_A, 0])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [1, ...NODE_A, 0x80, 0x00])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [0x80, 0x00])))
    expectInvalid(() => decodeCausalToken(raw('c1.', [1, ...NODE_A, ...varint(2 ** 53)])))
    expectInvalid(() =>
      decodeCausalToken(raw('c1.', [1, ...NODE_A, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    )
    expectInvalid(() => decodeCausalToken(raw('c1.', varint(TOKEN_ENTRIES_MAX + 1))))
    expectInvalid(() => decodeCausalToken(`c1.${'A'.repeat(TOKEN_ENTRIES_MAX * 24 + 4)}`))
    expectInvalid(() => decodeCausalToken(''))
    expectInvalid(() => decodeCausalToken('c1.'))
    // The largest exact seq is fine.
    expect(decodeCausalToken(raw('c1.', [1, ...NODE_A, ...varint(Number.MAX_SAFE_INTEGER)]))).toEqual({
      '00000000000000a1': Number.MAX_SAFE_INTEGER,
    })
  })

  it('refuse a duplicated node whatever the seqs', () => {
    fc.assert(
      fc.property(
        vcArb.filter((vc) => Object.keys(vc).length > 0),
        fc.nat(),
        seqArb,
        (vc, which, seq) => {
          const entries = Object.entries(vc)
          const [node] = entries[which % entries.length] as [string, number]
          const bytes = [entries.length + 1]
          for (const [n, s] of [...entries, [node, seq] as [string, number]])
            bytes.push(...Buffer.from(n, 'hex'), ...varint(s))
          expectInvalid(() => decodeCausalToken(raw('c1.', bytes)))
        },
      ),
      PROPERTY,
    )
  })
})

describe('versions', () => {
  it('round trip any set of dots, sorted, and are URL-safe', () => {
    fc.assert(
      fc.property(dotsArb, (dots) => {
        const version = encodeVersion(dots)
        expect(version).toMatch(URL_SAFE)
        expect(version.startsWith('v1.')).toBe(true)
        const decoded = decodeVersion(version)
        expect(decoded).toEqual([...dots].sort(compareDots))
        expect(encodeVersion([...dots].reverse())).toBe(version)
        expect(decoded.every(isDot)).toBe(true)
      }),
      PROPERTY,
    )
  })

  it('refuse every strict prefix, and garbage with MESHKV_ERR_INVALID_TOKEN only', () => {
    fc.assert(
      fc.property(dotsArb, fc.uint8Array({ maxLength: 40 }), (dots, garbage) => {
        const version = encodeVersion(dots)
        expectEachRefused(prefixes(version), decodeVersion, 'MESHKV_ERR_INVALID_TOKEN')
        const error = thrown(() => decodeVersion(raw('v1.', [...garbage])))
        if (error !== undefined) expect((error as MeshError).code).toBe('MESHKV_ERR_INVALID_TOKEN')
        expect(error === undefined || error instanceof MeshError).toBe(true)
      }),
      PROPERTY,
    )
  })

  it('refuse a wrong prefix, dots out of order, a repeated dot, seq 0 and trailing bytes', () => {
    expect(decodeVersion(raw('v1.', [0]))).toEqual([])
    expect(encodeVersion([])).toBe(raw('v1.', [0]))
    expectInvalid(() => decodeVersion(raw('c1.', [0])))
    expectInvalid(() => decodeVersion(raw('v1.', [2, ...NODE_B, 1, ...NODE_A, 1])))
    expectInvalid(() => decodeVersion(raw('v1.', [2, ...NODE_A, 2, ...NODE_A, 1])))
    expectInvalid(() => decodeVersion(raw('v1.', [2, ...NODE_A, 1, ...NODE_A, 1])))
    expectInvalid(() => decodeVersion(raw('v1.', [1, ...NODE_A, 0])))
    expectInvalid(() => decodeVersion(raw('v1.', [1, ...NODE_A, 1, 7])))
    // Two dots of one node are fine in a version (a node can hold two siblings of its own).
    expect(decodeVersion(raw('v1.', [2, ...NODE_A, 1, ...NODE_A, 2]))).toEqual([
      { node: '00000000000000a1', seq: 1 },
      { node: '00000000000000a1', seq: 2 },
    ])
  })
})
