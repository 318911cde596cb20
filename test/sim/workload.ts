/**
 * The simulator's clients (docs/testing.md, level L1): sessions with causal tokens, sticky to a node
 * and failing over, running a mixed workload against the real `Store` of each node: register puts
 * (blind, or with the context of the session's last read) and deletes, counter increments, set adds
 * and removes, at w = 1, quorum or all (acknowledged once `waitForHolders` resolves within a virtual
 * timeout, else `unknown`); and reads carrying the session's causal token, at r = 1, quorum or all
 * (the state-based join of that many reachable members' states). Every operation is recorded in the
 * run's history for the checkers. Split from simulation.ts; the run (the `Simulation`) owns the
 * timeline, the PRNG and the nodes, this part owns the clients and the operations in flight.
 */
import type { Dot, VectorClock } from '../../src/clock/index.js'
import { encodeCausalToken, vcCovers, vcGet, vcJoin } from '../../src/clock/index.js'
import type { AnyState, Intent, Op, RegisterState, SetState, Space } from '../../src/crdt/index.js'
import { counterValue, joinState, lwwSibling, setMembers } from '../../src/crdt/index.js'
import { isMeshError } from '../../src/errors.js'
import type { CommitResult } from '../../src/storage/index.js'
import { stateId } from '../../src/storage/index.js'
import { requiredFor } from '../checkers/checks.js'
import type {
  CompletionEvent,
  InvokeEvent,
  Operation,
  ReadConcernSpec,
  ReadOperation,
  WriteConcernSpec,
  WriteOperation,
} from '../checkers/history.js'
import { dotString } from '../checkers/history.js'
import type { SimNode } from '../helpers/replication-sim.js'
import {
  COUNTER_NAMES,
  GUARD_CODES,
  KV_KEYS,
  MEMBERS,
  READ_TIMEOUT_MS,
  SET_NAMES,
  WRITE_TIMEOUT_MS,
  guardRefused,
} from './config.js'
import { BIG_KEY, valueName } from './nemesis-bigkey.js'
import type { Simulation } from './simulation.js'
import type { TimedEvent } from './timeline.js'

interface Client {
  id: number
  node: number
  token: VectorClock
  lastRead: Map<string, Dot[]>
  remaining: number
  busy: boolean
  written: number
}

export interface Flight {
  invoke: InvokeEvent
  client: Client
  node: number
  generation: number
  write: boolean
  dot?: string
  required?: number
  timer: TimedEvent | null
  cancel: (() => void) | null
  /** Ends the replicator's `expectAcks` of a write that waits for its concern. */
  expected?: () => void
  done: boolean
}

interface ReadWaiter {
  flight: Flight
  token: VectorClock
  op: ReadOperation
}

export const enc = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'))
export const dec = valueName

export class Workload {
  readonly #clients: Client[] = []
  /** Operations invoked and not completed yet, by id. */
  readonly flights = new Map<number, Flight>()
  readonly #waiters: ReadWaiter[] = []
  #nextOp = 1

  constructor(readonly sim: Simulation) {}

  /** Every client ran all its operations. */
  finished(): boolean {
    return this.#clients.every((client) => client.remaining === 0 && !client.busy)
  }

  startClients(): void {
    const { clients, ops, nodes } = this.sim.config
    for (let id = 0; id < clients; id++) {
      const remaining = Math.floor(ops / clients) + (id < ops % clients ? 1 : 0)
      const client: Client = {
        id,
        node: id % nodes,
        token: {},
        lastRead: new Map(),
        remaining,
        busy: false,
        written: 0,
      }
      this.#clients.push(client)
      this.#scheduleClient(client, Math.floor(this.sim.random() * 500))
    }
  }

  #scheduleClient(client: Client, delay: number): void {
    if (client.remaining === 0 || this.sim.phase !== 'chaos') return
    client.busy = true
    this.sim.timeline.after(delay, `client ${client.id}`, () => this.#nextOperation(client))
  }

