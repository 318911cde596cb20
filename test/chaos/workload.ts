/**
 * The chaos clients: several sessions, each one `MeshClient` (sticky or round-robin, each starting
 * on another node) running one operation at a time until told to stop, and recording each in the
 * history: puts of unique values to unique keys (`u/<session>/<n>`) and to a few contended keys
 * (`c/<k>`) at write concerns 1, 2, quorum and all; counter increments; set adds (some preceded by
 * a remove of the same member, which cannot have observed the add) and removes of members the
 * session added; reads with the session's causal token (asking for siblings).
 *
 * While a live member is being forgotten (faults.ts), writes planned at w=1 go at w=2.
 *
 * Every choice comes from a PRNG seeded per session, so a seed gives each session the same plan;
 * what the cluster answers (and so the interleaving) depends on timing.
 */
import type { WriteConcern } from '../../src/client/index.js'
import { MeshClient } from '../../src/client/index.js'
import { MeshError } from '../../src/errors.js'
import type { CompletionEvent, HistoryWriter, Operation, WriteConcernSpec } from '../checkers/history.js'
import { prng } from '../helpers/async.js'

export const CONTENDED_KEYS = ['c/0', 'c/1', 'c/2', 'c/3'] as const
export const COUNTERS = ['ctr/0', 'ctr/1'] as const
export const SETS = ['set/0', 'set/1'] as const
export const UNIQUE_PREFIX = 'u/'
const CONCERNS: readonly WriteConcernSpec[] = [1, 2, 'quorum', 'all']

export interface WorkloadOptions {
  /** Node URLs; node n is urls[n - 1]. */
  urls: readonly string[]
  seed: number
  sessions: number
  history: HistoryWriter
  /** MeshClient's per-attempt timeout. */
  clientTimeoutMs: number
  /** How long a node may wait for a write concern or for a read's token. */
  waitMs: number
}

export interface WorkloadStats {
  sessions: { index: number; policy: string; ops: number }[]
}

/** Mixes a seed with a session index into a new 32-bit seed. */
export function subSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 0
}

export class Workload {
  readonly #options: WorkloadOptions
  readonly #abort = new AbortController()
  #stopping = false
  /** While a live member is being forgotten: every write at w >= 2 (test/chaos/member-faults.ts). */
  #atLeastTwo = false
  #running: Promise<void>[] = []
  readonly #ops: number[] = []

  constructor(options: WorkloadOptions) {
    this.#options = options
  }

  /** From now on, writes the plan sends at w=1 go at w=2 (`on`), or as planned again. */
  atLeastTwo(on: boolean): void {
    this.#atLeastTwo = on
  }

  start(): void {
    for (let index = 0; index < this.#options.sessions; index++) {
      this.#ops.push(0)
      this.#running.push(this.#session(index))
    }
  }

