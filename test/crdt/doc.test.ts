/**
 * The `doc` key space (crdt/doc.ts): property tests that Yjs updates applied in any order, any
 * number of times, on any node (then joined in any order) give the same document, and that a
 * compacted state is the same document as the uncompacted one. Updates come from real Y.Docs
 * edited concurrently (text inserts and deletes, map sets and deletes, syncs between them) and
 * from whole-document deletes made the way a node makes them.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { DocState, DocUpdateOp } from '../../src/crdt/index.js'
import {
  DOC_EMPTY,
  applyDoc,
  compactDoc,
  decodesAsYjsUpdate,
  docDeleteUpdate,
  docHasContent,
  docIdentity,
  docJson,
  joinDoc,
  parseTypeHints,
  prepareDocOp,
} from '../../src/crdt/index.js'
import { PROPERTY, meshErrorCode } from '../helpers/runs.js'

type Action =
  | { kind: 'insert'; client: number; at: number; text: string }
  | { kind: 'erase'; client: number; at: number; length: number }
  | { kind: 'set'; client: number; key: string; value: number }
  | { kind: 'unset'; client: number; key: string }
  | { kind: 'sync'; client: number; from: number }
  | { kind: 'wipe'; client: number }

const CLIENTS = 3
const clientArb = fc.integer({ min: 0, max: CLIENTS - 1 })
const keyArb = fc.constantFrom('a', 'b', 'c')
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    client: clientArb,
    at: fc.nat(20),
    text: fc.string({ minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant('erase' as const),
    client: clientArb,
    at: fc.nat(20),
    length: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ kind: fc.constant('set' as const), client: clientArb, key: keyArb, value: fc.integer() }),
  fc.record({ kind: fc.constant('unset' as const), client: clientArb, key: keyArb }),
  fc.record({ kind: fc.constant('sync' as const), client: clientArb, from: clientArb }),
  fc.record({ kind: fc.constant('wipe' as const), client: clientArb }),
)

const HINTS = parseTypeHints('body:text,meta:map')

/** Runs the actions on real Y.Docs; returns every update they made, in the order they were made. */
function updatesOf(actions: readonly Action[]): Uint8Array[] {
  const docs = Array.from({ length: CLIENTS }, (_, index) => {
    const doc = new Y.Doc()
    doc.clientID = index + 1 // fixed ids: a failing seed replays the same updates
    return doc
  })
  const updates: Uint8Array[] = []
  for (const doc of docs) doc.on('update', (update: Uint8Array) => updates.push(update))
  for (const action of actions) {
    const doc = docs[action.client] as Y.Doc
    const text = doc.getText('body')
    const map = doc.getMap<number>('meta')
    switch (action.kind) {
      case 'insert':
        text.insert(Math.min(action.at, text.length), action.text)
        break
      case 'erase':
        if (text.length > 0) {
          const at = Math.min(action.at, text.length - 1)
          text.delete(at, Math.min(action.length, text.length - at))
        }
        break
      case 'set':
        map.set(action.key, action.value)
        break
      case 'unset':
        map.delete(action.key)
        break
      case 'sync': {
        const from = docs[action.from] as Y.Doc
        Y.applyUpdate(doc, Y.encodeStateAsUpdate(from, Y.encodeStateVector(doc)))
        break
      }
      case 'wipe': {
        // A node's delete: an update deleting everything this client holds.
        const update = docDeleteUpdate({ update: Y.encodeStateAsUpdate(doc), base: 0 })
        if (update !== null) Y.applyUpdate(doc, update)
        break
      }
    }
  }
  for (const doc of docs) doc.destroy()
  return updates
}

/** The document all updates make, as a Y.Doc sees it. */
function referenceJson(updates: readonly Uint8Array[]): Record<string, unknown> {
  const doc = new Y.Doc()
  for (const update of updates) Y.applyUpdate(doc, update)
  const json = { body: doc.getText('body').toString(), meta: doc.getMap('meta').toJSON() }
  doc.destroy()
  return json
}

function op(update: Uint8Array): DocUpdateOp {
  return { type: 'doc.update', name: 'd', update }
}

function applyAll(updates: readonly Uint8Array[], state: DocState = DOC_EMPTY): DocState {
  return updates.reduce((acc, update) => applyDoc(acc, op(update)), state)
}

function sameDocument(a: DocState, b: DocState): void {
  expect(docIdentity(a)).toEqual(docIdentity(b))
  expect(docJson(a, HINTS)).toEqual(docJson(b, HINTS))
}

/** Updates, and a delivery of them to one node: any order, some more than once. */
const scenarioArb = fc
  .array(actionArb, { minLength: 1, maxLength: 25 })
  .map(updatesOf)
  .chain((updates) =>
    fc.record({
      updates: fc.constant(updates),
      delivery: fc.shuffledSubarray([...updates.keys(), ...updates.keys()], { minLength: 2 * updates.length }),
      nodes: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: updates.length, maxLength: updates.length }),
    }),
  )

