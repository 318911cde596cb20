/**
 * The store conformance suite: every `Backend` (LevelDB, memory) must give a `Store` the same
 * behaviour. `makeBackend` returns a fresh backend, a way to reopen the same data after `close`
 * (a new LevelDB instance on the same directory, or the same memory instance: a disk that
 * survives), and a cleanup.
 */
import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Dot, Hlc, NodeId, VectorClock } from '../../src/clock/index.js'
import { HLC_ZERO, compareHlc, encodeVersion, isNodeId, toNodeId, vcGet, vcSet } from '../../src/clock/index.js'
import type { AnyState, Change, CounterState, Intent, Op, RegisterState, Space } from '../../src/crdt/index.js'
import { counterValue, lwwSibling, registerDots, setMembers } from '../../src/crdt/index.js'
import { MeshError } from '../../src/errors.js'
import type {
  Backend,
  BackendSnapshot,
  BackendWrite,
  CommitResult,
  LogEntry,
  Range,
  StateReader,
  StoreOptions,
  StoreSnapshot,
  Sub,
} from '../../src/storage/index.js'
import {
  FOLLOW_PAGE_ENTRIES,
  GROUP_CHANGES_MAX,
  SUBS,
  Store,
  checkStates,
  followLog,
  stateId,
} from '../../src/storage/index.js'
import { encode } from '../../src/codec/index.js'
import { PURGE_BATCH_MAX } from '../../src/storage/gc.js'
import { DOT_INDEX_STRIDE } from '../../src/storage/layout.js'
import { plainBytes } from '../helpers/bytes.js'
import { byUtf8, meshCodeOf, nextWithin, prng, rejectionOf, takeWithin, turn } from '../helpers/async.js'

export interface BackendFixture {
  backend: Backend
  /** The same data after `close`: a new instance on the same directory, or the same memory instance. */
  reopen: () => Backend
  cleanup: () => Promise<void>
}

const START_MS = 1_700_000_000_000
const OTHER = toNodeId('a1a1a1a1a1a1a1a1')
const THIRD = toNodeId('b2b2b2b2b2b2b2b2')
const SPACES: readonly Space[] = ['kv', 'counter', 'set']

// ---------------------------------------------------------------------------------------------
// Building intents, ops and changes by hand.

const enc = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'))
const dec = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8')

type RegisterExtra = { ifMatch?: string; ifNoneMatch?: boolean; context?: readonly Dot[] }

function put(key: string, value: string, extra: RegisterExtra = {}): Intent {
  return { type: 'kv.put', key, value: enc(value), contentType: 'text/plain', ...extra }
}
function del(key: string, extra: Omit<RegisterExtra, 'ifNoneMatch'> = {}): Intent {
  return { type: 'kv.del', key, ...extra }
}
function incr(name: string, delta: number): Intent {
  return { type: 'counter.add', name, delta }
}
function add(name: string, member: string): Intent {
  return { type: 'set.add', name, member }
}
function remove(name: string, member: string): Intent {
  return { type: 'set.remove', name, member }
}

function rput(key: string, value: string, context: readonly Dot[] = []): Op {
  return { type: 'kv.put', key, value: enc(value), contentType: 'text/plain', context }
}

function remoteChange(node: NodeId, seq: number, ops: readonly Op[], deps: VectorClock, hlc: Hlc): Change {
  return { dot: { node, seq }, deps, hlc, ops }
}

function vc(...entries: [NodeId, number][]): VectorClock {
  return Object.fromEntries(entries) as VectorClock
}

// ---------------------------------------------------------------------------------------------
// Reading back.

async function valueOf(reader: Pick<StateReader, 'getState'>, key: string): Promise<string | undefined> {
  const winner = lwwSibling(await reader.getState('kv', key))
  return winner === undefined || winner.value === null ? undefined : dec(winner.value)
}

async function keysOf(reader: Pick<StateReader, 'iterateStates'>, space: Space, range: Range = {}): Promise<string[]> {
  const keys: string[] = []
  for await (const [key] of reader.iterateStates(space, range)) keys.push(key)
  return keys
}

async function dumpStates(reader: Pick<StateReader, 'iterateStates'>): Promise<Record<Space, [string, AnyState][]>> {
  const out = { kv: [], counter: [], set: [], doc: [] } as Record<Space, [string, AnyState][]>
  for (const space of SPACES) for await (const entry of reader.iterateStates(space, {})) out[space].push(entry)
  return out
}

/** Every encoded state of `store` in `spaces`, as a sender ships them, with the clock they reflect. */
async function snapshotOf(
  store: Store,
  spaces: readonly Space[] = SPACES,
): Promise<{ entries: [Space, string, Uint8Array][]; vc: VectorClock }> {
  const view = await store.snapshot()
  const entries: [Space, string, Uint8Array][] = []
  for (const space of spaces)
    for await (const [key, bytes] of view.iterateRaw(space, {})) entries.push([space, key, bytes])
  await view.close()
  return { entries, vc: view.vc }
}

function stateAfter(result: CommitResult, space: Space, key: string): AnyState {
  const state = result.states.get(stateId(space, key))
  if (state === undefined) throw new Error(`the commit result holds no state for ${space} ${key}`)
  return state
}

function versionOf(state: AnyState): string {
  return encodeVersion(registerDots(state as RegisterState))
}

function changeOf(result: CommitResult): Change {
  if (result.change === null) throw new Error('expected the commit to make a change')
  return result.change
}

/** A snapshot's entries as two chunks. */
function halves<T>(entries: readonly T[]): [T[], T[]] {
  const middle = Math.ceil(entries.length / 2)
  return [entries.slice(0, middle), entries.slice(middle)]
}

/** Entries per sublevel of a closed store's data, read from a backend opened (and closed) here. */
async function rawCounts(backend: Backend): Promise<Record<Sub, number>> {
  await backend.open()
  try {
    const counts = {} as Record<Sub, number>
    for (const sub of SUBS) {
      counts[sub] = 0
      for await (const _ of backend.iterate(sub, {})) counts[sub]++
    }
    return counts
  } finally {
    await backend.close()
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}

// ---------------------------------------------------------------------------------------------
// A backend whose writes can be made to fail, as on a full disk.

class FailingBackend implements Backend {
  readonly kind: 'level' | 'memory'
  /** How many of the next writes fail. */
  failNext = 0
  /** Fails each write this says yes to (a write of one kind, the nth of a kind). */
  failWhen: ((writes: readonly BackendWrite[]) => boolean) | null = null
  /** Runs before each write reaches the backend (to read the store between two batches of its own). */
  beforeWrite: (() => Promise<void>) | null = null
  writeCalls = 0

  constructor(readonly inner: Backend) {
    this.kind = inner.kind
  }

  open(): Promise<void> {
    return this.inner.open()
  }
  close(): Promise<void> {
    return this.inner.close()
  }
  get(sub: Sub, key: string): Promise<Uint8Array | undefined> {
    return this.inner.get(sub, key)
  }
  getMany(sub: Sub, keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return this.inner.getMany(sub, keys)
  }
  iterate(sub: Sub, range: Range): AsyncIterable<[string, Uint8Array]> {
    return this.inner.iterate(sub, range)
  }
  snapshot(): BackendSnapshot {
    return this.inner.snapshot()
  }
  async write(writes: readonly BackendWrite[], options: { sync: boolean }): Promise<void> {
    this.writeCalls++
    await this.beforeWrite?.()
    if (this.failNext > 0 || this.failWhen?.(writes) === true) {
      this.failNext = Math.max(0, this.failNext - 1)
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 })
    }
    return this.inner.write(writes, options)
  }
}

// ---------------------------------------------------------------------------------------------
// A harness: an injected clock, counted randomness, and every store closed after each test.

/** A second, independent backend for a test that needs two stores. */
async function makeBackendFor(h: Harness): Promise<BackendFixture> {
  const fixture = await h.makeAnother()
  h.extra.push(fixture)
  return fixture
}

class Harness {
  ms = START_MS
  readonly extra: BackendFixture[] = []
  makeAnother: () => Promise<BackendFixture> = () => Promise.reject(new Error('no backend factory'))
  randomCalls = 0
  readonly #open = new Set<Store>()

  constructor(readonly fixture: BackendFixture) {}

  options(backend: Backend, extra: Partial<StoreOptions> = {}): StoreOptions {
    return {
      backend,
      now: () => this.ms,
      randomBytes: (size) => {
        this.randomCalls++
        return new Uint8Array(randomBytes(size))
      },
      ...extra,
    }
  }

  async open(extra: Partial<StoreOptions> = {}, backend: Backend = this.fixture.backend): Promise<Store> {
    const store = await Store.open(this.options(backend, extra))
    this.#open.add(store)
    return store
  }

  /** Closes `store` and opens the same data again, as a restarted process would. */
  async reopen(store: Store, extra: Partial<StoreOptions> = {}): Promise<Store> {
    await this.close(store)
    return this.open(extra, this.fixture.reopen())
  }

  async close(store: Store): Promise<void> {
    await store.close()
    this.#open.delete(store)
  }

