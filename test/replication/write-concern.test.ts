import { describe, expect, it } from 'vitest'
import type { Concern } from '../../src/api/concern.js'
import { parseWriteConcern, requiredMembers } from '../../src/api/concern.js'
import type { Dot, NodeId } from '../../src/clock/index.js'
import { HolderWaiters } from '../../src/replication/write-concern.js'
import { meshErrorCode } from '../helpers/runs.js'

/** The write-concern count of src/api/concern.ts, as replication uses it. */
const requiredHolders = (concern: Concern, members: number): number => requiredMembers(concern, members, 'w')

describe('parseWriteConcern', () => {
  it('defaults to 1 (async) when w is absent or empty', () => {
    expect(parseWriteConcern(undefined)).toBe(1)
    expect(parseWriteConcern(null)).toBe(1)
    expect(parseWriteConcern('')).toBe(1)
  })

  it('takes "quorum" and "all" as they are', () => {
    expect(parseWriteConcern('quorum')).toBe('quorum')
    expect(parseWriteConcern('all')).toBe('all')
  })

  it('takes counts as numbers or decimal strings', () => {
    expect(parseWriteConcern(1)).toBe(1)
    expect(parseWriteConcern(3)).toBe(3)
    expect(parseWriteConcern('1')).toBe(1)
    expect(parseWriteConcern('2')).toBe(2)
    expect(parseWriteConcern('17')).toBe(17)
    expect(parseWriteConcern('9999')).toBe(9999)
  })

  it.each([
    ['zero', 0],
    ['a negative count', -1],
    ['a fraction', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['an unsafe integer', 2 ** 53],
    ['"0"', '0'],
    ['"-1"', '-1'],
    ['a leading zero', '02'],
    ['a fraction string', '1.5'],
    ['an exponent', '1e2'],
    ['hex', '0x2'],
    ['whitespace', ' 2'],
    ['a trailing space', '2 '],
    ['five digits', '10000'],
    ['another word', 'majority'],
    ['a differently cased word', 'QUORUM'],
    ['"ALL"', 'ALL'],
    ['a boolean', true],
    ['an object', {}],
    ['an array', [2]],
  ])('refuses %s with MESHKV_ERR_INVALID_ARGUMENT', (_name, value) => {
    expect(meshErrorCode(() => parseWriteConcern(value))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })
})

describe('requiredHolders', () => {
  it('asks for exactly w members for w = 1 … n', () => {
    for (let members = 1; members <= 7; members++) {
      for (let w = 1; w <= members; w++) expect(requiredHolders(w, members)).toBe(w)
    }
  })

  it('quorum is a strict majority of the members', () => {
    const expected: Record<number, number> = { 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4 }
    for (const [members, required] of Object.entries(expected))
      expect(requiredHolders('quorum', Number(members))).toBe(required)
    for (let members = 1; members <= 50; members++) {
      const required = requiredHolders('quorum', members)
      // Two quorums always overlap, and a quorum never asks for more than there are.
      expect(2 * required).toBeGreaterThan(members)
      expect(required).toBeLessThanOrEqual(members)
    }
  })

  it('all is every member', () => {
    for (let members = 1; members <= 7; members++) expect(requiredHolders('all', members)).toBe(members)
  })

  it('refuses a count above the cluster size with MESHKV_ERR_INVALID_ARGUMENT', () => {
    expect(meshErrorCode(() => requiredHolders(2, 1))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(meshErrorCode(() => requiredHolders(4, 3))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(meshErrorCode(() => requiredHolders(parseWriteConcern('9999'), 5))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('parsed values feed it directly', () => {
    expect(requiredHolders(parseWriteConcern(undefined), 3)).toBe(1)
    expect(requiredHolders(parseWriteConcern('2'), 3)).toBe(2)
    expect(requiredHolders(parseWriteConcern('quorum'), 3)).toBe(2)
    expect(requiredHolders(parseWriteConcern('all'), 3)).toBe(3)
  })
})

describe('HolderWaiters', () => {
  const dot: Dot = { node: '00000000000000aa' as NodeId, seq: 1 }

  /** Waiters over a holder count the test sets, and the names of the waits resolved so far. */
  function setUp(holders: number): { waiters: HolderWaiters; resolved: string[]; set: (count: number) => void } {
    let count = holders
    const waiters = new HolderWaiters(() => count)
    return { waiters, resolved: [], set: (next) => (count = next) }
  }

  /** Lets promise callbacks run, then checks which waits resolved. */
  async function expectResolved(resolved: string[], expected: string[]): Promise<void> {
    await Promise.resolve()
    expect(resolved).toEqual(expected)
  }

  it('resolves at once when enough members hold the change already', async () => {
    const { waiters, resolved } = setUp(2)
    void waiters.wait(dot, 2).promise.then(() => resolved.push('w=2'))
    await expectResolved(resolved, ['w=2'])
  })

  it('resolves on the check after the holders reach the count, and not before', async () => {
    const { waiters, resolved, set } = setUp(1)
    void waiters.wait(dot, 3).promise.then(() => resolved.push('w=3'))
    set(2)
    waiters.check()
    await expectResolved(resolved, [])
    set(3)
    waiters.check()
    await expectResolved(resolved, ['w=3'])
  })

  it('a cancelled wait is never resolved by a check, and releaseAll lets the others go', async () => {
    const { waiters, resolved, set } = setUp(1)
    const cancelled = waiters.wait(dot, 2)
    void cancelled.promise.then(() => resolved.push('cancelled'))
    void waiters.wait(dot, 5).promise.then(() => resolved.push('w=5'))
    cancelled.cancel()
    set(2)
    waiters.check()
    await expectResolved(resolved, [])
    waiters.releaseAll()
    await expectResolved(resolved, ['w=5'])
  })
})