describe('the doc key space', () => {
  it('gives the same document for updates applied in any order, any number of times', () => {
    fc.assert(
      fc.property(scenarioArb, ({ updates, delivery }) => {
        const inOrder = applyAll(updates)
        const shuffled = applyAll(delivery.map((index) => updates[index] as Uint8Array))
        sameDocument(shuffled, inOrder)
        expect(docJson(inOrder, HINTS)).toEqual(referenceJson(updates))
      }),
      PROPERTY,
    )
  })

  it('gives the same document on any node, however node states are joined', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(5), ({ updates, delivery, nodes }, order) => {
        // Each update reaches one node first (in delivery order); the nodes' states are then joined.
        const states: DocState[] = [DOC_EMPTY, DOC_EMPTY, DOC_EMPTY]
        for (const index of delivery) {
          const node = nodes[index] as number
          states[node] = applyDoc(states[node] as DocState, op(updates[index] as Uint8Array))
        }
        const [a, b, c] = states as [DocState, DocState, DocState]
        const joins = [
          joinDoc(joinDoc(a, b), c),
          joinDoc(a, joinDoc(b, c)),
          joinDoc(joinDoc(c, b), a),
          joinDoc(joinDoc(b, a), joinDoc(c, a)),
        ]
        const reference = applyAll(updates)
        sameDocument(joins[order % joins.length] as DocState, reference)
        sameDocument(joinDoc(reference, reference), reference)
        sameDocument(joinDoc(a, DOC_EMPTY), a)
      }),
      PROPERTY,
    )
  })

  it('compacts to the same document', () => {
    fc.assert(
      fc.property(scenarioArb, ({ updates, delivery }) => {
        const state = applyAll(delivery.map((index) => updates[index] as Uint8Array))
        const compacted = compactDoc(state)
        sameDocument(compacted, state)
        // Updates go on applying to a compacted state as to the uncompacted one.
        const more = updatesOf([{ kind: 'insert', client: 0, at: 0, text: 'z' }])
        sameDocument(applyAll(more, compacted), applyAll(more, state))
      }),
      PROPERTY,
    )
  })

  it('compacts on its own once a state has doubled, dropping deleted content', () => {
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (update: Uint8Array) => updates.push(update))
    const text = doc.getText('body')
    for (let round = 0; round < 200; round++) {
      text.insert(0, 'x'.repeat(500))
      text.delete(0, 500)
    }
    text.insert(0, 'kept')
    const state = applyAll(updates)
    const merged = Y.mergeUpdates(updates)
    expect(merged.length).toBeGreaterThan(90_000) // mergeUpdates alone keeps every deleted character
    expect(state.update.length).toBeLessThan(merged.length / 4)
    expect(docIdentity(state)).toEqual(docIdentity({ update: merged, base: merged.length }))
    expect(docJson(state)).toEqual({ body: 'kept' })
  })
})

describe('a delete of a document', () => {
  const written = (text: string, client: number): Uint8Array => {
    const doc = new Y.Doc()
    doc.clientID = client
    doc.getText('body').insert(0, text)
    return Y.encodeStateAsUpdate(doc)
  }

  it('removes what its writer held; a concurrent update survives; a later one re-creates it', () => {
    const first = applyAll([written('seen', 1)])
    const deletion = docDeleteUpdate(first) as Uint8Array
    const concurrent = written('unseen', 2)
    const deleted = applyAll([deletion], first)
    expect(docHasContent(deleted)).toBe(false)
    expect(docJson(deleted)).toEqual({})
    expect(docDeleteUpdate(deleted)).toBeNull()
    // Either order: the concurrent update's content stays, the deleted content does not.
    for (const state of [applyAll([concurrent], deleted), applyAll([concurrent, deletion], first)])
      expect(docJson(state)).toEqual({ body: 'unseen' })
    expect(docJson(applyAll([written('again', 3)], deleted))).toEqual({ body: 'again' })
  })

  it('is a write only when something is left to delete; an update already held changes nothing', () => {
    const state = applyAll([written('x', 1)])
    expect(prepareDocOp({ type: 'doc.delete', name: 'd' }, DOC_EMPTY)).toBeNull()
    expect(prepareDocOp({ type: 'doc.delete', name: 'd' }, state)?.type).toBe('doc.update')
    expect(prepareDocOp({ type: 'doc.update', name: 'd', update: written('x', 1) }, state)).toBeNull()
    expect(prepareDocOp({ type: 'doc.update', name: 'd', update: written('y', 2) }, state)?.type).toBe('doc.update')
  })

  it('refuses bytes that are not a Yjs update, and an update past its limit', () => {
    const refused = (update: Uint8Array): string =>
      meshErrorCode(() => prepareDocOp({ type: 'doc.update', name: 'd', update }, DOC_EMPTY))
    expect(refused(Uint8Array.of(5, 200, 1))).toBe('MESHKV_ERR_DECODE')
    // A one-byte change to a real update (its parent field): it decodes as structs, but no
    // Y.Doc loads it, and merged into a state it would break every later read of that state.
    const damaged = Uint8Array.of(1, 1, 1, 0, 4, 0, 1, 116, 2, 104, 105, 0)
    expect(decodesAsYjsUpdate(damaged)).toBe(true)
    expect(refused(damaged)).toBe('MESHKV_ERR_DECODE')
    expect(refused(new Uint8Array(1024 * 1024 + 1))).toBe('MESHKV_ERR_VALUE_TOO_LARGE')
  })
})

describe('docJson', () => {
  it('reads each top-level kind from its content, and takes hints', () => {
    const doc = new Y.Doc()
    doc.getText('body').insert(0, 'hi')
    doc.getMap('meta').set('n', 1)
    doc.getArray('list').push([1, 'two'])
    doc.getXmlFragment('xml').insert(0, [new Y.XmlElement('p')])
    doc.getText('empty')
    const state = applyAll([Y.encodeStateAsUpdate(doc)])
    expect(docJson(state)).toEqual({ body: 'hi', meta: { n: 1 }, list: [1, 'two'], xml: '<p></p>' })
    expect(docJson(state, parseTypeHints('empty:text,other:map'))).toMatchObject({ empty: '', other: {} })
    expect(meshErrorCode(() => parseTypeHints('body:blob'))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(meshErrorCode(() => parseTypeHints(':text'))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })
})