  async dispose(): Promise<void> {
    for (const store of this.#open) await store.close()
    this.#open.clear()
    await this.fixture.cleanup()
    for (const fixture of this.extra) await fixture.cleanup()
  }
}

// ---------------------------------------------------------------------------------------------

export function storeConformance(name: string, makeBackend: () => Promise<BackendFixture>): void {
  describe(`Store over ${name}`, () => {
    let h: Harness

    beforeEach(async () => {
      h = new Harness(await makeBackend())
      h.makeAnother = makeBackend
    })

    afterEach(async () => {
      await h.dispose()
    })

    describe('identity', () => {
      it('makes a node id once and keeps it across reopens', async () => {
        const store = await h.open()
        const nodeId = store.nodeId
        expect(isNodeId(nodeId)).toBe(true)
        expect(h.randomCalls).toBe(1)
        expect(store.kind).toBe(h.fixture.backend.kind)
        expect(store.lsn).toBe(0)
        expect(store.vc).toEqual({})
        expect(store.hlc).toEqual(HLC_ZERO)

        const again = await h.reopen(store)
        expect(again.nodeId).toBe(nodeId)
        const third = await h.reopen(again)
        expect(third.nodeId).toBe(nodeId)
        expect(h.randomCalls).toBe(1)
      })

      it('refuses a second open of data that is already open with MESHKV_ERR_LOCKED, and opens it once closed', async () => {
        const store = await h.open()
        expect(await meshCodeOf(Store.open(h.options(h.fixture.reopen())))).toBe('MESHKV_ERR_LOCKED')
        await store.commitLocal([put('still', 'works')])
        const nodeId = store.nodeId
        await h.close(store)
        const again = await h.open({}, h.fixture.reopen())
        expect(again.nodeId).toBe(nodeId)
        expect(await valueOf(again, 'still')).toBe('works')
      })

      it('rejects every call on a closed store with MESHKV_ERR_CLOSED', async () => {
        const store = await h.open()
        await store.commitLocal([put('a', '1')])
        await h.close(store)
        await store.close() // twice is fine
        const calls: (() => Promise<unknown>)[] = [
          () => store.commitLocal([put('a', '2')]),
          () => store.applyRemote(remoteChange(OTHER, 1, [rput('r', 'x')], {}, { wallMs: START_MS, logical: 0 })),
          () => store.getState('kv', 'a'),
          () => store.readLog(0, 10),
          () => store.firstLsn(),
          () => store.lsnOfDot({ node: store.nodeId, seq: 1 }),
          () => store.snapshot(),
          async () => {
            for await (const entry of store.iterateStates('kv', {})) void entry
          },
        ]
        for (const call of calls) expect(await meshCodeOf(call)).toBe('MESHKV_ERR_CLOSED')
      })
    })

    describe('local commits', () => {
      it('makes one change per call: dots 1, 2, 3… without gaps, deps = prior VC, HLC strictly increasing, LSN increasing', async () => {
        const store = await h.open()
        const self = store.nodeId
        const steps: { intents: Intent[]; clockMs: number; hlc: Hlc }[] = [
          { intents: [put('a', '1')], clockMs: START_MS, hlc: { wallMs: START_MS, logical: 0 } },
          { intents: [put('a', '2')], clockMs: START_MS, hlc: { wallMs: START_MS, logical: 1 } },
          // The wall clock steps back: the HLC does not.
          { intents: [del('a')], clockMs: START_MS - 5_000, hlc: { wallMs: START_MS, logical: 2 } },
          { intents: [incr('c', 5)], clockMs: START_MS + 10, hlc: { wallMs: START_MS + 10, logical: 0 } },
          { intents: [incr('c', -2)], clockMs: START_MS + 10, hlc: { wallMs: START_MS + 10, logical: 1 } },
          { intents: [add('s', 'x')], clockMs: START_MS + 20, hlc: { wallMs: START_MS + 20, logical: 0 } },
          { intents: [remove('s', 'x')], clockMs: START_MS + 19, hlc: { wallMs: START_MS + 20, logical: 1 } },
          { intents: [put('b', '3')], clockMs: START_MS + 30, hlc: { wallMs: START_MS + 30, logical: 0 } },
        ]
        const commits: LogEntry[][] = []
        store.onCommit((entries) => commits.push([...entries]))
        let previousHlc = store.hlc
        const changes: Change[] = []
        for (const [i, step] of steps.entries()) {
          h.ms = step.clockMs
          const vcBefore = store.vc
          const result = await store.commitLocal(step.intents)
          const change = changeOf(result)
          changes.push(change)
          expect(change.dot).toEqual({ node: self, seq: i + 1 })
          expect(change.deps).toEqual(vcBefore)
          expect(change.ops).toHaveLength(1)
          expect(change.ops[0]?.type).toBe(step.intents[0]?.type)
          expect(change.hlc).toEqual(step.hlc)
          expect(compareHlc(change.hlc, previousHlc)).toBeGreaterThan(0)
          expect(result.lsn).toBe(i + 1)
          expect(store.lsn).toBe(i + 1)
          expect(result.vc).toEqual(vcSet(vcBefore, self, i + 1))
          expect(store.vc).toEqual(result.vc)
          expect(store.hlc).toEqual(change.hlc)
          expect(await store.lsnOfDot(change.dot)).toBe(i + 1)
          previousHlc = change.hlc
        }
        // A blind write replaces exactly what the node held.
        expect(changes[1]?.ops[0]).toMatchObject({ type: 'kv.put', context: [{ node: self, seq: 1 }] })
        expect(changes[2]?.ops[0]).toMatchObject({ type: 'kv.del', context: [{ node: self, seq: 2 }] })
        expect(commits.map((entries) => entries.map((entry) => entry.lsn))).toEqual(
          range(1, steps.length).map((lsn) => [lsn]),
        )

        expect(await valueOf(store, 'a')).toBeUndefined()
        expect((await store.getState('kv', 'a')).siblings).toHaveLength(1) // the tombstone
        expect(counterValue(await store.getState('counter', 'c'))).toBe(3)
        expect(setMembers(await store.getState('set', 's'))).toEqual([])
        expect(await valueOf(store, 'b')).toBe('3')
        const log = await store.readLog(0, 100)
        expect(log.map((entry) => entry.lsn)).toEqual(range(1, steps.length))
        expect(plainBytes(log.map((entry) => entry.change))).toEqual(plainBytes(changes))
      })

      it('makes one change of a batch of several intents, leaving out the ones that change nothing', async () => {
        const store = await h.open()
        const self = store.nodeId
        await store.commitLocal([put('gone', 'soon')])
        const before = { lsn: store.lsn, vc: store.vc }
        const commits: LogEntry[][] = []
        store.onCommit((entries) => commits.push([...entries]))

        const result = await store.commitLocal([
          put('a', '1'),
          put('b', '2'),
          del('gone'),
          del('never-was'),
          incr('c', 7),
          add('s', 'm1'),
          add('s', 'm2'),
          remove('s', 'absent'),
        ])
        const change = changeOf(result)
        expect(change.ops.map((op) => op.type)).toEqual([
          'kv.put',
          'kv.put',
          'kv.del',
          'counter.add',
          'set.add',
          'set.add',
        ])
        expect(change.dot).toEqual({ node: self, seq: vcGet(before.vc, self) + 1 })
        expect(result.lsn).toBe(before.lsn + 1)
        expect(vcGet(store.vc, self)).toBe(vcGet(before.vc, self) + 1)
        expect(commits).toHaveLength(1)
        expect(commits[0]).toHaveLength(1)
        expect(await store.readLog(before.lsn, 10)).toHaveLength(1)
        expect(setMembers(stateAfter(result, 'set', 's') as never)).toEqual(['m1', 'm2'])

        expect(await valueOf(store, 'a')).toBe('1')
        expect(await valueOf(store, 'b')).toBe('2')
        expect(await valueOf(store, 'gone')).toBeUndefined()
        expect(counterValue(await store.getState('counter', 'c'))).toBe(7)
        expect(setMembers(await store.getState('set', 's'))).toEqual(['m1', 'm2'])

        // A batch in which nothing changes is no change at all.
        const nothing = await store.commitLocal([del('never-was'), remove('s', 'absent')])
        expect(nothing.change).toBeNull()
        expect(nothing.lsn).toBe(store.lsn)
        expect(store.lsn).toBe(before.lsn + 1)
        expect(nothing.vc).toEqual(store.vc)
        expect(commits).toHaveLength(1)
        expect(nothing.states.get(stateId('kv', 'never-was'))).toEqual({ siblings: [] })
      })

      it('fails a batch whose precondition fails with MESHKV_ERR_PRECONDITION_FAILED and writes none of it', async () => {
        const store = await h.open()
        const self = store.nodeId
        const first = await store.commitLocal([put('k', 'v1')])
        const v1 = versionOf(stateAfter(first, 'kv', 'k'))
        const second = await store.commitLocal([put('k', 'v2', { ifMatch: v1 })])
        const v2 = versionOf(stateAfter(second, 'kv', 'k'))
        expect(v2).not.toBe(v1)

        const before = { lsn: store.lsn, vc: store.vc, hlc: store.hlc }
        h.ms += 1_000
        const failing: Intent[][] = [
          [put('other', 'x'), put('k', 'v3', { ifMatch: v1 })],
          [put('other', 'x'), incr('c', 1), put('k', 'v3', { ifNoneMatch: true })],
          [add('s', 'm'), put('other', 'x'), del('k', { ifMatch: v1 })],
          [put('other', 'x'), put('missing', 'x', { ifMatch: v2 })],
          [put('missing', 'x', { ifMatch: encodeVersion([]) })],
        ]
        for (const intents of failing)
          expect(await meshCodeOf(store.commitLocal(intents))).toBe('MESHKV_ERR_PRECONDITION_FAILED')
        expect(store.lsn).toBe(before.lsn)
        expect(store.vc).toEqual(before.vc)
        expect(store.hlc).toEqual(before.hlc)
        expect(await store.readLog(before.lsn, 10)).toEqual([])
        expect(await valueOf(store, 'other')).toBeUndefined()
        expect(await valueOf(store, 'missing')).toBeUndefined()
        expect(await valueOf(store, 'k')).toBe('v2')
        expect(counterValue(await store.getState('counter', 'c'))).toBe(0)
        expect(setMembers(await store.getState('set', 's'))).toEqual([])

        // Preconditions that hold.
        const ok = await store.commitLocal([put('k', 'v3', { ifMatch: v2 }), put('fresh', 'f', { ifNoneMatch: true })])
        expect(changeOf(ok).ops).toHaveLength(2)
        await store.commitLocal([del('fresh')])
        // A tombstone is no live value: If-None-Match holds.
        await store.commitLocal([put('fresh', 'again', { ifNoneMatch: true })])
        expect(await valueOf(store, 'fresh')).toBe('again')

        // A failing commit among others in one group leaves no gap in the dots.
        const seq = vcGet(store.vc, self)
        const outcomes = await Promise.allSettled([
          store.commitLocal([put('g1', '1')]),
          store.commitLocal([put('k', 'x', { ifMatch: v1 })]),
          store.commitLocal([put('g2', '2')]),
        ])
        expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
        const [g1, failed, g2] = outcomes
        expect(g1?.status === 'fulfilled' && changeOf(g1.value).dot.seq).toBe(seq + 1)
        expect(failed?.status === 'rejected' && (failed.reason as MeshError).code).toBe(
          'MESHKV_ERR_PRECONDITION_FAILED',
        )
        expect(g2?.status === 'fulfilled' && changeOf(g2.value).dot.seq).toBe(seq + 2)
        expect(vcGet(store.vc, self)).toBe(seq + 2)
      })

      it('refuses two intents on one key with MESHKV_ERR_BATCH_INVALID and writes nothing', async () => {
        const store = await h.open()
        const invalid: Intent[][] = [
          [put('k', '1'), put('k', '2')],
          [put('k', '1'), del('k')],
          [put('x', '1'), put('k', '1'), del('k')],
          [incr('c', 1), incr('c', 2)],
          [add('s', 'm'), remove('s', 'm')],
          [add('s', 'm'), add('s', 'm')],
        ]
        for (const intents of invalid)
          expect(await meshCodeOf(store.commitLocal(intents))).toBe('MESHKV_ERR_BATCH_INVALID')
        expect(store.lsn).toBe(0)
        expect(store.vc).toEqual({})
        expect(await keysOf(store, 'kv')).toEqual([])

        // Different members of one set, and one name in each key space, are distinct targets.
        const ok = await store.commitLocal([
          add('s', 'm'),
          remove('s', 'other'),
          add('s', 'n'),
          put('n', '1'),
          incr('n', 1),
          add('n', 'n'),
        ])
        expect(changeOf(ok).ops.map((op) => op.type)).toEqual([
          'set.add',
          'set.add',
          'kv.put',
          'counter.add',
          'set.add',
        ])
        expect(setMembers(await store.getState('set', 's'))).toEqual(['m', 'n'])
        expect(await valueOf(store, 'n')).toBe('1')
        expect(counterValue(await store.getState('counter', 'n'))).toBe(1)
        expect(setMembers(await store.getState('set', 'n'))).toEqual(['n'])
      })

      it('group-commits many concurrent calls, each resolving with its own change, all present after reopen', async () => {
        const store = await h.open()
        const self = store.nodeId
        const batches: number[] = []
        store.onCommit((entries) => batches.push(entries.length))
        const count = 600
        const keyOf = (i: number): string => `g/${String(i).padStart(4, '0')}`
        const results = await Promise.all(range(0, count - 1).map((i) => store.commitLocal([put(keyOf(i), `v${i}`)])))

        expect(batches.reduce((a, b) => a + b, 0)).toBe(count)
        expect(Math.max(...batches)).toBeGreaterThan(1)
        expect(Math.max(...batches)).toBeLessThanOrEqual(GROUP_CHANGES_MAX)
        expect(batches.length).toBeLessThan(count / 2)
        for (const [i, result] of results.entries()) {
          const change = changeOf(result)
          expect(plainBytes(change.ops)).toEqual([
            expect.objectContaining({ type: 'kv.put', key: keyOf(i), value: enc(`v${i}`) }),
          ])
          expect(result.lsn).toBe(await store.lsnOfDot(change.dot))
        }
        expect(results.map((result) => changeOf(result).dot.seq).sort((a, b) => a - b)).toEqual(range(1, count))
        expect(new Set(results.map((result) => result.lsn)).size).toBe(count)
        expect(store.lsn).toBe(count)

        const again = await h.reopen(store)
        expect(again.lsn).toBe(count)
        expect(vcGet(again.vc, self)).toBe(count)
        const log = await again.readLog(0, count + 10)
        expect(log.map((entry) => entry.lsn)).toEqual(range(1, count))
        expect(await keysOf(again, 'kv')).toEqual(range(0, count - 1).map(keyOf))
        for (const i of range(0, count - 1)) expect(await valueOf(again, keyOf(i))).toBe(`v${i}`)
      })

      it('leaves exactly one sibling after concurrent blind puts on one key from this node', async () => {
        const store = await h.open()
        const results = await Promise.all(range(0, 49).map((i) => store.commitLocal([put('hot', `v${i}`)])))
        for (const [i, result] of results.entries()) {
          expect((stateAfter(result, 'kv', 'hot') as RegisterState).siblings).toHaveLength(1)
          const previous = results[i - 1]
          expect(changeOf(result).ops[0]).toMatchObject({
            context: previous === undefined ? [] : [changeOf(previous).dot],
          })
        }
        const state = await store.getState('kv', 'hot')
        expect(state.siblings).toHaveLength(1)
        expect(state.siblings[0]?.dot).toEqual(changeOf(results[49] as CommitResult).dot)
        expect(await valueOf(store, 'hot')).toBe('v49')
      })
    })

    describe('remote changes', () => {
      it('applies changes from other nodes; local changes then depend on them and follow their clocks', async () => {
        const store = await h.open()
        const self = store.nodeId
        const local = changeOf(await store.commitLocal([put('mine', 'local')]))
        h.ms = START_MS + 100

        const c1 = remoteChange(
          OTHER,
          1,
          [
            rput('r', 'remote'),
            { type: 'counter.add', name: 'c', delta: 4 },
            { type: 'set.add', name: 's', member: 'm', context: [] },
          ],
          {},
          { wallMs: START_MS + 50, logical: 7 },
        )
        const r1 = await store.applyRemote(c1)
        expect(plainBytes(r1.change)).toEqual(c1)
        expect(r1.lsn).toBe(2)
        expect(store.vc).toEqual(vc([self, 1], [OTHER, 1]))
        expect(store.hlc).toEqual({ wallMs: START_MS + 50, logical: 7 })
        expect(await valueOf(store, 'r')).toBe('remote')
        expect(counterValue(await store.getState('counter', 'c'))).toBe(4)
        expect(setMembers(await store.getState('set', 's'))).toEqual(['m'])

        // A remote write that saw ours replaces it.
        const c2 = remoteChange(OTHER, 2, [rput('mine', 'overwritten', [local.dot])], vc([self, 1], [OTHER, 1]), {
          wallMs: START_MS + 60,
          logical: 0,
        })
        await store.applyRemote(c2)
        const mine = await store.getState('kv', 'mine')
        expect(mine.siblings.map((sibling) => sibling.dot)).toEqual([c2.dot])
        expect(await valueOf(store, 'mine')).toBe('overwritten')

        // A concurrent write from a third node becomes a sibling; the read returns the highest HLC.
        const c3 = remoteChange(THIRD, 1, [rput('r', 'concurrent')], {}, { wallMs: START_MS + 40, logical: 0 })
        await store.applyRemote(c3)
        expect((await store.getState('kv', 'r')).siblings).toHaveLength(2)
        expect(await valueOf(store, 'r')).toBe('remote')
        expect(store.hlc).toEqual({ wallMs: START_MS + 60, logical: 0 })
        expect(store.vc).toEqual(vc([self, 1], [OTHER, 2], [THIRD, 1]))

        expect(plainBytes((await store.readLog(0, 10)).map((entry) => entry.change))).toEqual(
          plainBytes([local, c1, c2, c3]),
        )
        expect(await store.lsnOfDot(c3.dot)).toBe(4)

        // Our wall clock is behind what we have seen: the next local HLC still follows the highest.
        h.ms = START_MS
        const next = await store.commitLocal([put('r', 'merged')])
        const change = changeOf(next)
        expect(change.dot).toEqual({ node: self, seq: 2 })
        expect(change.deps).toEqual(vc([self, 1], [OTHER, 2], [THIRD, 1]))
        expect(change.hlc).toEqual({ wallMs: START_MS + 60, logical: 1 })
        expect(change.ops[0]).toMatchObject({ context: [c1.dot, c3.dot].sort((a, b) => (a.node < b.node ? -1 : 1)) })
        expect((await store.getState('kv', 'r')).siblings).toHaveLength(1)
      })

      it('resolves a duplicate with change null and writes nothing', async () => {
        const store = await h.open()
        const c1 = remoteChange(OTHER, 1, [rput('r', '1')], {}, { wallMs: START_MS, logical: 0 })
        const c2 = remoteChange(OTHER, 2, [rput('r', '2', [c1.dot])], vc([OTHER, 1]), { wallMs: START_MS, logical: 1 })
        const commits: number[] = []
        store.onCommit((entries) => commits.push(entries.length))
        // The same change twice in one group: the second is a duplicate of the first.
        const [first, twin] = await Promise.all([store.applyRemote(c1), store.applyRemote(c1)])
        expect(plainBytes(first?.change)).toEqual(c1)
        expect(twin?.change).toBeNull()
        await store.applyRemote(c2)
        const before = { lsn: store.lsn, vc: store.vc, hlc: store.hlc }
        for (const change of [c1, c2]) {
          const result = await store.applyRemote(change)
          expect(result.change).toBeNull()
          expect(result.lsn).toBe(before.lsn)
          expect(result.vc).toEqual(before.vc)
        }
        expect(store.lsn).toBe(2)
        expect(store.vc).toEqual(before.vc)
        expect(commits).toEqual([1, 1])
        expect(await store.readLog(0, 10)).toHaveLength(2)
        expect(await valueOf(store, 'r')).toBe('2')
      })

      it('refuses out-of-order delivery with MESHKV_ERR_OUT_OF_ORDER, writes nothing and keeps working', async () => {
        const store = await h.open()
        await store.applyRemote(remoteChange(OTHER, 1, [rput('r', '1')], {}, { wallMs: START_MS, logical: 0 }))
        const before = { lsn: store.lsn, vc: store.vc, hlc: store.hlc }
        const outOfOrder = [
          // A gap in the origin's seqs.
          remoteChange(OTHER, 3, [rput('r', '3')], vc([OTHER, 2]), { wallMs: START_MS, logical: 3 }),
          // A first change from a node whose deps are not applied.
          remoteChange(THIRD, 1, [rput('t', '1')], vc([OTHER, 5]), { wallMs: START_MS, logical: 4 }),
          // Not starting at seq 1.
          remoteChange(THIRD, 2, [rput('t', '2')], {}, { wallMs: START_MS, logical: 5 }),
        ]
        for (const change of outOfOrder)
          expect(await meshCodeOf(store.applyRemote(change))).toBe('MESHKV_ERR_OUT_OF_ORDER')
        // In one group, a change whose predecessor was refused (clock skew) is out of order too.
        const skewed = remoteChange(THIRD, 1, [rput('t', 'future')], {}, { wallMs: h.ms + 10 * 60_000, logical: 0 })
        const follower = remoteChange(THIRD, 2, [rput('t', 'after')], vc([THIRD, 1]), { wallMs: START_MS, logical: 6 })
        const [first, second] = await Promise.allSettled([store.applyRemote(skewed), store.applyRemote(follower)])
        expect(first?.status === 'rejected' && (first.reason as MeshError).code).toBe('MESHKV_ERR_CLOCK_SKEW')
        expect(second?.status === 'rejected' && (second.reason as MeshError).code).toBe('MESHKV_ERR_OUT_OF_ORDER')
        expect(store.lsn).toBe(before.lsn)
        expect(store.vc).toEqual(before.vc)
        expect(store.hlc).toEqual(before.hlc)
        expect(await valueOf(store, 't')).toBeUndefined()
        const next = await store.applyRemote(
          remoteChange(OTHER, 2, [rput('r', '2')], vc([OTHER, 1]), { wallMs: START_MS, logical: 1 }),
        )
        expect(next.change?.dot).toEqual({ node: OTHER, seq: 2 })
        expect(await valueOf(store, 'r')).toBe('2')
      })

      it('applyRemoteMany: applies in order and answers each change in its slot (result, duplicate or refusal); none settles the call alone', async () => {
        const store = await h.open()
        expect(await store.applyRemoteMany([], () => true)).toEqual([])
        const c1 = remoteChange(OTHER, 1, [rput('r', '1')], {}, { wallMs: START_MS, logical: 0 })
        const c2 = remoteChange(OTHER, 2, [rput('r', '2', [c1.dot])], vc([OTHER, 1]), { wallMs: START_MS, logical: 1 })
        const skewed = remoteChange(THIRD, 1, [rput('t', 'future')], {}, { wallMs: h.ms + 10 * 60_000, logical: 0 })
        const follower = remoteChange(THIRD, 2, [rput('t', 'after')], vc([THIRD, 1]), { wallMs: START_MS, logical: 6 })
        const synced: Change[] = []
        const outcomes = await store.applyRemoteMany([c1, c2, c1, skewed, follower], (change) => {
          if (change === c2) synced.push(change)
          return change === c2
        })
        expect(synced).toEqual([c2])
        expect(outcomes).toHaveLength(5)
        const [one, two, twin, refusedSkew, refusedFollower] = outcomes
        expect(one !== undefined && 'change' in one && one.change?.dot).toEqual(c1.dot)
        expect(two !== undefined && 'change' in two && two.change?.dot).toEqual(c2.dot)
        expect(twin !== undefined && 'change' in twin && twin.change).toBeNull()
        expect(refusedSkew !== undefined && 'refused' in refusedSkew && (refusedSkew.refused as MeshError).code).toBe(
          'MESHKV_ERR_CLOCK_SKEW',
        )
        expect(
          refusedFollower !== undefined && 'refused' in refusedFollower && (refusedFollower.refused as MeshError).code,
        ).toBe('MESHKV_ERR_OUT_OF_ORDER')
        expect(store.vc).toEqual(vc([OTHER, 2]))
        expect(await valueOf(store, 'r')).toBe('2')
        expect(await valueOf(store, 't')).toBeUndefined()
        await store.close()
        await expect(store.applyRemoteMany([c1], () => false)).rejects.toMatchObject({ code: 'MESHKV_ERR_CLOSED' })
      })

      it('refuses a remote clock beyond maxClockOffsetMs with MESHKV_ERR_CLOCK_SKEW and leaves the clock unchanged', async () => {
        const store = await h.open({ maxClockOffsetMs: 1_000 })
        await store.commitLocal([put('a', '1')])
        const before = { lsn: store.lsn, vc: store.vc, hlc: store.hlc }
        const ahead = remoteChange(OTHER, 1, [rput('x', 'future')], {}, { wallMs: h.ms + 1_001, logical: 0 })
        expect(await meshCodeOf(store.applyRemote(ahead))).toBe('MESHKV_ERR_CLOCK_SKEW')
        expect(store.hlc).toEqual(before.hlc)
        expect(store.vc).toEqual(before.vc)
        expect(store.lsn).toBe(before.lsn)
        expect(await valueOf(store, 'x')).toBeUndefined()
        // Our own clock did not jump ahead either.
        const local = changeOf(await store.commitLocal([put('a', '2')]))
        expect(local.hlc).toEqual({ wallMs: h.ms, logical: 1 })

        // At the bound, the change applies and the clock follows it.
        const edge = remoteChange(OTHER, 1, [rput('x', 'edge')], {}, { wallMs: h.ms + 1_000, logical: 3 })
        expect(plainBytes((await store.applyRemote(edge)).change)).toEqual(edge)
        expect(store.hlc).toEqual(edge.hlc)

        // The default bound is 60 s.
        const reopened = await h.reopen(store)
        const tooFar = remoteChange(OTHER, 2, [rput('x', 'far')], vc([OTHER, 1]), { wallMs: h.ms + 60_001, logical: 0 })
        expect(await meshCodeOf(reopened.applyRemote(tooFar))).toBe('MESHKV_ERR_CLOCK_SKEW')
        expect(reopened.hlc).toEqual(edge.hlc)
        const near = remoteChange(OTHER, 2, [rput('x', 'near')], vc([OTHER, 1]), { wallMs: h.ms + 59_000, logical: 0 })
        await reopened.applyRemote(near)
        expect(reopened.hlc).toEqual(near.hlc)
      })
    })

    describe('reading', () => {
      it('reads the log in pages in LSN order and finds entries by dot', async () => {
        const store = await h.open()
        const self = store.nodeId
        expect(await store.firstLsn()).toBe(1)
        expect(await store.readLog(0, 10)).toEqual([])
        const made: Change[] = []
        let otherSeq = 0
        for (const i of range(1, 10)) {
          if (i % 3 === 0) {
            otherSeq++
            const change = remoteChange(
              OTHER,
              otherSeq,
              [rput(`r${i}`, String(i))],
              otherSeq === 1 ? {} : vc([OTHER, otherSeq - 1]),
              { wallMs: START_MS + i, logical: 0 },
            )
            await store.applyRemote(change)
            made.push(change)
          } else {
            h.ms = START_MS + i
            made.push(changeOf(await store.commitLocal([put(`l${i}`, String(i))])))
          }
        }
        const pages: LogEntry[][] = []
        for (let after = 0; ;) {
          const page = await store.readLog(after, 3)
          if (page.length === 0) break
          expect(page.length).toBeLessThanOrEqual(3)
          pages.push(page)
          after = (page[page.length - 1] as LogEntry).lsn
        }
        expect(pages.map((page) => page.length)).toEqual([3, 3, 3, 1])
        const entries = pages.flat()
        expect(entries.map((entry) => entry.lsn)).toEqual(range(1, 10))
        expect(plainBytes(entries.map((entry) => entry.change))).toEqual(plainBytes(made))
        expect((await store.readLog(4, 2)).map((entry) => entry.lsn)).toEqual([5, 6])
        expect(await store.readLog(10, 5)).toEqual([])
        expect(await store.firstLsn()).toBe(1)

        for (const entry of entries) expect(await store.lsnOfDot(entry.change.dot)).toBe(entry.lsn)
        expect(await store.lsnOfDot({ node: self, seq: 8 })).toBeUndefined()
        expect(await store.lsnOfDot({ node: THIRD, seq: 1 })).toBeUndefined()
      })

      it('takes snapshots that see neither later writes nor a VC/LSN newer than their states', async () => {
        const store = await h.open()
        const self = store.nodeId
        await store.commitLocal([put('a', '1'), incr('c', 1), add('s', 'x')])
        const snap = await store.snapshot()
        try {
          expect(snap.lsn).toBe(1)
          expect(snap.vc).toEqual(store.vc)
          await store.commitLocal([put('a', '2'), put('b', 'new'), incr('c', 1), add('s', 'y')])
          await store.applyRemote(remoteChange(OTHER, 1, [rput('z', 'remote')], {}, { wallMs: START_MS, logical: 9 }))
          expect(store.lsn).toBe(3)

          expect(snap.lsn).toBe(1)
          expect(snap.vc).toEqual(vc([self, 1]))
          expect(await valueOf(snap, 'a')).toBe('1')
          expect(await valueOf(snap, 'b')).toBeUndefined()
          expect(await valueOf(snap, 'z')).toBeUndefined()
          expect(counterValue(await snap.getState('counter', 'c'))).toBe(1)
          expect(setMembers(await snap.getState('set', 's'))).toEqual(['x'])
          expect(await keysOf(snap, 'kv')).toEqual(['a'])
          expect(await valueOf(store, 'a')).toBe('2')
          expect(await keysOf(store, 'kv')).toEqual(['a', 'b', 'z'])
        } finally {
          await snap.close()
        }

        // Snapshots taken while group commits are under way: each one's LSN and VC count exactly
        // the changes whose states it holds (each change adds one key, in dot order).
        const base = store.lsn
        const baseSeq = vcGet(store.vc, self)
        const keyOf = (i: number): string => `u/${String(i).padStart(4, '0')}`
        const pending: Promise<CommitResult>[] = []
        const snapshots: Promise<StoreSnapshot>[] = []
        for (const i of range(0, 299)) {
          pending.push(store.commitLocal([put(keyOf(i), 'x')]))
          if (i % 15 === 7) {
            // Wait for this write so every snapshot sees a different LSN, however the machine's
            // load groups the commits; later writes are still in flight when it is taken.
            await pending[pending.length - 1]
            snapshots.push(store.snapshot())
            await turn()
          }
        }
        await Promise.all(pending)
        const seenLsns = new Set<number>()
        for (const opening of snapshots) {
          const view = await opening
          try {
            const keys = await keysOf(view, 'kv', { gte: 'u/', lt: 'u0' })
            expect(keys).toEqual(range(0, keys.length - 1).map(keyOf))
            expect(view.lsn - base).toBe(keys.length)
            expect(vcGet(view.vc, self) - baseSeq).toBe(keys.length)
            seenLsns.add(view.lsn)
          } finally {
            await view.close()
          }
        }
        expect(seenLsns.size).toBeGreaterThan(2)
      })

      it('iterates states in UTF-8 byte order, honouring gt/gte/lt/lte/reverse/limit', async () => {
        const store = await h.open()
        // In UTF-8 byte order. UTF-16 order differs: there the astral '😀' (D83D…) sorts before 'ｚ' (FF5A).
        const ordered = ['A', 'Z', '__proto__', 'a', 'ab', 'b', '~', '\u0080', 'é', 'é/x', '中', 'ｚ', '😀', '😀x']
        const shuffled = [...ordered].reverse()
        await store.commitLocal(shuffled.map((key) => put(key, `v:${key}`)))
        // Other key spaces do not show up in kv.
        await store.commitLocal([incr('a', 1), add('b', 'x'), incr('constructor', 2)])
        const cases: [Range, string[]][] = [
          [{}, ordered],
          [{ reverse: true }, [...ordered].reverse()],
          [{ gt: 'a' }, ordered.slice(4)],
          [{ gte: 'a' }, ordered.slice(3)],
          [{ lt: 'ｚ' }, ordered.slice(0, 11)],
          [{ lte: 'ｚ' }, ordered.slice(0, 12)],
          [{ gt: 'ｚ' }, ['😀', '😀x']],
          [{ gte: '\u0080', lt: '😀' }, ['\u0080', 'é', 'é/x', '中', 'ｚ']],
          [{ gte: 'é', lt: '😀', reverse: true, limit: 2 }, ['ｚ', '中']],
          [{ gt: '__proto__', lte: 'b', limit: 2 }, ['a', 'ab']],
          [{ limit: 3 }, ['A', 'Z', '__proto__']],
          [{ reverse: true, limit: 1 }, ['😀x']],
          [{ gt: '😀x' }, []],
          [{ lt: 'A' }, []],
          [{ gte: 'é', lte: 'é' }, ['é']],
          [{ limit: 0 }, []],
        ]
        expect([...ordered].sort(byUtf8)).toEqual(ordered)
        const snap = await store.snapshot()
        try {
          for (const [bounds, expected] of cases) {
            expect({ bounds, keys: await keysOf(store, 'kv', bounds) }).toEqual({ bounds, keys: expected })
            expect({ bounds, keys: await keysOf(snap, 'kv', bounds) }).toEqual({ bounds, keys: expected })
          }
        } finally {
          await snap.close()
        }
        for await (const [key, state] of store.iterateStates('kv', {}))
          expect(dec(lwwSibling(state)?.value ?? enc(''))).toBe(`v:${key}`)
        expect(await keysOf(store, 'counter')).toEqual(['a', 'constructor'])
        expect(await keysOf(store, 'set')).toEqual(['b'])
        // A set emptied by removes leaves no state behind.
        await store.commitLocal([remove('b', 'x')])
        expect(await keysOf(store, 'set')).toEqual([])
        expect(await valueOf(store, '__proto__')).toBe('v:__proto__')
      })

      it('follows the log: the backlog after a cursor, then live entries, and ends on abort', async () => {
        const store = await h.open()
        for (const i of range(1, 5)) await store.commitLocal([put(`k${i}`, String(i))])
        const abort = new AbortController()
        const follower = followLog(store, 2, abort.signal)[Symbol.asyncIterator]()
        expect((await takeWithin(follower, 3)).map((entry) => entry.lsn)).toEqual([3, 4, 5])

        const waiting = nextWithin(follower, 2_000, 'a live entry')
        await turn()
        await store.commitLocal([put('live', '6')])
        const live = await waiting
        expect(live.done).toBe(false)
        expect(live.value).toMatchObject({ lsn: 6, change: { dot: { node: store.nodeId, seq: 6 } } })

        await Promise.all([store.commitLocal([put('x', '7')]), store.commitLocal([put('y', '8')])])
        await store.applyRemote(remoteChange(OTHER, 1, [rput('r', '9')], {}, { wallMs: START_MS, logical: 9 }))
        expect((await takeWithin(follower, 3)).map((entry) => [entry.lsn, entry.change.dot.seq])).toEqual([
          [7, 7],
          [8, 8],
          [9, 1],
        ])

        const ending = nextWithin(follower, 2_000, 'the end after abort')
        await turn()
        abort.abort()
        expect((await ending).done).toBe(true)
        await store.commitLocal([put('after', 'abort')])
        expect((await nextWithin(follower)).done).toBe(true)

        // A signal aborted up front ends at once.
        const aborted = followLog(store, 0, AbortSignal.abort())[Symbol.asyncIterator]()
        expect((await nextWithin(aborted)).done).toBe(true)
      })

      it('follows a backlog longer than one page without gaps or repeats', async () => {
        const store = await h.open()
        const count = FOLLOW_PAGE_ENTRIES + 44
        await Promise.all(range(1, count).map((i) => store.commitLocal([put(`k${i}`, String(i))])))
        const abort = new AbortController()
        const follower = followLog(store, 0, abort.signal)[Symbol.asyncIterator]()
        const entries = await takeWithin(follower, count)
        expect(entries.map((entry) => entry.lsn)).toEqual(range(1, count))
        const ending = nextWithin(follower)
        abort.abort()
        expect((await ending).done).toBe(true)
      })
    })

    describe('durability', () => {
      it('keeps node id, VC, LSN, HLC, log and all states across reopen', async () => {
        const store = await h.open()
        const self = store.nodeId
        h.ms = START_MS + 500
        await store.commitLocal([put('a', '1'), put('b', '2'), incr('c', 10), add('s', 'x'), add('s', 'y')])
        await store.applyRemote(
          remoteChange(
            OTHER,
            1,
            [rput('a', 'concurrent'), { type: 'counter.add', name: 'c', delta: -3 }],
            {},
            { wallMs: START_MS + 900, logical: 2 },
          ),
        )
        await store.commitLocal([del('b'), remove('s', 'x'), put('__proto__', 'p'), put('😀', 'astral')])
        await store.applyRemote(
          remoteChange(THIRD, 1, [{ type: 'set.add', name: 's', member: 'z', context: [] }], vc([OTHER, 1]), {
            wallMs: START_MS + 100,
            logical: 0,
          }),
        )
        const before = {
          nodeId: self,
          vc: store.vc,
          lsn: store.lsn,
          hlc: store.hlc,
          states: await dumpStates(store),
          log: await store.readLog(0, 100),
        }
        expect(before.lsn).toBe(4)
        expect(before.hlc).toEqual({ wallMs: START_MS + 900, logical: 3 })

        const again = await h.reopen(store)
        expect(again.nodeId).toBe(before.nodeId)
        expect(again.vc).toEqual(before.vc)
        expect(again.lsn).toBe(before.lsn)
        expect(again.hlc).toEqual(before.hlc)
        expect(await dumpStates(again)).toEqual(before.states)
        expect(await again.readLog(0, 100)).toEqual(before.log)
        expect(await valueOf(again, 'a')).toBe('concurrent')
        expect(await valueOf(again, 'b')).toBeUndefined()
        expect(counterValue(await again.getState('counter', 'c'))).toBe(7)
        expect(setMembers(await again.getState('set', 's'))).toEqual(['y', 'z'])

        // After a restart with the wall clock far behind, dots and clocks carry on.
        h.ms = START_MS - 86_400_000
        const next = changeOf(await again.commitLocal([put('after', 'restart')]))
        expect(next.dot).toEqual({ node: self, seq: 3 })
        expect(next.deps).toEqual(before.vc)
        expect(compareHlc(next.hlc, before.hlc)).toBeGreaterThan(0)
        expect(again.lsn).toBe(5)
        const third = await h.reopen(again)
        expect(third.lsn).toBe(5)
        expect(third.hlc).toEqual(next.hlc)
        expect(await valueOf(third, 'after')).toBe('restart')
      })

      it('rejects every commit of a group whose write fails with MESHKV_ERR_STORAGE, keeps VC/LSN, and keeps working', async () => {
        const failing = new FailingBackend(h.fixture.backend)
        const store = await h.open({}, failing)
        const self = store.nodeId
        await store.commitLocal([put('before', '1')])
        await store.applyRemote(remoteChange(OTHER, 1, [rput('r', '1')], {}, { wallMs: START_MS, logical: 5 }))
        const before = { lsn: store.lsn, vc: store.vc, hlc: store.hlc }
        const commits: number[] = []
        store.onCommit((entries) => commits.push(entries.length))
        const remote2 = remoteChange(OTHER, 2, [rput('r', '2')], vc([OTHER, 1]), { wallMs: START_MS + 1, logical: 0 })

        failing.failNext = 1
        const callsBefore = failing.writeCalls
        h.ms += 10
        const outcomes = await Promise.allSettled([
          store.commitLocal([put('f1', 'x')]),
          store.commitLocal([put('f2', 'y'), incr('c', 3)]),
          store.applyRemote(remote2),
          store.commitLocal([put('before', 'overwritten')]),
        ])
        expect(failing.writeCalls).toBe(callsBefore + 1)
        for (const outcome of outcomes) {
          expect(outcome.status).toBe('rejected')
          if (outcome.status === 'rejected') expect((outcome.reason as MeshError).code).toBe('MESHKV_ERR_STORAGE')
        }
        expect(store.lsn).toBe(before.lsn)
        expect(store.vc).toEqual(before.vc)
        expect(store.hlc).toEqual(before.hlc)
        expect(commits).toEqual([])
        expect(await store.readLog(before.lsn, 10)).toEqual([])
        expect(await store.lsnOfDot({ node: self, seq: 2 })).toBeUndefined()
        expect(await valueOf(store, 'f1')).toBeUndefined()
        expect(await valueOf(store, 'before')).toBe('1')
        expect(counterValue(await store.getState('counter', 'c'))).toBe(0)

        // The store carries on: no gap in our dots, and the refused remote change is not a duplicate.
        const next = await store.commitLocal([put('f1', 'again')])
        expect(changeOf(next).dot).toEqual({ node: self, seq: vcGet(before.vc, self) + 1 })
        expect(next.lsn).toBe(before.lsn + 1)
        expect(plainBytes((await store.applyRemote(remote2)).change)).toEqual(remote2)
        expect(commits).toEqual([1, 1])

        const again = await h.reopen(store)
        expect(again.lsn).toBe(before.lsn + 2)
        expect((await again.readLog(0, 10)).map((entry) => entry.lsn)).toEqual(range(1, before.lsn + 2))
        expect(again.vc).toEqual(vc([self, vcGet(before.vc, self) + 1], [OTHER, 2]))
        expect(await valueOf(again, 'f1')).toBe('again')
        expect(await valueOf(again, 'r')).toBe('2')
        expect(await valueOf(again, 'f2')).toBeUndefined()
      })

      it('stages the next group while one is written: it sees that group, and fails with it', async () => {
        const failing = new FailingBackend(h.fixture.backend)
        const store = await h.open({}, failing)
        const self = store.nodeId
        await store.commitLocal([put('gone', 'x')])
        const written: string[] = []
        const base = failing.writeCalls
        let release = (): void => {}
        const held = new Promise<void>((resolve) => (release = resolve))
        failing.beforeWrite = async () => {
          written.push(`write ${failing.writeCalls - base}`)
          if (failing.writeCalls - base === 1) await held
        }
        // Called as each own seq is minted: when a group is staged.
        store.guardOwnWrites(() => written.push('mint'))
        const before = { lsn: store.lsn, vc: store.vc }
        // Group 1 (held in its write): a counter step and a delete. Group 2, staged meanwhile,
        // adds to the same counter and deletes the same key again from another node.
        const first = store.commitLocal([incr('c', 1), del('gone')])
        while (written.length < 2) await new Promise<void>((resolve) => setImmediate(resolve))
        const second = store.commitLocal([incr('c', 2)])
        const remoteDel: Op = { type: 'kv.del', key: 'gone', context: [] }
        const third = store.applyRemote(remoteChange(OTHER, 1, [remoteDel], {}, { wallMs: START_MS, logical: 0 }))
        for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve))
        expect(written).toEqual(['mint', 'write 1', 'mint'])
        release()
        const [one, two] = await Promise.all([first, second, third])
        expect(written).toEqual(['mint', 'write 1', 'mint', 'write 2'])
        expect(counterValue(stateAfter(one, 'counter', 'c') as CounterState)).toBe(1)
        expect(counterValue(stateAfter(two, 'counter', 'c') as CounterState)).toBe(3)
        expect(changeOf(two).dot).toEqual({ node: self, seq: vcGet(before.vc, self) + 2 })
        expect(store.lsn).toBe(before.lsn + 3)
        expect((await store.getState('kv', 'gone')).siblings).toHaveLength(2)
        // The key is indexed once, though both groups indexed it before either was on disk.
        expect(await store.tombstoneCount()).toBe(1)

        // The held write fails: the group staged on it fails too, and never reaches the disk.
        const failed = new Promise<void>((resolve) => (release = resolve))
        failing.beforeWrite = async () => {
          written.push(`write ${failing.writeCalls - base}`)
          if (failing.writeCalls - base === 3) {
            failing.failNext = 1
            await failed
          }
        }
        const after = { lsn: store.lsn, vc: store.vc, hlc: store.hlc }
        const doomed = store.commitLocal([incr('c', 10)])
        while (written.length < 6) await new Promise<void>((resolve) => setImmediate(resolve))
        const onDoomed = store.commitLocal([incr('c', 100)])
        for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve))
        release()
        const outcomes = await Promise.allSettled([doomed, onDoomed])
        for (const outcome of outcomes) {
          expect(outcome.status).toBe('rejected')
          if (outcome.status === 'rejected') expect((outcome.reason as MeshError).code).toBe('MESHKV_ERR_STORAGE')
        }
        expect(written).toEqual(['mint', 'write 1', 'mint', 'write 2', 'mint', 'write 3', 'mint'])
        expect({ lsn: store.lsn, vc: store.vc, hlc: store.hlc }).toEqual(after)
        failing.beforeWrite = null
        store.guardOwnWrites(null)
        const next = await store.commitLocal([incr('c', 1000)])
        expect(counterValue(stateAfter(next, 'counter', 'c') as CounterState)).toBe(1003)
        expect(changeOf(next).dot).toEqual({ node: self, seq: vcGet(after.vc, self) + 1 })
        const again = await h.reopen(store)
        expect(counterValue(await again.getState('counter', 'c'))).toBe(1003)
        expect(await again.tombstoneCount()).toBe(1)
      })
    })

    describe('garbage collection', () => {
      it('finds every change the log holds through the sparse dot index: gaps, strides, purges, failures, reopen', async () => {
        const FOURTH = toNodeId('c3c3c3c3c3c3c3c3')
        for (const seed of [1, 2]) {
          const random = prng(seed)
          const fixture = seed === 1 ? h.fixture : await makeBackendFor(h)
          const failing = new FailingBackend(fixture.backend)
          let store = await h.open({}, failing)
          const made = new Map<NodeId, number>()
          // Mostly this node and one peer (runs past the stride), one every ~10 changes (within
          // the gap), one rarely (past the gap); groups of 1-40 commits.
          const write = async (count: number): Promise<void> => {
            for (let done = 0; done < count;) {
              const group: Promise<unknown>[] = []
              const size = 1 + Math.floor(random() * 40)
              for (let i = 0; i < size && done < count; i++, done++) {
                const pick = random()
                const node = pick < 0.5 ? store.nodeId : pick < 0.9 ? OTHER : pick < 0.99 ? THIRD : FOURTH
                if (node === store.nodeId) {
                  group.push(store.commitLocal([put(`k${done % 50}`, `${seed}`)]))
                  continue
                }
                const seq = (made.get(node) ?? 0) + 1
                made.set(node, seq)
                const hlc = { wallMs: START_MS + seq, logical: 0 }
                group.push(
                  store.applyRemote(remoteChange(node, seq, [rput(`r${seq % 7}`, 'v')], vc([node, seq - 1]), hlc)),
                )
              }
              await Promise.all(group)
            }
          }
          const check = async (when: string): Promise<void> => {
            const start = await store.firstLsn()
            const entries = await store.readLog(start - 1, 1_000_000)
            expect(entries.length, `seed ${seed} ${when}`).toBe(store.lsn - start + 1)
            for (const { lsn, change } of entries)
              expect(
                await store.lsnOfDot(change.dot),
                `seed ${seed} ${when}: ${change.dot.node}:${change.dot.seq}`,
              ).toBe(lsn)
            for (const node of [store.nodeId, OTHER, THIRD, FOURTH]) {
              const held = vcGet(store.vc, node)
              expect(
                await store.lsnOfDot({ node, seq: held + 1 }),
                `seed ${seed} ${when}: past ${node}`,
              ).toBeUndefined()
              // Purged ones are gone (the first seqs of each origin, once purged).
              const first = entries.find((entry) => entry.change.dot.node === node)?.change.dot.seq ?? held + 1
              if (first > 1)
                expect(await store.lsnOfDot({ node, seq: first - 1 }), `seed ${seed} ${when}`).toBeUndefined()
            }
          }
          await write(700)
          await check('after 700 changes')
          const half = (node: NodeId): [NodeId, number] => [node, Math.floor(vcGet(store.vc, node) / 2)]
          const purged = await store.purge(vc(half(store.nodeId), half(OTHER), half(THIRD), half(FOURTH)), {})
          expect(purged.logPurged, `seed ${seed}`).toBeGreaterThan(0)
          await check('after a purge')
          // A failed batch: its changes are staged again later, indexed from scratch.
          failing.failNext = 1
          await expect(write(30)).rejects.toThrow()
          for (const node of [OTHER, THIRD, FOURTH]) made.set(node, vcGet(store.vc, node))
          await write(300)
          await store.purge(store.vc, {}, 200)
          await check('after a failed batch and a second purge')
          await h.close(store)
          store = await h.open({}, fixture.reopen())
          await write(200)
          await check('after a reopen')
          await h.close(store)
          const counts = await rawCounts(fixture.reopen())
          // Sparse: far fewer entries than changes held.
          expect(counts.dots, `seed ${seed}`).toBeLessThan(counts.log / 4)
        }
      })

      it('purges the log every member holds and stable tombstones; nothing past the cut or the held clock', async () => {
        const store = await h.open()
        await store.commitLocal([put('a', '1')])
        await store.commitLocal([del('a')])
        await store.commitLocal([put('b', '2')])
        await store.commitLocal([del('b')])
        expect(await store.tombstoneCount()).toBe(2)
        expect(await store.logSize()).toBe(4)
        const self = store.nodeId
        // Nothing held by every member, nothing stable: nothing goes.
        expect(await store.purge({}, {})).toEqual({ logPurged: 0, tombstonesPurged: 0 })
        // The first two changes held by all, and the first tombstone (dot 2) stable.
        expect(await store.purge(vc([self, 2]), vc([self, 2]))).toEqual({ logPurged: 2, tombstonesPurged: 1 })
        expect(await store.logSize()).toBe(2)
        expect(await store.firstLsn()).toBe(3)
        expect(await store.lsnOfDot({ node: self, seq: 1 })).toBeUndefined()
        expect(await store.lsnOfDot({ node: self, seq: 3 })).toBe(3)
        expect(await keysOf(store, 'kv')).toEqual(['b'])
        expect(await store.tombstoneCount()).toBe(1)
        expect(await store.purge(store.vc, store.vc)).toEqual({ logPurged: 2, tombstonesPurged: 1 })
        expect(await keysOf(store, 'kv')).toEqual([])
        expect(await store.logSize()).toBe(0)
        // The log goes on after a purge, and survives a reopen as purged.
        await store.commitLocal([put('c', '3')])
        const again = await h.reopen(store)
        expect((await again.readLog(0, 10)).map((entry) => entry.lsn)).toEqual([5])
        expect(await valueOf(again, 'c')).toBe('3')
      })

      it('a key written again after its delete keeps its value; its stale index entry goes', async () => {
        const store = await h.open()
        await store.commitLocal([put('k', 'old')])
        await store.commitLocal([del('k')])
        await store.commitLocal([put('k', 'new')])
        expect(await store.tombstoneCount()).toBe(1)
        expect(await store.purge(store.vc, store.vc)).toEqual({ logPurged: 3, tombstonesPurged: 0 })
        expect(await valueOf(store, 'k')).toBe('new')
        expect(await store.tombstoneCount()).toBe(0)
      })
      it('a purge cut off between its batches keeps one index entry of a purged change (the one that finds the rest), and resumes', async () => {
        const failing = new FailingBackend(h.fixture.backend)
        const store = await h.open({}, failing)
        const self = store.nodeId
        const total = PURGE_BATCH_MAX + 10
        await Promise.all(range(1, total).map((i) => store.commitLocal([put(`k${i}`, String(i))])))
        let purgeBatches = 0
        failing.failWhen = (writes) =>
          writes.some((write) => write.sub === 'log' && write.type === 'del') && ++purgeBatches === 2
        expect(((await rejectionOf(store.purge(store.vc, {}))) as { code?: string }).code).toBe('ENOSPC')
        failing.failWhen = null
        // The first batch is durable and known; the second never happened.
        expect(await store.firstLsn()).toBe(PURGE_BATCH_MAX + 1)
        expect(await store.logSize()).toBe(10)
        const indexed: number[] = []
        for await (const [, bytes] of h.fixture.backend.iterate('dots', {})) indexed.push(Number(dec(bytes)))
        // The index is sparse (one entry per DOT_INDEX_STRIDE seqs in a run): of those below the
        // log's start the last stays, and finds the changes kept after it.
        expect(indexed).toEqual([Math.floor(PURGE_BATCH_MAX / DOT_INDEX_STRIDE) * DOT_INDEX_STRIDE])
        expect(await store.lsnOfDot({ node: self, seq: PURGE_BATCH_MAX })).toBeUndefined()
        for (const seq of range(PURGE_BATCH_MAX + 1, total)) expect(await store.lsnOfDot({ node: self, seq })).toBe(seq)
        expect(await store.lsnOfDot({ node: self, seq: PURGE_BATCH_MAX + 1 })).toBe(PURGE_BATCH_MAX + 1)
        const again = await h.reopen(store)
        expect(await again.firstLsn()).toBe(PURGE_BATCH_MAX + 1)
        expect(await again.purge(again.vc, {})).toEqual({ logPurged: 10, tombstonesPurged: 0 })
        expect(await again.logSize()).toBe(0)
      })

      it('reads the index an older store wrote (an entry per change, some below the log start), and purges it to one below the start', async () => {
        const store = await h.open()
        const self = store.nodeId
        for (const i of range(1, 4)) await store.commitLocal([put(`k${i}`, String(i))])
        expect(await store.purge(vc([self, 2]), {})).toEqual({ logPurged: 2, tombstonesPurged: 0 })
        // An older meshkv indexed every change, and could leave entries of purged ones.
        const entry = (seq: number): BackendWrite => ({
          type: 'put',
          sub: 'dots',
          key: keyOf(seq),
          value: enc(String(seq)),
        })
        const keyOf = (seq: number): string => `${self}:${seq.toString(16).padStart(16, '0')}`
        await h.fixture.backend.write(range(1, 4).map(entry), { sync: true })
        expect(await store.lsnOfDot({ node: self, seq: 1 })).toBeUndefined()
        expect(await store.lsnOfDot({ node: self, seq: 2 })).toBeUndefined()
        await h.close(store)
        const backend = h.fixture.reopen()
        const again = await h.open({}, backend)
        expect(await again.lsnOfDot({ node: self, seq: 1 })).toBeUndefined()
        expect(await again.lsnOfDot({ node: self, seq: 3 })).toBe(3)
        expect(await again.purge(vc([self, 3]), {})).toEqual({ logPurged: 1, tombstonesPurged: 0 })
        const keys: string[] = []
        for await (const [key] of backend.iterate('dots', {})) keys.push(key)
        // Of those below the new start (seqs 1-3) the last stays; seq 4's own entry is kept.
        expect(keys).toEqual([keyOf(3), keyOf(4)])
        expect(await again.lsnOfDot({ node: self, seq: 3 })).toBeUndefined()
        expect(await again.lsnOfDot({ node: self, seq: 4 })).toBe(4)
        await again.commitLocal([put('k5', '5')])
        expect(await again.lsnOfDot({ node: self, seq: 5 })).toBe(5)
      })

      it('counts tombstone index entries exactly through re-deletes, one group, purges, a snapshot join and reopen', async () => {
        const store = await h.open()
        for (const key of ['a', 'b']) {
          await store.commitLocal([put(key, '1')])
          await store.commitLocal([del(key)])
        }
        expect(await store.tombstoneCount()).toBe(2)
        // 'a' written again keeps its (now stale) entry; deleted again, it is still one entry.
        await store.commitLocal([put('a', '2')])
        expect(await store.tombstoneCount()).toBe(2)
        await store.commitLocal([del('a')])
        expect(await store.tombstoneCount()).toBe(2)
        // One group that deletes, writes and deletes 'c' again adds one entry.
        await store.commitLocal([put('c', '1')])
        await Promise.all([
          store.commitLocal([del('c')]),
          store.commitLocal([put('c', '2')]),
          store.commitLocal([del('c')]),
        ])
        expect(await store.tombstoneCount()).toBe(3)
        const again = await h.reopen(store)
        expect(await again.tombstoneCount()).toBe(3)
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('d', '1')])
        await donor.commitLocal([del('d')])
        const { entries } = await snapshotOf(donor, ['kv'])
        await again.stageSnapshot(entries)
        await again.applyStagedSnapshot(donor.vc)
        expect(await again.tombstoneCount()).toBe(4)
        expect(await again.purge(again.vc, again.vc)).toEqual({ logPurged: 10, tombstonesPurged: 4 })
        expect(await again.tombstoneCount()).toBe(0)
      })
    })

    describe('snapshots', () => {
      it('joins a staged snapshot: keys it lacks are joined with the empty state, clocks are joined, and the receiver then equals the sender', async () => {
        const sender = await h.open()
        await sender.commitLocal([put('kept', 'v'), add('s', 'm1'), incr('c', 5)])
        await sender.commitLocal([put('gone', 'x')])
        const senderId = sender.nodeId
        const receiverFixture = await makeBackend()
        const receiver = await Store.open(h.options(receiverFixture.backend))
        try {
          // The receiver has the first change's 'gone' write from the log, then misses its delete.
          const [first, second] = await sender.readLog(0, 10)
          await receiver.applyRemote((first as LogEntry).change)
          await receiver.applyRemote((second as LogEntry).change)
          await sender.commitLocal([del('gone'), remove('s', 'm1')])
          await sender.purge(sender.vc, sender.vc)
          expect(await keysOf(sender, 'kv')).toEqual(['kept'])
          const snapshot = await snapshotOf(sender)
          await receiver.stageSnapshot(snapshot.entries)
          const notified: number[] = []
          receiver.onCommit((batch) => notified.push(batch.length))
          await receiver.applyStagedSnapshot(snapshot.vc)
          expect(notified).toEqual([0])
          expect(receiver.vc).toEqual(sender.vc)
          expect(vcGet(receiver.vc, senderId)).toBe(3)
          expect(await dumpStates(receiver)).toEqual(await dumpStates(sender))
          expect(await valueOf(receiver, 'gone')).toBeUndefined()
        } finally {
          await receiver.close()
          await receiverFixture.cleanup()
        }
      })

      it('refuses a malformed staged state with MESHKV_ERR_DECODE; a stage left without its marker is dropped at the next open', async () => {
        const store = await h.open()
        expect(await meshCodeOf(store.stageSnapshot([['kv', 'bad', new Uint8Array([0xc1, 0xff])]]))).toBe(
          'MESHKV_ERR_DECODE',
        )
        expect(await meshCodeOf(store.stageSnapshot([['nope' as Space, 'k', new Uint8Array([0x90])]]))).toBe(
          'MESHKV_ERR_DECODE',
        )
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('x', '1')])
        const { entries } = await snapshotOf(donor, ['kv'])
        await store.stageSnapshot(entries)
        const again = await h.reopen(store)
        await again.applyStagedSnapshot({})
        expect(await keysOf(again, 'kv')).toEqual([])
      })

      it('reads during a join answer the node as it was before it, clock and states alike, until the join ends', async () => {
        const failing = new FailingBackend(h.fixture.backend)
        const receiver = await h.open({}, failing)
        await receiver.commitLocal([put('k', 'mine'), put('only-mine', 'x')])
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('k', 'theirs')])
        await donor.commitLocal([put('d2', 'y'), incr('c', 2)])
        const snapshot = await snapshotOf(donor)
        await receiver.stageSnapshot(snapshot.entries)

        type Seen = { vc: VectorClock; k: string; d2: string | undefined; keys: string[] }
        const look = async (reader: StateReader): Promise<Seen> => ({
          vc: reader.vc,
          k: versionOf(await reader.getState('kv', 'k')),
          d2: await valueOf(reader, 'd2'),
          keys: await keysOf(reader, 'kv'),
        })
        const before = await look(receiver)
        expect(before.vc).toEqual(vc([receiver.nodeId, 1]))
        const during: Seen[] = []
        // Opened during the join and read after it ends: it stays the view it was taken as.
        const held: { view?: StoreSnapshot; keys?: AsyncIterator<[string, AnyState]> } = {}
        failing.beforeWrite = async () => {
          // Between two batches of the join (states written, clock not yet): a store snapshot,
          // and the store's clock read with its live states, as a read answers them.
          const view = await receiver.snapshot()
          try {
            during.push(await look(view))
          } finally {
            await view.close()
          }
          const vcNow = receiver.vc
          during.push({ ...(await look(receiver)), vc: vcNow })
          if (held.view === undefined) {
            held.view = await receiver.snapshot()
            held.keys = receiver.iterateStates('kv', {})[Symbol.asyncIterator]()
          }
        }
        await receiver.applyStagedSnapshot(snapshot.vc)
        failing.beforeWrite = null
        // The marker, the page of staged states, the clock: at least three batches were watched.
        expect(during.length).toBeGreaterThanOrEqual(6)
        for (const seen of during) expect(seen).toEqual(before)

        const after = await look(receiver)
        expect(after.vc).toEqual(vc([receiver.nodeId, 1], [donor.nodeId, 2]))
        expect(after.d2).toBe('y')
        expect(after.k).not.toBe(before.k)
        const view = await receiver.snapshot()
        expect(await look(view)).toEqual(after)
        await view.close()

        if (held.view === undefined || held.keys === undefined) throw new Error('the join made no write')
        expect(await look(held.view)).toEqual(before)
        await held.view.close()
        const keys: string[] = []
        for (let next = await held.keys.next(); next.done !== true; next = await held.keys.next())
          keys.push(next.value[0])
        expect(keys).toEqual(before.keys)
      })

      it('a brand-new store takes a snapshot straight into place: nothing staged, the empty node served until the end, then the sender’s states, clock and HLC', async () => {
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('a', '1'), add('s', 'm'), incr('c', 3)])
        await donor.commitLocal([put('gone', 'x'), put('b', '2')])
        await donor.commitLocal([del('gone')])
        const snapshot = await snapshotOf(donor)
        const [first, second] = halves(snapshot.entries)
        const store = await h.open()
        const intake = await store.receiveSnapshot(snapshot.vc)
        expect(intake.into).toBe('place')
        const notified: number[] = []
        store.onCommit((batch) => notified.push(batch.length))
        await intake.write(checkStates(first))
        // Written, not yet the node's: reads and a store snapshot answer the empty node.
        expect(store.vc).toEqual({})
        expect(await keysOf(store, 'kv')).toEqual([])
        const view = await store.snapshot()
        expect(view.vc).toEqual({})
        expect(await keysOf(view, 'kv')).toEqual([])
        await view.close()
        await intake.write(checkStates(second))
        await intake.finish()
        expect(intake.into).toBe('place')
        expect(notified).toEqual([0])
        expect(store.vc).toEqual(donor.vc)
        expect(compareHlc(store.hlc, donor.hlc)).toBe(0)
        expect(await dumpStates(store)).toEqual(await dumpStates(donor))
        expect(await store.tombstoneCount()).toBe(1)
        // A link lost while the end was queued drops it after it ended: that removes nothing.
        await intake.abandon()
        expect(await dumpStates(store)).toEqual(await dumpStates(donor))
        const again = await h.reopen(store)
        expect(again.vc).toEqual(donor.vc)
        expect(await dumpStates(again)).toEqual(await dumpStates(donor))
        expect(await again.tombstoneCount()).toBe(1)
        await h.close(again)
        // Nothing was staged, and no marker is left.
        expect(await rawCounts(h.fixture.reopen())).toMatchObject({ stage: 0, meta: 4 })
      })

      it('a commit while a snapshot goes into place moves it onto the stage first: the commit is served at once, and the end joins both', async () => {
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('a', 'theirs'), incr('c', 3)])
        await donor.commitLocal([put('b', '2'), add('s', 'm')])
        const snapshot = await snapshotOf(donor)
        const [first, second] = halves(snapshot.entries)
        const store = await h.open()
        const intake = await store.receiveSnapshot(snapshot.vc)
        await intake.write(checkStates(first))
        await store.commitLocal([put('mine', 'v'), put('a', 'mine'), incr('c', 1)])
        expect(intake.into).toBe('stage')
        expect(await valueOf(store, 'mine')).toBe('v')
        expect(await valueOf(store, 'a')).toBe('mine')
        expect(await keysOf(store, 'kv')).toEqual(['a', 'mine'])
        await intake.write(checkStates(second))
        await intake.finish()
        await intake.abandon()
        expect(store.vc).toEqual(vc([donor.nodeId, 2], [store.nodeId, 1]))
        expect(await keysOf(store, 'kv')).toEqual(['a', 'b', 'mine'])
        // Concurrent writes of 'a': both kept; the counters add up.
        expect(registerDots((await store.getState('kv', 'a')) as RegisterState)).toHaveLength(2)
        expect(counterValue(await store.getState('counter', 'c'))).toBe(4)
        expect(setMembers(await store.getState('set', 's'))).toEqual(['m'])
        await h.close(store)
        expect(await rawCounts(h.fixture.reopen())).toMatchObject({ stage: 0 })
      })

      it('a snapshot going into place that is dropped, or cut off by a crash, leaves nothing: the node is brand new again', async () => {
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('a', '1'), put('gone', 'x'), add('s', 'm'), incr('c', 3)])
        await donor.commitLocal([del('gone')])
        const snapshot = await snapshotOf(donor)
        const [first, second] = halves(snapshot.entries)
        const store = await h.open()
        const dropped = await store.receiveSnapshot(snapshot.vc)
        await dropped.write(checkStates(first))
        await dropped.abandon()
        expect(await dumpStates(store)).toEqual(await dumpStates(await h.open({}, (await makeBackendFor(h)).backend)))
        const cut = await store.receiveSnapshot(snapshot.vc)
        expect(cut.into).toBe('place')
        await cut.write(checkStates([...first, ...second]))
        // The process ends before the end of the snapshot: its marker is on disk, the clock is not.
        await h.close(store)
        const raw = h.fixture.reopen()
        expect((await rawCounts(raw)).kv).toBeGreaterThan(0)
        const again = await h.open({}, h.fixture.reopen())
        expect(again.vc).toEqual({})
        expect(await again.tombstoneCount()).toBe(0)
        await h.close(again)
        expect(await rawCounts(h.fixture.reopen())).toMatchObject({ kv: 0, counter: 0, set: 0, tombs: 0, stage: 0 })
        const third = await h.open({}, h.fixture.reopen())
        const taken = await third.receiveSnapshot(snapshot.vc)
        expect(taken.into).toBe('place')
        await taken.write(checkStates(snapshot.entries))
        await taken.finish()
        expect(await dumpStates(third)).toEqual(await dumpStates(donor))
      })

      it('a store holding data takes a snapshot on the stage; a malformed state is refused before anything is written', async () => {
        const store = await h.open()
        await store.commitLocal([put('mine', 'v')])
        const intake = await store.receiveSnapshot({})
        expect(intake.into).toBe('stage')
        await intake.abandon()
        expect(() => checkStates([['kv', 'bad', new Uint8Array([0xc1, 0xff])]])).toThrow(MeshError)
        expect(() => checkStates([['nope' as Space, 'k', new Uint8Array([0x90])]])).toThrow(MeshError)
      })

      it('a join cut off by a crash after its marker is finished at the next open', async () => {
        const store = await h.open()
        const donor = await h.open({}, (await makeBackendFor(h)).backend)
        await donor.commitLocal([put('x', '1'), incr('c', 2)])
        const { entries } = await snapshotOf(donor)
        await store.stageSnapshot(entries)
        // What applyStagedSnapshot writes first; the process dies before the join.
        await h.fixture.backend.write(
          [{ type: 'put', sub: 'meta', key: 'snapshot', value: encode({ vc: donor.vc, phase: 1 }) }],
          { sync: true },
        )
        const again = await h.reopen(store)
        expect(again.vc).toEqual(donor.vc)
        expect(await dumpStates(again)).toEqual(await dumpStates(donor))
        const third = await h.reopen(again)
        expect(await dumpStates(third)).toEqual(await dumpStates(donor))
      })
    })
  })
}
