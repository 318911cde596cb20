/**
 * Properties of MeshLevel's key encoding (src/level-keys.ts): every byte key round-trips, its
 * stored form is a key the node takes, and stored forms sort as the keys do, with and without a
 * prefix; and through a MeshLevel on a node, random byte keys come back in byte order. fast-check
 * prints the seed and counterexample of a failure (test/helpers/runs.ts).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeKey, encodeKey, encodeTextKey } from '../../src/level-keys.js'
import { MeshLevel } from '../../src/level.js'
import { MeshNode } from '../../src/node/index.js'
import { compareKeys } from '../../src/storage/index.js'
import { PROPERTY } from '../helpers/runs.js'

/** Bytes near the edges of UTF-8's ranges, where the gaps between text keys are. */
const edgeByte = fc.constantFrom(0x00, 0x01, 0x02, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2)
const edgeLead = fc.constantFrom(0xdf, 0xe0, 0xed, 0xee, 0xef, 0xf0, 0xf3, 0xf4, 0xf5, 0xff)
/** Keys mixing whole code points (U+10FFFF among them), edge bytes and any bytes. */
const keyArb = fc
  .array(
    fc.oneof(
      fc.string({ unit: 'binary', maxLength: 3 }).map((text) => [...Buffer.from(text, 'utf8')]),
      fc.constantFrom([0xf4, 0x8f, 0xbf, 0xbf], [0xf4, 0x8f, 0xbf, 0xbe], [0xef, 0xbf, 0xbf], [0xe2, 0x82]),
      fc.array(fc.oneof(edgeByte, edgeLead, fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    ),
    { maxLength: 5 },
  )
  .map((parts) => Uint8Array.from(parts.flat()))

/** String keys: any code points, lone surrogates among them (a JavaScript string may hold one). */
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit))
const stringKeyArb = fc
  .array(fc.oneof(fc.string({ unit: 'binary', maxLength: 3 }), loneSurrogate), { maxLength: 4 })
  .map((parts) => parts.join(''))

/** Strings near stored forms: any text, and text around the escape and the lead. */
const textArb = fc.string({ unit: 'binary', maxLength: 4 })
const storedArb = fc.oneof(
  textArb,
  fc.tuple(keyArb, textArb).map(([key, tail]) => encodeKey(key, false) + tail),
  fc.tuple(textArb, fc.constantFrom('\u{10FFFF}', '\u0001'), textArb).map((parts) => parts.join('')),
)

const byteOrder = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(a, b)
const hex = (key: Uint8Array): string => Buffer.from(key).toString('hex')

describe.each([{ bare: true }, { bare: false }])('the MeshLevel key encoding (bare: $bare)', ({ bare }) => {
  it('round-trips every byte key into a key the node takes', () => {
    fc.assert(
      fc.property(keyArb, (key) => {
        const stored = encodeKey(key, bare)
        expect(stored.isWellFormed()).toBe(true)
        if (bare) expect(stored === '' || stored.startsWith('\u0000')).toBe(false)
        expect(hex(decodeKey(stored, bare) ?? Uint8Array.of(0xde, 0xad))).toBe(hex(key))
      }),
      PROPERTY,
    )
  })

  it('sorts stored forms as the keys sort (UTF-8 byte order, the node order)', () => {
    fc.assert(
      fc.property(keyArb, keyArb, (a, b) => {
        expect(Math.sign(compareKeys(encodeKey(a, bare), encodeKey(b, bare)))).toBe(Math.sign(byteOrder(a, b)))
      }),
      PROPERTY,
    )
  })

  it('stores a string key as its UTF-8 bytes, and text as itself', () => {
    fc.assert(
      fc.property(stringKeyArb, (text) => {
        // Buffer.from gives a lone surrogate as U+FFFD, as Level's utf8 encoding does.
        expect(encodeTextKey(text, bare)).toBe(encodeKey(Buffer.from(text, 'utf8'), bare))
        const own =
          text.isWellFormed() && !text.includes('\u{10FFFF}') && !(bare && (text === '' || text.charCodeAt(0) <= 1))
        if (own) expect(encodeTextKey(text, bare)).toBe(text)
      }),
      PROPERTY,
    )
  })

  it('decodes no stored key that it would not make', () => {
    fc.assert(
      fc.property(storedArb, (stored) => {
        const bytes = decodeKey(stored, bare)
        if (bytes !== undefined) expect(encodeKey(bytes, bare)).toBe(stored)
      }),
      PROPERTY,
    )
  })
})

describe('MeshLevel over random byte keys', () => {
  it.each([{ keyPrefix: undefined }, { keyPrefix: 'p/' }])(
    'iterates them in byte order, forward, in reverse and over a range (prefix $keyPrefix)',
    async ({ keyPrefix }) => {
      const node = await MeshNode.open({ dir: '', memory: true })
      try {
        // A few dozen databases of a few dozen keys: each run writes to the node.
        const runs = Math.max(1, Math.ceil(PROPERTY.numRuns / 20))
        await fc.assert(
          fc.asyncProperty(fc.array(keyArb, { maxLength: 30 }), keyArb, async (keys, bound) => {
            const db = new MeshLevel<Uint8Array, string>(node, { keyPrefix, keyEncoding: 'view' })
            await db.clear()
            await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: hex(key) })))
            const sorted = [...new Map(keys.map((key) => [hex(key), key])).values()].sort(byteOrder)
            const all = await db.iterator().all()
            expect(all.map(([key]) => hex(key))).toEqual(sorted.map(hex))
            expect(all.map(([, value]) => value)).toEqual(sorted.map(hex))
            expect((await db.keys({ reverse: true }).all()).map(hex)).toEqual(sorted.map(hex).reverse())
            const above = sorted.filter((key) => byteOrder(key, bound) >= 0)
            expect((await db.keys({ gte: bound }).all()).map(hex)).toEqual(above.map(hex))
            await db.close()
          }),
          { numRuns: runs },
        )
      } finally {
        await node.close()
      }
    },
    120_000,
  )
})
