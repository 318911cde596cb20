/**
 * L3 crash durability (docs/testing.md): a real child process (test/fixtures/crash-writer.ts) writes
 * with fsync on and reports each acknowledged write; the parent kills it with SIGKILL at a random
 * moment, reopens the directory in this process and checks that the store opens, that no
 * acknowledged write is lost, and that VC, LSN, log and states agree.
 *
 * 20 loops on one directory (the store survives crash after crash), every fifth on a fresh
 * directory killed while it opens. The kill moments come from one seeded PRNG: the seed is printed,
 * and `MESHKV_CRASH_SEED=<seed>` replays it (`MESHKV_CRASH_LOOPS` changes the number of loops).
 */
import { describe, expect, it } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { compareHlc, encodeVersion, vcGet } from '../../src/clock/index.js'
import type { RegisterState } from '../../src/crdt/index.js'
import { lwwSibling, registerDots } from '../../src/crdt/index.js'
import { MeshNode } from '../../src/node/index.js'
import { decodeValue } from '../../src/node/index.js'
import { LevelBackend, Store } from '../../src/storage/index.js'
import { meshCodeOf, prng, sleep, tempDir } from '../helpers/async.js'
import { fromUtf8 } from '../helpers/bytes.js'
import { ChildLines, spawnFixture } from '../helpers/child.js'
import { CRASH_COUNTER, crashRun, crashValue } from '../helpers/crash.js'

const { seed: SEED, loops: LOOPS, replay: REPLAY } = crashRun('test/storage/crash.test.ts', 20)
/** The longest wait after the first acknowledged write before the kill. */
const KILL_AFTER_MS_MAX = 250
const START_TIMEOUT_MS = 20_000

/** What the writers' acknowledgements promise about one data directory. */
interface Expectations {
  nodeId: NodeId | undefined
  /** Acknowledged puts: key → version. */
  readonly puts: Map<string, string>
  /** Deletes issued (acknowledged or not): the key may be either way. */
  readonly deleting: Set<string>
  /** Acknowledged deletes. */
  readonly deleted: Set<string>
  increments: { started: number; acknowledged: number; highest: number }
  /** The LSN at the last check: entries above it are checked in full. */
  checkedLsn: number
}

function newExpectations(): Expectations {
  return {
    nodeId: undefined,
    puts: new Map(),
    deleting: new Set(),
    deleted: new Set(),
    increments: { started: 0, acknowledged: 0, highest: 0 },
    checkedLsn: 0,
  }
}

/** Folds a killed child's output into what must now hold. */
function learn(facts: Expectations, lines: readonly string[]): { puts: number } {
  let puts = 0
  for (const line of lines) {
    const [verb, key = '', version = ''] = line.split(' ')
    switch (verb) {
      case 'open':
        if (facts.nodeId === undefined) facts.nodeId = key as NodeId
        else if (facts.nodeId !== key) throw new Error(`the node id changed from ${facts.nodeId} to ${key}`)
        break
      case 'put':
        facts.puts.set(key, version)
        puts++
        break
      case 'deleting':
        facts.deleting.add(key)
        break
      case 'del':
        facts.deleted.add(key)
        break
      case 'incrementing':
        facts.increments.started++
        break
      case 'incr':
        facts.increments.acknowledged++
        facts.increments.highest = Math.max(facts.increments.highest, Number(key))
        break
      case 'opening':
        break
      default:
        throw new Error(`the writer printed an unknown line: ${JSON.stringify(line)}`)
    }
  }
  return { puts }
}

