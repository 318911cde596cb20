/**
 * The client load of the rolling restart test (rolling.test.ts): `MeshClient` sessions that write
 * and read their own keys and counter without pause, and keep what a checker needs to say whether
 * anything acknowledged was lost or any read went backwards.
 *
 * Each session owns its keys (`roll-s<S>-<k>`) and one counter (`roll-s<S>`); no other session
 * writes them, so the session alone decides what "later" means. Every value it writes is
 * `s<S>:<n>` with `n` counting up over the session's writes, so a key's state holds write `n` or a
 * later one exactly when the greatest `n` among its siblings is at least `n` (a concurrent write
 * made after a failover is a sibling, not a loss: the read with siblings sees both).
 */
import { MeshClient } from '../../src/client/index.js'
import type { RoutingPolicy } from '../../src/client/endpoints.js'
import { isMeshError } from '../../src/errors.js'

/** Keys per session: few, so each is written and read many times across every restart. */
export const KEYS_PER_SESSION = 6

export interface Failure {
  session: number
  op: string
  key: string
  atMs: number
  error: string
}

export interface Regression {
  session: number
  key: string
  /** What the session had seen (acknowledged or read) before this read began. */
  floor: number
  read: number
  endpoint: string
  atMs: number
}

/** The greatest write number among a key's live siblings (-1 when it reads as missing). */
export function newestWrite(entry: { siblings?: { value: Uint8Array | null }[] } | undefined): number {
  let newest = -1
  for (const sibling of entry?.siblings ?? []) {
    if (sibling.value === null) continue
    const match = /^s\d+:(\d+)$/.exec(new TextDecoder().decode(sibling.value))
    if (match !== null) newest = Math.max(newest, Number(match[1]))
  }
  return newest
}

export class Session {
  readonly client: MeshClient
  /** Per key: the greatest write number acknowledged. */
  readonly acked = new Map<string, number>()
  /** Per key: the greatest write number seen, acknowledged or read (the floor of the next read). */
  readonly seen = new Map<string, number>()
  readonly failures: Failure[] = []
  readonly regressions: Regression[] = []
  /** Operations that succeeded (writes and reads). */
  okOps = 0
  reads = 0
  /** Counter increments acknowledged, and sent (an acknowledged one is sent too). */
  incrAcked = 0
  incrSent = 0
  /** The greatest counter value seen, acknowledged or read. */
  counterSeen = 0
  #writes = 0
  #stop = false
  #loop: Promise<void> | undefined

  constructor(
    readonly n: number,
    nodes: readonly string[],
    policy: RoutingPolicy,
  ) {
    this.client = new MeshClient({ nodes: [...nodes], policy, timeoutMs: 5_000 })
  }

  get counterName(): string {
    return `roll-s${this.n}`
  }

  keyOf(k: number): string {
    return `roll-s${this.n}-${k}`
  }

  start(): void {
    this.#loop = this.#run()
  }

  async stop(): Promise<void> {
    this.#stop = true
    await this.#loop
  }

  async #run(): Promise<void> {
    for (let i = 0; !this.#stop; i++) {
      const key = this.keyOf(i % KEYS_PER_SESSION)
      await this.#op('put', key, () => this.#put(key))
      await this.#op('get', key, () => this.#read(key))
      // A key written a few steps ago: a read of it may land on a node that has not seen it yet.
      const older = this.keyOf((i + KEYS_PER_SESSION - 2) % KEYS_PER_SESSION)
      await this.#op('get', older, () => this.#read(older))
      if (i % 3 === 0) await this.#op('incr', this.counterName, () => this.#incr())
      if (i % 3 === 1) await this.#op('counter', this.counterName, () => this.#readCounter())
    }
  }

  async #op(op: string, key: string, run: () => Promise<void>): Promise<void> {
    try {
      await run()
      this.okOps++
    } catch (error) {
      const text = isMeshError(error)
        ? `${error.code}: ${error.message} ${JSON.stringify(error.details ?? {})}`
        : String(error)
      this.failures.push({ session: this.n, op, key, atMs: Date.now(), error: text.slice(0, 600) })
    }
  }

  async #put(key: string): Promise<void> {
    const n = ++this.#writes
    await this.client.put(key, `s${this.n}:${n}`, { w: 2, waitMs: 5_000 })
    this.acked.set(key, Math.max(this.acked.get(key) ?? -1, n))
    this.seen.set(key, Math.max(this.seen.get(key) ?? -1, n))
  }

  async #read(key: string): Promise<void> {
    const floor = this.seen.get(key) ?? -1
    const entry = await this.client.get(key, { siblings: true })
    const read = newestWrite(entry)
    this.reads++
    if (read < floor)
      this.regressions.push({
        session: this.n,
        key,
        floor,
        read,
        endpoint: this.client.currentEndpoint,
        atMs: Date.now(),
      })
    this.seen.set(key, Math.max(floor, read))
  }

  async #incr(): Promise<void> {
    this.incrSent++
    const value = await this.client.incr(this.counterName, 1, { w: 2, waitMs: 5_000 })
    this.incrAcked++
    this.counterSeen = Math.max(this.counterSeen, value)
  }

  async #readCounter(): Promise<void> {
    const floor = this.counterSeen
    const value = await this.client.counter(this.counterName)
    this.reads++
    if (value < floor)
      this.regressions.push({
        session: this.n,
        key: this.counterName,
        floor,
        read: value,
        endpoint: this.client.currentEndpoint,
        atMs: Date.now(),
      })
    this.counterSeen = Math.max(floor, value)
  }
}