  #failOver(client: Client): void {
    const n = this.sim.cluster.nodes.length
    client.node = (client.node + 1 + Math.floor(this.sim.random() * (n - 1))) % n
  }

  #writeConcern(): WriteConcernSpec {
    const roll = this.sim.random()
    return roll < 0.45 ? 1 : roll < 0.75 ? 'quorum' : 'all'
  }

  #readConcern(): ReadConcernSpec {
    const roll = this.sim.random()
    return roll < 0.7 ? 1 : roll < 0.9 ? 'quorum' : 'all'
  }

  #nextOperation(client: Client): void {
    client.remaining--
    if (this.sim.random() < 0.1) this.#failOver(client)
    const token = Object.keys(client.token).length === 0 ? null : encodeCausalToken(client.token)
    const roll = this.sim.random()
    if (roll < 0.22) {
      const key = this.sim.pick(KV_KEYS)
      const value = `v${client.id}.${client.written++}`
      const seen = client.lastRead.get(key)
      const context = seen !== undefined && this.sim.random() < 0.4 ? seen : undefined
      const op: WriteOperation = {
        type: 'put',
        key,
        value,
        w: this.#writeConcern(),
        ...(context === undefined ? {} : { context: context.map(dotString) }),
      }
      this.#write(client, op, [
        {
          type: 'kv.put',
          key,
          value: enc(value),
          contentType: 'text/plain',
          ...(context === undefined ? {} : { context }),
        },
      ])
    } else if (roll < 0.28) {
      const key = this.sim.pick(KV_KEYS)
      const seen = client.lastRead.get(key)
      const context = seen !== undefined && this.sim.random() < 0.4 ? seen : undefined
      const op: WriteOperation = {
        type: 'del',
        key,
        w: this.#writeConcern(),
        ...(context === undefined ? {} : { context: context.map(dotString) }),
      }
      this.#write(client, op, [{ type: 'kv.del', key, ...(context === undefined ? {} : { context }) }])
    } else if (roll < 0.43) {
      const name = this.sim.pick(COUNTER_NAMES)
      const delta =
        this.sim.random() < 0.25 ? -1 - Math.floor(this.sim.random() * 3) : 1 + Math.floor(this.sim.random() * 5)
      this.#write(client, { type: 'incr', name, delta, w: this.#writeConcern() }, [
        { type: 'counter.add', name, delta },
      ])
    } else if (roll < 0.53) {
      const name = this.sim.pick(SET_NAMES)
      const member = this.sim.pick(MEMBERS)
      this.#write(client, { type: 'sadd', name, member, w: this.#writeConcern() }, [{ type: 'set.add', name, member }])
    } else if (roll < 0.59) {
      const name = this.sim.pick(SET_NAMES)
      const member = this.sim.pick(MEMBERS)
      this.#write(client, { type: 'srem', name, member, w: this.#writeConcern() }, [
        { type: 'set.remove', name, member },
      ])
    } else if (roll < 0.8) {
      this.#read(client, { type: 'get', key: this.sim.pick(KV_KEYS), token, r: this.#readConcern() })
    } else if (roll < 0.9) {
      this.#read(client, { type: 'cget', name: this.sim.pick(COUNTER_NAMES), token, r: this.#readConcern() })
    } else {
      this.#read(client, { type: 'smembers', name: this.sim.pick(SET_NAMES), token, r: this.#readConcern() })
    }
  }

  #invoke(client: Client, op: Operation, write: boolean): Flight {
    const node = this.sim.cluster.node(client.node)
    const invoke: InvokeEvent = {
      kind: 'invoke',
      id: this.#nextOp++,
      client: client.id,
      node: client.node,
      atMs: this.sim.now(),
      op,
    }
    this.sim.record(invoke)
    this.sim.stats.ops++
    const flight: Flight = {
      invoke,
      client,
      node: client.node,
      generation: node.generation,
      write,
      timer: null,
      cancel: null,
      done: false,
    }
    this.flights.set(invoke.id, flight)
    return flight
  }

  finish(
    flight: Flight,
    kind: CompletionEvent['kind'],
    fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {},
  ): void {
    if (flight.done) return
    flight.done = true
    this.sim.timeline.cancel(flight.timer)
    flight.cancel?.()
    flight.expected?.()
    this.flights.delete(flight.invoke.id)
    const dot = fields.dot ?? flight.dot
    const required = fields.required ?? flight.required
    this.sim.record({
      kind,
      id: flight.invoke.id,
      atMs: this.sim.now(),
      ...fields,
      ...(dot === undefined ? {} : { dot }),
      ...(required === undefined ? {} : { required }),
    })
    if (kind === 'ok') this.sim.stats.acknowledged++
    else if (kind === 'unknown') this.sim.stats.unknown++
    else this.sim.stats.failed++
    this.sim.activity()
    const client = flight.client
    client.busy = false
    const moveOn = ['MESHKV_ERR_UNAVAILABLE', 'MESHKV_ERR_CONNECTION_RESET', 'MESHKV_ERR_NOT_READY', ...GUARD_CODES]
    if (kind !== 'ok' && fields.code !== undefined && moveOn.includes(fields.code)) this.#failOver(client)
    this.#scheduleClient(client, 20 + Math.floor(this.sim.random() * 300))
  }

  #write(client: Client, op: WriteOperation, intents: Intent[]): void {
    const flight = this.#invoke(client, op, true)
    const node = this.sim.cluster.node(flight.node)
    if (!node.alive) {
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
      return
    }
    // A node that learnt the cluster forgot it takes no writes: the survivors would refuse them.
    if (this.sim.members.knowsForgotten(node)) {
      this.sim.stats.writesRefusedForgotten++
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_FORGOTTEN' })
      return
    }
    // A node that has not joined its cluster yet takes no writes (docs/architecture.md, "Membership").
    if (!this.sim.members.rules(flight.node).joined) {
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_NOT_READY' })
      return
    }
    // A node whose seq guard holds own writes back refuses them, as the node's `checkWrites` does.
    const refusal = node.replicator.seqGuard.refusal()
    if (refusal !== null) {
      this.sim.stats.writesRefusedGuard++
      this.finish(flight, 'fail', { code: refusal.code })
      return
    }
    const { replicator } = node
    // As the node's writes do: peers are asked to ack its frame at once (replication/acks.ts).
    if (op.w !== 1) flight.expected = replicator.expectAcks()
    node.store.commitLocal(intents).then(
      (result) => {
        if (result.change !== null) {
          this.sim.made.set(dotString(result.change.dot), result.change)
          node.own++
        }
        if (flight.done) return
        this.#committed(flight, op, result, replicator)
      },
      (error: unknown) => {
        if (flight.done) return
        const code = isMeshError(error) ? error.code : 'UNEXPECTED'
        // Refused at mint time (the guard changed since the check above): nothing was written.
        if (guardRefused(error)) {
          this.sim.stats.writesRefusedGuard++
          this.finish(flight, 'fail', { code })
          return
        }
        // Past the key's limit (a big put): refused, nothing written.
        if (code === 'MESHKV_ERR_STATE_TOO_LARGE') {
          this.sim.stats.bigPutsRefused++
          return this.finish(flight, 'fail', { code })
        }
        if (code !== 'MESHKV_ERR_CLOSED')
          this.sim.internal(
            `a write failed unexpectedly: ${JSON.stringify(op)} on node ${flight.node}: ${String(error)}`,
          )
        this.finish(flight, 'unknown', { code })
      },
    )
  }

  /** A big put (nemesis-bigkey.ts), by a client of its own: each session keeps one op at a time. */
  bigPut(node: number, value: string, bytes: Uint8Array): void {
    const id = this.sim.config.clients + this.sim.stats.bigPuts++
    const client: Client = { id, node, token: {}, lastRead: new Map(), remaining: 0, busy: false, written: 0 }
    const op: WriteOperation = { type: 'put', key: BIG_KEY, value, w: this.#writeConcern(), context: [] }
    const contentType = 'application/octet-stream'
    this.#write(client, op, [{ type: 'kv.put', key: BIG_KEY, value: bytes, contentType, context: [] }])
  }

  #committed(flight: Flight, op: WriteOperation, result: CommitResult, replicator: SimNode['replicator']): void {
    const client = flight.client
    const token = encodeCausalToken(result.vc)
    const fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = { token }
    const change = result.change
    if (op.type === 'incr') fields.result = counterValue(result.states.get(stateId('counter', op.name)) as never)
    if (op.type === 'sadd' || op.type === 'srem') {
      const done = change?.ops.find(
        (o) => (o.type === 'set.add' || o.type === 'set.remove') && o.member === op.member,
      ) as Extract<Op, { type: 'set.add' }> | undefined
      fields.observed = done !== undefined && done.context.length > 0
    }
    if (change === null) {
      client.token = vcJoin(client.token, result.vc)
      this.finish(flight, 'ok', fields)
      return
    }
    flight.dot = dotString(change.dot)
    const required = requiredFor(op.w, this.sim.members.memberCount(flight.node))
    flight.required = required
    if (required <= 1) {
      client.token = vcJoin(client.token, result.vc)
      this.finish(flight, 'ok', fields)
      return
    }
    const wait = replicator.waitForHolders(change.dot, required)
    flight.cancel = wait.cancel
    flight.timer = this.sim.timeline.after(WRITE_TIMEOUT_MS, `w-timeout ${flight.invoke.id}`, () => {
      this.finish(flight, 'unknown', { code: 'MESHKV_ERR_WRITE_CONCERN_TIMEOUT' })
    })
    void wait.promise.then(() => {
      if (flight.done) return
      client.token = vcJoin(client.token, result.vc)
      this.finish(flight, 'ok', { ...fields, durableHolders: this.#durableHolders(change.dot) })
    })
  }

  /**
   * Members that durably hold `dot` or did until a lossy crash (which the checkers account for):
   * in what their disk keeps through a power loss (acks say the write is fsynced).
   */
  #durableHolders(dot: Dot): number {
    let count = 0
    for (const node of this.sim.cluster.nodes) {
      const held = Math.max(
        this.sim.diskSeq(node, dot.node, 'durable'),
        vcGet(this.sim.lostVc[node.index] ?? {}, dot.node),
      )
      if (held >= dot.seq) count++
    }
    return count
  }

  #read(client: Client, op: ReadOperation): void {
    const flight = this.#invoke(client, op, false)
    const node = this.sim.cluster.node(flight.node)
    if (!node.alive) {
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
      return
    }
    const waiter: ReadWaiter = { flight, token: client.token, op }
    if (vcCovers(node.store.vc, waiter.token)) {
      void this.#answer(waiter)
      return
    }
    flight.timer = this.sim.timeline.after(READ_TIMEOUT_MS, `r-timeout ${flight.invoke.id}`, () =>
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_READ_TIMEOUT' }),
    )
    this.#waiters.push(waiter)
  }

  checkWaiters(): void {
    for (let i = 0; i < this.#waiters.length; i++) {
      const waiter = this.#waiters[i] as ReadWaiter
      const { flight } = waiter
      const node = this.sim.cluster.node(flight.node)
      if (flight.done) {
        this.#waiters.splice(i--, 1)
        continue
      }
      if (node.alive && node.generation === flight.generation && vcCovers(node.store.vc, waiter.token)) {
        this.#waiters.splice(i--, 1)
        this.sim.timeline.cancel(flight.timer)
        flight.timer = null
        void this.#answer(waiter)
      }
    }
  }

  /** Reads from the node (and, for r above 1, from reachable members), joining their states. */
  async #answer(waiter: ReadWaiter): Promise<void> {
    const { flight, op } = waiter
    const coordinator = flight.node
    const r = op.r ?? 1
    const required = requiredFor(r, this.sim.members.memberCount(coordinator))
    const others = this.sim.cluster.nodes
      .filter((node) => node.index !== coordinator && node.alive && this.sim.network.isUp(coordinator, node.index))
      .map((node) => node.index)
      .sort(() => this.sim.random() - 0.5)
    const participants = [coordinator, ...others].slice(0, required)
    if (participants.length < required) {
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_UNAVAILABLE' })
      return
    }
    const space: Space = op.type === 'get' ? 'kv' : op.type === 'cget' ? 'counter' : 'set'
    const key = op.type === 'get' ? op.key : op.name
    let joined: { state: AnyState; vc: VectorClock } | null = null
    try {
      for (const index of participants) {
        const snapshot = await this.sim.cluster.node(index).store.snapshot()
        try {
          const state = await snapshot.getState(space, key)
          joined =
            joined === null
              ? { state, vc: snapshot.vc }
              : {
                  state: joinState<Space>(space, joined.state, joined.vc, state, snapshot.vc),
                  vc: vcJoin(joined.vc, snapshot.vc),
                }
        } finally {
          await snapshot.close()
        }
      }
    } catch (error) {
      if (!isMeshError(error, 'MESHKV_ERR_CLOSED')) this.sim.internal(`a read failed unexpectedly: ${String(error)}`)
      this.finish(flight, 'fail', { code: 'MESHKV_ERR_CONNECTION_RESET' })
      return
    }
    if (flight.done || joined === null) return
    const client = flight.client
    client.token = vcJoin(client.token, joined.vc)
    const fields: Omit<CompletionEvent, 'kind' | 'id' | 'atMs'> = {
      vc: { ...joined.vc },
      token: encodeCausalToken(joined.vc),
    }
    if (op.type === 'get') {
      const state = joined.state as RegisterState
      const winner = lwwSibling(state)
      fields.result = winner === undefined || winner.value === null ? null : dec(winner.value)
      fields.siblingDots = state.siblings.map((sibling) => dotString(sibling.dot))
      fields.siblings = state.siblings.flatMap((sibling) => (sibling.value === null ? [] : [dec(sibling.value)]))
      client.lastRead.set(
        op.key,
        state.siblings.map((sibling) => sibling.dot),
      )
    } else if (op.type === 'cget') {
      fields.result = counterValue(joined.state as never)
    } else {
      fields.result = setMembers(joined.state as SetState).sort()
    }
    this.finish(flight, 'ok', fields)
  }
}