/** Reopens the directory after the kill and checks everything the acknowledgements promised. */
async function check(dir: string, expected: Expectations, newKeys: readonly string[]): Promise<void> {
  // Through the public API: the node opens, keeps its id, and serves every acknowledged write.
  const node = await MeshNode.open({ dir })
  try {
    if (expected.nodeId !== undefined) expect(node.nodeId).toBe(expected.nodeId)
    for (const key of newKeys) {
      if (expected.deleting.has(key)) continue
      const entry = await node.get(key)
      expect(entry, `acknowledged put of ${key}`).toBeDefined()
      expect(decodeValue(entry as NonNullable<typeof entry>)).toEqual(crashValue(key))
      expect(entry?.version).toBe(expected.puts.get(key))
    }
    const count = await node.counter(CRASH_COUNTER).value()
    expect(count).toBeGreaterThanOrEqual(expected.increments.acknowledged)
    expect(count).toBeGreaterThanOrEqual(expected.increments.highest)
    expect(count).toBeLessThanOrEqual(expected.increments.started)
  } finally {
    await node.close()
  }

  // Through the store: the log, the VC, the LSN and the states agree with each other.
  const store = await Store.open({
    backend: new LevelBackend(dir),
    now: Date.now,
    randomBytes: () => {
      throw new Error('the node id must already exist')
    },
  })
  try {
    const self = store.nodeId
    expected.nodeId ??= self
    expect(self).toBe(expected.nodeId)
    const log = await store.readLog(0, store.lsn + 1_000)
    expect(log).toHaveLength(store.lsn)
    expect(log.at(-1)?.lsn ?? 0).toBe(store.lsn)
    expect(await store.firstLsn()).toBe(1)
    expect(Object.keys(store.vc)).toEqual(store.lsn === 0 ? [] : [self])
    expect(Math.max(0, ...log.map((entry) => entry.change.dot.seq))).toBe(vcGet(store.vc, self))

    const last = new Map<string, { type: 'kv.put' | 'kv.del'; value?: Uint8Array; seq: number }>()
    for (const [index, { lsn, change }] of log.entries()) {
      expect(lsn).toBe(index + 1)
      expect(change.dot).toEqual({ node: self, seq: index + 1 })
      expect(change.deps).toEqual(index === 0 ? {} : { [self]: index })
      if (index > 0)
        expect(compareHlc(change.hlc, (log[index - 1] as (typeof log)[number]).change.hlc)).toBeGreaterThan(0)
      if (lsn > expected.checkedLsn || lsn === store.lsn) expect(await store.lsnOfDot(change.dot)).toBe(lsn)
      for (const op of change.ops) {
        if (op.type === 'kv.put') last.set(op.key, { type: op.type, value: op.value, seq: change.dot.seq })
        else if (op.type === 'kv.del') last.set(op.key, { type: op.type, seq: change.dot.seq })
      }
    }
    if (log.length > 0) expect(store.hlc).toEqual(log.at(-1)?.change.hlc)

    // Every state is what the log's last write of its key made, and no state lacks a log entry.
    const states = new Map<string, RegisterState>()
    for await (const [key, state] of store.iterateStates('kv', {})) states.set(key, state)
    expect(new Set(states.keys())).toEqual(new Set(last.keys()))
    for (const [key, write] of last) {
      const state = states.get(key) as RegisterState
      expect(state.siblings.map((sibling) => sibling.dot)).toEqual([{ node: self, seq: write.seq }])
      const winner = lwwSibling(state)
      if (write.type === 'kv.put')
        expect(fromUtf8(winner?.value ?? new Uint8Array())).toBe(fromUtf8(write.value as Uint8Array))
      else expect(winner?.value).toBeNull()
    }
    // Every acknowledged write, old and new: puts present at their version, deletes deleted.
    for (const [key, version] of expected.puts) {
      if (expected.deleting.has(key)) continue
      const state = states.get(key)
      expect(state && lwwSibling(state)?.value !== null, `acknowledged put of ${key}`).toBe(true)
      expect(encodeVersion(registerDots(state as RegisterState))).toBe(version)
    }
    for (const key of expected.deleted)
      expect(lwwSibling(states.get(key) as RegisterState)?.value, `acknowledged delete of ${key}`).toBeNull()
    expected.checkedLsn = store.lsn
  } finally {
    await store.close()
  }
}

