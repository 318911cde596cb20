/**
 * The in-memory transport, run by the transport conformance suite. Transports register on a
 * `MemoryNetwork` under their `advertiseUrl`; a dial opens a link of memory-link.ts between two
 * of them, and the same handshake and frame checks as on real sockets run over it (every frame is
 * encoded and decoded by each connection's `LinkCodec`, as on a socket).
 *
 * The network's `LinkScheduler` owns order: each direction of a link is FIFO, and the scheduler
 * decides when (and whether) the next frame arrives; the default delivers each on a microtask.
 * Timers (handshake deadline, redial backoff) come from `setTimer`, so a simulator can drive them
 * from its own clock. `partition(a, b)` closes every link between two URLs at once and refuses
 * new ones until `heal(a, b)`; kept URLs redial through their backoff.
 *
 * What this transport does not model: heartbeats (a link ends when it is closed or cut, not by
 * silence, so an open link counts as heard just now: a process that stopped has no open link, and
 * a newcomer with a live peer's id is refused as on sockets) and send queues (a connection's frame joins the link's queue at once). The replication
 * simulator (test/sim) uses the same links without this transport: it hands their ends straight
 * to replicators and admits them by this transport's rule (`keepsNewLink`).
 */
import type { NodeId } from '../clock/index.js'
import { MeshError } from '../errors.js'
import type { Connection, SetTimer } from './connection.js'
import type { CoreTransportOptions } from './core.js'
import { TransportCore } from './core.js'
import type { LinkEnd } from './memory-link.js'
import { LinkScheduler } from './memory-link.js'

export interface MemoryNetworkOptions {
  /**
   * The scheduler that carries every frame. Default: one that delivers each frame on a microtask,
   * in order. A simulator passes its own and decides when each frame arrives (`onQueued`,
   * `deliverFrom`, `run`), or never (a frame left in its outbox is lost).
   */
  scheduler?: LinkScheduler
  /** Timers for handshake deadlines and redial backoff. Default: `setTimeout`. */
  setTimer?: SetTimer
}

const defaultSetTimer: SetTimer = (callback, ms) => {
  const timer = setTimeout(callback, ms)
  return () => clearTimeout(timer)
}

/** A scheduler that delivers each frame on the next microtask, in order. */
function microtaskScheduler(): LinkScheduler {
  // It never chooses between links (each frame is delivered from its own end), so needs no randomness.
  const scheduler: LinkScheduler = new LinkScheduler(() => 0, {
    onQueued: (end) => queueMicrotask(() => scheduler.deliverFrom(end)),
  })
  return scheduler
}

function pairKey(a: string, b: string): string {
  return a < b ? JSON.stringify([a, b]) : JSON.stringify([b, a])
}

/**
 * The ends of a pipe learn node ids only in the handshake that runs over them, so they carry
 * none: they are named by address (`url`, and `other.url` for their own).
 */
const NO_NODE = '' as NodeId

/** The hub in-memory transports meet on. */
export class MemoryNetwork {
  readonly setTimer: SetTimer
  readonly scheduler: LinkScheduler
  private readonly transports = new Map<string, MemoryTransport>()
  private readonly aliases = new Map<string, string>()
  private readonly cuts = new Set<string>()

  constructor(options: MemoryNetworkOptions = {}) {
    this.scheduler = options.scheduler ?? microtaskScheduler()
    this.setTimer = options.setTimer ?? defaultSetTimer
  }

  /** Cuts every link between `a` and `b` and refuses new ones until `heal(a, b)`. */
  partition(a: string, b: string): void {
    this.cuts.add(pairKey(a, b))
    for (const pair of [...this.scheduler.pairs]) {
      const [x, y] = [pair.acceptor.url, pair.dialer.url]
      if ((x === a && y === b) || (x === b && y === a)) pair.cut()
    }
  }

  heal(a: string, b: string): void {
    this.cuts.delete(pairKey(a, b))
  }

  isPartitioned(a: string, b: string): boolean {
    return this.cuts.has(pairKey(a, b))
  }

  /** Makes `alias` reach whatever is registered at `url` (another spelling of one address). */
  alias(alias: string, url: string): void {
    this.aliases.set(alias, url)
  }

  /** @internal */
  register(address: string, transport: MemoryTransport): void {
    const current = this.transports.get(address)
    if (current !== undefined && current !== transport) {
      throw new MeshError('MESHKV_ERR_CONFIG', `memory network: ${address} is taken by a running transport`)
    }
    this.transports.set(address, transport)
  }

  /** @internal */
  unregister(address: string, transport: MemoryTransport): void {
    if (this.transports.get(address) === transport) this.transports.delete(address)
  }

  /** @internal Opens a link from `dialer` to whatever `url` names, or says why not. */
  connect(dialer: MemoryTransport, url: string, connection: Connection): void {
    const address = this.aliases.get(url) ?? url
    const target = this.transports.get(address)
    if (target === undefined || this.isPartitioned(dialer.address, address)) {
      const why = target === undefined ? 'nothing listens there' : 'partitioned'
      queueMicrotask(() => connection.fail('MESHKV_ERR_UNREACHABLE', `cannot reach ${url}: ${why}`))
      return
    }
    const pair = this.scheduler.pair({ nodeId: NO_NODE, url: dialer.address }, { nodeId: NO_NODE, url: address })
    pair.dialer.connection = connection
    connection.attach(pair.dialer)
    target.accept(pair.acceptor)
  }
}

let anonymous = 0

export class MemoryTransport extends TransportCore {
  /** Where this transport is registered (its advertiseUrl, or a made-up name when it has none). */
  readonly address: string

  constructor(
    private readonly network: MemoryNetwork,
    options: CoreTransportOptions,
  ) {
    super(options, network.setTimer)
    anonymous += 1
    this.address = options.advertiseUrl ?? `memory-anonymous:${anonymous}`
    network.register(this.address, this)
  }

  override async close(): Promise<void> {
    this.network.unregister(this.address, this)
    await super.close()
  }

  /** @internal The network hands over the acceptor's end of a new link. */
  accept(end: LinkEnd): void {
    const connection = this.startConnection('acceptor', null)
    end.connection = connection
    connection.attach(end)
  }

  protected normalizeUrl(url: string): string {
    return url
  }

  protected override heardAtOf(connection: Connection): number {
    return connection.closed ? connection.heardAt : this.now()
  }

  protected openChannel(key: string, connection: Connection): void {
    this.network.connect(this, key, connection)
  }

  protected channelsEnded(): Promise<void> {
    return Promise.resolve()
  }
}
