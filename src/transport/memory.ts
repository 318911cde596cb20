/**
 * The in-memory transport, run by the transport conformance suite. Transports register on a
 * `MemoryNetwork` under their `advertiseUrl`; a dial opens a pipe between two of them, and the same
 * handshake and frame checks as on real sockets run over it (every frame is encoded with
 * `encodeFrame` and decoded with `decodeFrame` on the other side).
 *
 * The network owns time and order: every frame is handed to `schedule(deliver, envelope)`, which
 * may call `deliver` later, never, twice, or out of order (the default is `queueMicrotask`, in
 * order). Timers (handshake deadline, redial backoff) come from `setTimer`, so a simulator can
 * drive them from its own clock. `partition(a, b)` closes every link between two URLs at once and
 * refuses new ones until `heal(a, b)`; kept URLs redial through their backoff.
 *
 * What this transport does not model: heartbeats (a link ends when it is closed or cut, not by
 * silence) and send queues (a frame is "sent" once handed to `schedule`; `drained()` resolves at
 * once). A simulator that wants slow links delays deliveries instead.
 *
 * The replication simulator (test/sim) does not run on it yet: it joins replicators with the
 * handshake-free links of test/helpers/link-pair.ts, and admits links by this transport's rule
 * (`keepsNewLink`).
 */
import { MeshError } from '../errors.js'
import type { Channel, Connection, SetTimer } from './connection.js'
import type { CoreTransportOptions } from './core.js'
import { TransportCore } from './core.js'

/** One frame on its way: who sent it to whom, and its encoded bytes. */
export interface MemoryEnvelope {
  readonly from: string
  readonly to: string
  readonly bytes: Uint8Array
}

export interface MemoryNetworkOptions {
  /** Hands a frame's delivery to the simulator. Default: `queueMicrotask(deliver)`. */
  schedule?: (deliver: () => void, envelope: MemoryEnvelope) => void
  /** Timers for handshake deadlines and redial backoff. Default: `setTimeout`. */
  setTimer?: SetTimer
}

const defaultSetTimer: SetTimer = (callback, ms) => {
  const timer = setTimeout(callback, ms)
  return () => clearTimeout(timer)
}

function pairKey(a: string, b: string): string {
  return a < b ? JSON.stringify([a, b]) : JSON.stringify([b, a])
}

/** Both ends of one in-memory connection. */
class Pipe {
  closed = false
  readonly ends: [PipeEnd, PipeEnd]

  constructor(
    readonly network: MemoryNetwork,
    dialer: string,
    acceptor: string,
  ) {
    const dialerEnd = new PipeEnd(this, dialer)
    const acceptorEnd = new PipeEnd(this, acceptor)
    dialerEnd.peer = acceptorEnd
    acceptorEnd.peer = dialerEnd
    this.ends = [dialerEnd, acceptorEnd]
  }

  joins(a: string, b: string): boolean {
    const [x, y] = this.ends
    return (x.address === a && y.address === b) || (x.address === b && y.address === a)
  }

  /** Cut by the network: both sides learn at once. */
  cut(code: number, reason: string): void {
    if (this.closed) return
    this.closed = true
    this.network.forgetPipe(this)
    for (const end of this.ends) end.connection?.channelEnded(code, reason)
  }
}

class PipeEnd implements Channel {
  connection: Connection | null = null
  peer: PipeEnd | null = null
  readonly bufferedBytes = 0

  constructor(
    private readonly pipe: Pipe,
    readonly address: string,
  ) {}

  write(bytes: Uint8Array, written: () => void): void {
    const peer = this.peer
    if (this.pipe.closed || peer === null) return
    const envelope: MemoryEnvelope = { from: this.address, to: peer.address, bytes: bytes.slice() }
    this.pipe.network.schedule(() => {
      if (!this.pipe.closed) peer.connection?.receive(envelope.bytes)
    }, envelope)
    written()
  }

  end(code: number, reason: string): void {
    if (this.pipe.closed) return
    this.pipe.closed = true
    this.pipe.network.forgetPipe(this.pipe)
    const peer = this.peer
    // The other side learns of the close after the current call stack, like a socket would.
    queueMicrotask(() => peer?.connection?.channelEnded(code, reason))
  }

  destroy(): void {
    this.end(1006, '')
  }
}

/** The hub in-memory transports meet on. */
export class MemoryNetwork {
  readonly setTimer: SetTimer
  private readonly scheduleHook: (deliver: () => void, envelope: MemoryEnvelope) => void
  private readonly transports = new Map<string, MemoryTransport>()
  private readonly aliases = new Map<string, string>()
  private readonly cuts = new Set<string>()
  private readonly pipes = new Set<Pipe>()

  constructor(options: MemoryNetworkOptions = {}) {
    this.scheduleHook = options.schedule ?? ((deliver) => queueMicrotask(deliver))
    this.setTimer = options.setTimer ?? defaultSetTimer
  }

  /** Cuts every link between `a` and `b` and refuses new ones until `heal(a, b)`. */
  partition(a: string, b: string): void {
    this.cuts.add(pairKey(a, b))
    for (const pipe of [...this.pipes]) if (pipe.joins(a, b)) pipe.cut(1006, 'partitioned')
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
  schedule(deliver: () => void, envelope: MemoryEnvelope): void {
    this.scheduleHook(deliver, envelope)
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

  /** @internal Opens a pipe from `dialer` to whatever `url` names, or says why not. */
  connect(dialer: MemoryTransport, url: string, connection: Connection): void {
    const address = this.aliases.get(url) ?? url
    const target = this.transports.get(address)
    if (target === undefined || this.isPartitioned(dialer.address, address)) {
      const why = target === undefined ? 'nothing listens there' : 'partitioned'
      queueMicrotask(() => connection.fail('MESHKV_ERR_UNREACHABLE', `cannot reach ${url}: ${why}`))
      return
    }
    const pipe = new Pipe(this, dialer.address, address)
    this.pipes.add(pipe)
    const [dialerEnd, acceptorEnd] = pipe.ends
    dialerEnd.connection = connection
    connection.attach(dialerEnd)
    target.accept(acceptorEnd)
  }

  /** @internal */
  forgetPipe(pipe: Pipe): void {
    this.pipes.delete(pipe)
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

  /** @internal The network hands over the acceptor's end of a new pipe. */
  accept(end: Channel & { connection: Connection | null }): void {
    const connection = this.startConnection('acceptor', null)
    end.connection = connection
    connection.attach(end)
  }

  protected normalizeUrl(url: string): string {
    return url
  }

  protected openChannel(key: string, connection: Connection): void {
    this.network.connect(this, key, connection)
  }

  protected channelsEnded(): Promise<void> {
    return Promise.resolve()
  }
}