/** One loop: start a writer, kill it after its first acknowledgement and a random wait, check. */
async function killWhileWriting(
  dir: string,
  run: number,
  random: () => number,
  expected: Expectations,
): Promise<{ puts: number }> {
  const child = new ChildLines(
    spawnFixture('crash-writer.ts', [dir, String(run), String(Math.floor(random() * 2 ** 32))]),
  )
  try {
    await child.waitFor((line) => line.startsWith('put '), START_TIMEOUT_MS, 'a first acknowledged write')
    await sleep(Math.floor(random() * KILL_AFTER_MS_MAX))
  } finally {
    child.child.kill('SIGKILL')
  }
  const { signal } = await child.ended
  expect(signal, `the writer died on its own; stderr:\n${child.stderr}`).toBe('SIGKILL')
  const learned = learn(expected, child.lines)
  const newKeys = child.lines.filter((line) => line.startsWith('put ')).map((line) => line.split(' ')[1] as string)
  await check(dir, expected, newKeys)
  return learned
}

/** One loop on a fresh directory: kill the writer while it opens the store for the first time. */
async function killWhileOpening(run: number, random: () => number): Promise<void> {
  const fresh = await tempDir('crash-open')
  try {
    const expected = newExpectations()
    const child = new ChildLines(spawnFixture('crash-writer.ts', [fresh.dir, String(run), '1']))
    try {
      await child.waitFor((line) => line === 'opening', START_TIMEOUT_MS, 'the start of open')
      await sleep(Math.floor(random() * 25))
    } finally {
      child.child.kill('SIGKILL')
    }
    const { signal } = await child.ended
    expect(signal, `the writer died on its own; stderr:\n${child.stderr}`).toBe('SIGKILL')
    const { puts } = learn(expected, child.lines)
    const newKeys = child.lines.filter((line) => line.startsWith('put ')).map((line) => line.split(' ')[1] as string)
    expect(puts).toBe(newKeys.length)
    await check(fresh.dir, expected, newKeys)
  } finally {
    await fresh.remove()
  }
}

describe('crash durability (L3): SIGKILL a writing process, reopen, check', () => {
  it(`loses no acknowledged write and reopens consistent over ${LOOPS} kill -9 loops`, async () => {
    console.log(`crash test seed ${SEED} (replay: ${REPLAY})`)
    const random = prng(SEED)
    const shared = await tempDir('crash')
    const expected = newExpectations()
    let acknowledged = 0
    try {
      for (let run = 0; run < LOOPS; run++) {
        try {
          if (run % 5 === 4) await killWhileOpening(run, random)
          else acknowledged += (await killWhileWriting(shared.dir, run, random, expected)).puts
        } catch (error) {
          throw new Error(
            `crash loop ${run} failed with seed ${SEED} (replay: ${REPLAY}): ${(error as Error).message}`,
            { cause: error },
          )
        }
      }
    } finally {
      await shared.remove()
    }
    console.log(
      `crash test seed ${SEED}: ${LOOPS} loops, ${acknowledged} acknowledged puts checked, final LSN ${expected.checkedLsn}`,
    )
    expect(acknowledged).toBeGreaterThan(0)
    expect(expected.deleted.size).toBeGreaterThan(0)
    expect(expected.increments.acknowledged).toBeGreaterThan(0)
  }, 120_000)

  it('refuses a directory held by a live process with MESHKV_ERR_LOCKED, and opens it once that process is killed', async () => {
    const { dir, remove } = await tempDir('crash-lock')
    try {
      const child = new ChildLines(spawnFixture('crash-writer.ts', [dir, '0', '7']))
      try {
        await child.waitFor((line) => line.startsWith('open '), START_TIMEOUT_MS, 'the node to open')
        expect(await meshCodeOf(MeshNode.open({ dir }))).toBe('MESHKV_ERR_LOCKED')
        expect(await meshCodeOf(new LevelBackend(dir).open())).toBe('MESHKV_ERR_LOCKED')
      } finally {
        child.child.kill('SIGKILL')
      }
      await child.ended
      const node = await MeshNode.open({ dir })
      expect(node.nodeId).toBe(child.lines.find((line) => line.startsWith('open '))?.split(' ')[1])
      await node.close()
    } finally {
      await remove()
    }
  }, 30_000)
})