  /**
   * Asks every session to finish its current operation; after `graceMs` the ones still waiting
   * (a request to a stopped node) are aborted, which records a write as unknown.
   */
  async stop(graceMs: number): Promise<WorkloadStats> {
    this.#stopping = true
    const all = Promise.all(this.#running)
    const timer = setTimeout(() => this.#abort.abort(new Error('the chaos run is over')), graceMs)
    try {
      await all
    } finally {
      clearTimeout(timer)
    }
    return { sessions: this.#ops.map((ops, index) => ({ index, policy: policyOf(index), ops })) }
  }

  async #session(index: number): Promise<void> {
    const { urls, history, clientTimeoutMs, waitMs } = this.#options
    const random = prng(subSeed(this.#options.seed, index))
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
    // Each session starts on another node; a sticky one stays there until it fails.
    const nodes = urls.map((_, offset) => urls[(index + offset) % urls.length] as string)
    let lastEndpoint: string | undefined
    const recordingFetch = (input: string | URL, init?: RequestInit): Promise<Response> => {
      lastEndpoint = new URL(String(input)).origin
      return fetch(input, init)
    }
    const client = new MeshClient({ nodes, policy: policyOf(index), timeoutMs: clientTimeoutMs, fetch: recordingFetch })
    const signal = this.#abort.signal
    const ownKeys: string[] = []
    const ownMembers: { name: string; member: string }[] = []
    let n = 0

    const run = async <T>(
      op: Operation,
      call: () => Promise<T>,
      done: (value: T) => Partial<CompletionEvent>,
    ): Promise<T | undefined> => {
      const invoke = history.invoke(index, client.currentEndpoint, op)
      lastEndpoint = undefined
      this.#ops[index] = (this.#ops[index] ?? 0) + 1
      try {
        const value = await call()
        history.complete({
          kind: 'ok',
          id: invoke.id,
          ...done(value),
          ...(lastEndpoint === undefined ? {} : { servedBy: lastEndpoint }),
        })
        return value
      } catch (error) {
        const code = error instanceof MeshError ? error.code : error instanceof Error ? error.name : 'error'
        const kind = op.type === 'get' ? 'fail' : outcomeOf(error)
        history.complete({
          kind,
          id: invoke.id,
          code,
          ...(lastEndpoint === undefined ? {} : { servedBy: lastEndpoint }),
        })
        return undefined
      }
    }

    while (!this.#stopping) {
      n++
      const roll = random()
      const planned = pick(CONCERNS)
      const w = this.#atLeastTwo && planned === 1 ? 2 : planned
      const concern = { w: w as WriteConcern, waitMs, signal }
      if (roll < 0.35) {
        const key = `${UNIQUE_PREFIX}${index}/${n}`
        const value = `v${index}-${n}`
        const written = await run(
          { type: 'put', key, value, w },
          () => client.put(key, value, concern),
          (result) => ({ result: result.version, token: result.token }),
        )
        if (written !== undefined) ownKeys.push(key)
      } else if (roll < 0.5) {
        const key = pick(CONTENDED_KEYS)
        const value = `c${index}-${n}`
        await run(
          { type: 'put', key, value, w },
          () => client.put(key, value, concern),
          (result) => ({ result: result.version, token: result.token }),
        )
      } else if (roll < 0.63) {
        const name = pick(COUNTERS)
        const delta = 1 + Math.floor(random() * 3)
        await run(
          { type: 'incr', name, delta, w },
          () => client.incr(name, delta, concern),
          (value) => ({ result: value, ...tokenOf(client) }),
        )
      } else if (roll < 0.73) {
        const name = pick(SETS)
        const member = `m${index}-${n}`
        // A remove before the add cannot have observed it: the add must survive it.
        if (random() < 0.25)
          await run(
            { type: 'srem', name, member, w },
            () => client.srem(name, [member], concern),
            (members) => ({ result: members.length, ...tokenOf(client) }),
          )
        const added = await run(
          { type: 'sadd', name, member, w },
          () => client.sadd(name, [member], concern),
          (members) => ({ result: members.length, ...tokenOf(client) }),
        )
        if (added !== undefined) ownMembers.push({ name, member })
      } else if (roll < 0.78) {
        if (ownMembers.length === 0) continue
        const [target] = ownMembers.splice(Math.floor(random() * ownMembers.length), 1)
        if (target === undefined) continue
        await run(
          { type: 'srem', name: target.name, member: target.member, w },
          () => client.srem(target.name, [target.member], concern),
          (members) => ({ result: members.length, ...tokenOf(client) }),
        )
      } else {
        // A read of a key this session wrote (its recent unique keys) or of a contended key.
        const key =
          ownKeys.length > 0 && random() < 0.6
            ? (ownKeys[ownKeys.length - 1 - Math.floor(random() * Math.min(50, ownKeys.length))] as string)
            : pick(CONTENDED_KEYS)
        await run(
          { type: 'get', key, token: client.token ?? null },
          () => client.get(key, { siblings: true, waitMs, signal }),
          (entry) => ({
            result: entry === undefined ? null : new TextDecoder().decode(entry.value),
            siblings: (entry?.siblings ?? [])
              .filter((sibling) => sibling.value !== null)
              .map((sibling) => new TextDecoder().decode(sibling.value as Uint8Array)),
          }),
        )
      }
    }
  }
}

function policyOf(index: number): 'sticky' | 'round-robin' {
  return index % 2 === 0 ? 'sticky' : 'round-robin'
}

function tokenOf(client: MeshClient): { token?: string } {
  return client.token === undefined ? {} : { token: client.token }
}

/**
 * A failed write: `fail` only when it is known not to have run — refused with a 4xx, a node that
 * said it did not run it (not ready, closed), or every node unreachable before anything was sent.
 * Everything else may have been applied: a timeout, a connection that broke after sending, a
 * write concern that timed out (the change stays committed), an abort.
 */
export function outcomeOf(error: unknown): 'fail' | 'unknown' {
  if (!(error instanceof MeshError)) return 'unknown'
  const details = error.details ?? {}
  switch (error.code) {
    case 'MESHKV_ERR_UNREACHABLE': {
      const attempts = details['attempts']
      if (details['maybeApplied'] === false) return 'fail'
      if (
        Array.isArray(attempts) &&
        attempts.length > 0 &&
        attempts.every(
          (attempt: { kind?: string }) => attempt.kind === 'not-delivered' || attempt.kind === 'not-serving',
        )
      )
        return 'fail'
      return 'unknown'
    }
    case 'MESHKV_ERR_NOT_READY':
    case 'MESHKV_ERR_CLOSED':
      return 'fail'
    case 'MESHKV_ERR_WRITE_CONCERN_TIMEOUT':
    case 'MESHKV_ERR_ABORTED':
    case 'MESHKV_ERR_INTERNAL':
      return 'unknown'
    default: {
      const status = typeof details['status'] === 'number' ? details['status'] : error.status
      return status >= 400 && status < 500 ? 'fail' : 'unknown'
    }
  }
}
