/**
 * Real clusters for the cluster tests: N `node bin/meshkv.js node` processes on free loopback
 * ports, data directories under os.tmpdir(), and a TCP proxy (tcp-proxy.ts) per ordered pair of
 * nodes, so a test can cut replication links while every node keeps serving clients.
 *
 * Wiring of node i (1-based):
 * - HTTP on 127.0.0.1:<port> (the tests' clients talk to it directly, never through a proxy);
 * - `--peers` lists, for every other node j, the proxy i→j (forwarding to j's port), so the link
 *   i dials to j goes through that proxy;
 * - `--advertise-url` is i's own entry proxy (forwarding to i's port): the URL i tells its peers.
 *   No node dials it today (nodes keep only the URLs they are given), and `isolate(i)` pauses it
 *   too, so a node that learned it could not slip past a cut either.
 * A meshkv link between i and j runs over proxy i→j or j→i (whichever side dialed it), so
 * `cut(i, j)` pauses both.
 *
 * Every child is tracked; `stopAllClusters()` (afterAll) kills whatever a test left running and
 * removes the data directories.
 */
import { afterAll, beforeAll } from 'vitest'
import type { ClientPeerStatus } from '../../src/client/index.js'
import { randomBytes } from 'node:crypto'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildIfStale as buildBinariesIfStale, killAll as killKvctlChildren } from '../cli/helpers.js'
import { waitFor } from '../support/poll.js'
import { freePort } from '../support/ports.js'
import type { Exit, NodeArgs, Proc } from '../support/processes.js'
import { MESHKV_BIN, allLinked, nodeArgs, spawnNode, stopAllProcesses } from '../support/processes.js'
import { TcpProxy } from '../support/tcp-proxy.js'

export { buildIfStale, kvctl, killAll as killAllKvctl } from '../cli/helpers.js'
export { sleep, waitFor } from '../support/poll.js'
export type { Exit } from '../support/processes.js'

/** Every HTTP request of a helper is bounded: a stopped (SIGSTOP) node must not hang a test. */
const REQUEST_MS = 3_000
const READY_MS = 20_000

const clusters = new Set<Cluster>()

export interface HttpAnswer {
  status: number
  headers: Headers
  text: string
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: Record<string, unknown> | undefined
}

/** One bounded HTTP request to a node; the whole body read. */
export async function request(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<HttpAnswer> {
  const { timeoutMs, ...rest } = init
  const response = await fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMs ?? REQUEST_MS) })
  const text = await response.text()
  let json: Record<string, unknown> | undefined
  try {
    const parsed: unknown = JSON.parse(text)
    json = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined
  } catch {
    json = undefined
  }
  return { status: response.status, headers: response.headers, text, json }
}

export interface ClusterOptions {
  /** Nodes in the cluster (default 3). */
  size?: number
  /** The cluster secret (default: random). */
  secret?: string
  /** Secrets that differ from the cluster's, by node number (1-based). */
  secrets?: Record<number, string>
  /** `--peer-timeout-ms` (default 2000). */
  peerTimeoutMs?: number
  /** `--log-level` (default warn: refusals and link failures, no per-request lines). */
  logLevel?: string
  /** Wait until every node is ready (default true). */
  waitReady?: boolean
  /** More `meshkv node` flags for every node (e.g. `--log-retain 20`). */
  args?: readonly string[]
}

/** One meshkv process of a cluster, across restarts (same port, same data directory). */
export class ClusterNode {
  /** Everything the node wrote to stdout (NDJSON), over every run. */
  readonly logLines: string[] = []
  #proc: Proc | undefined
  #runs = 0

  constructor(
    readonly n: number,
    readonly port: number,
    readonly dir: string,
    readonly entry: TcpProxy,
    private readonly argsOf: (secret?: string) => NodeArgs,
  ) {}

  /** The node's own HTTP URL (what clients use). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get running(): boolean {
    return this.#proc?.running === true
  }

  get pid(): number | undefined {
    return this.running ? this.#proc?.pid : undefined
  }

  /** What the current (or last) process wrote to stderr. */
  get stderr(): string {
    return this.#proc?.stderr ?? ''
  }

  /** How many times the process has been started. */
  get runs(): number {
    return this.#runs
  }

  /** Log records (parsed stdout lines) that pass `test`. */
  logs(test: (record: Record<string, unknown>) => boolean = () => true): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = []
    for (const line of this.logLines) {
      try {
        const record = JSON.parse(line) as Record<string, unknown>
        if (test(record)) out.push(record)
      } catch {
        // Not a JSON line.
      }
    }
    return out
  }

  /** Starts the process (the first time, or again after it ended); `secret` overrides the cluster's. */
  spawn(options: { secret?: string } = {}): void {
    if (this.running) throw new Error(`node ${this.n} is already running`)
    const proc = spawnNode(`meshkv node ${this.n}`, [MESHKV_BIN, ...nodeArgs(this.argsOf(options.secret))])
    this.#runs++
    this.#proc = proc
    proc.onLine((line) => this.logLines.push(line))
  }

  /** Resolves once the current process has ended (at once when none runs). */
  async exited(): Promise<Exit | undefined> {
    return this.running ? this.#proc?.exited : undefined
  }

  /** Polls `/readyz` until it answers 200; fails early when the process ends first. */
  async waitReady(ms = READY_MS): Promise<void> {
    const proc = this.#proc
    if (proc === undefined || !proc.running) throw new Error(`node ${this.n} is not running`)
    let ended = false
    void proc.exited.then(() => (ended = true))
    await waitFor(
      `node ${this.n} (${this.url}) to be ready; stderr: ${this.stderr}`,
      ms,
      async () => {
        if (ended) throw new Error(`node ${this.n} ended before it was ready; stderr:\n${this.stderr}`)
        try {
          const answer = await request(`${this.url}/readyz`, { timeoutMs: 1000 })
          return answer.status === 200 ? true : undefined
        } catch (error) {
          if (ended) throw error
          return undefined
        }
      },
      50,
    )
  }

  /** Sends `signal` and waits for the process to end (SIGKILL, SIGTERM). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit> {
    const proc = this.#proc
    if (proc === undefined || !proc.running) throw new Error(`node ${this.n} is not running`)
    proc.child.kill(signal)
    return proc.exited
  }

  /** SIGSTOP: the process freezes (its sockets stay open, nothing answers). */
  suspend(): void {
    if (this.running) this.#proc?.child.kill('SIGSTOP')
  }

  /** SIGCONT after `suspend`. */
  continue(): void {
    if (this.running) this.#proc?.child.kill('SIGCONT')
  }

  async status(): Promise<NodeStatusJson> {
    const answer = await request(`${this.url}/v1/status`)
    if (answer.status !== 200 || answer.json === undefined)
      throw new Error(`node ${this.n} /v1/status answered ${answer.status}: ${answer.text}`)
    return answer.json as unknown as NodeStatusJson
  }

  async digest(): Promise<DigestJson> {
    const answer = await request(`${this.url}/v1/digest`)
    if (answer.status !== 200 || answer.json === undefined)
      throw new Error(`node ${this.n} /v1/digest answered ${answer.status}: ${answer.text}`)
    return answer.json as unknown as DigestJson
  }
}

/** A peer as /v1/status lists it (the client's type of the same JSON). */
export type PeerJson = ClientPeerStatus

export interface NodeStatusJson {
  nodeId: string
  ready: boolean
  vc: Record<string, number>
  members: number
  linked: string[]
  peers: PeerJson[]
  [field: string]: unknown
}

export interface DigestJson {
  digest: string
  vc: Record<string, number>
  keys: number
}

export class Cluster {
  readonly nodes: ClusterNode[]
  readonly secret: string
  readonly root: string
  /** `from>to` → the proxy `from` dials `to` through. */
  readonly #proxies: Map<string, TcpProxy>
  #closed = false

  private constructor(root: string, secret: string, nodes: ClusterNode[], proxies: Map<string, TcpProxy>) {
    this.root = root
    this.secret = secret
    this.nodes = nodes
    this.#proxies = proxies
  }

  /**
   * Starts `size` nodes (each with its proxies) and, unless told otherwise, waits until all are
   * ready. A port picked free can be taken by another test process before a node binds it: then
   * the whole cluster starts again on fresh ports (at most three times).
   */
  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await Cluster.#startOnce(options)
      } catch (error) {
        if (attempt >= 3 || !String(error).includes('already in use')) throw error
      }
    }
  }

  static async #startOnce(options: ClusterOptions): Promise<Cluster> {
    const size = options.size ?? 3
    const secret = options.secret ?? randomBytes(16).toString('hex')
    const root = await mkdtemp(join(tmpdir(), 'meshkv-cluster-'))
    const ports: number[] = []
    for (let i = 0; i < size; i++) ports.push(await freePort())
    const proxies = new Map<string, TcpProxy>()
    const entries: TcpProxy[] = []
    for (let i = 1; i <= size; i++) {
      entries.push(await TcpProxy.start(ports[i - 1] as number))
      for (let j = 1; j <= size; j++)
        if (i !== j) proxies.set(`${i}>${j}`, await TcpProxy.start(ports[j - 1] as number))
    }
    const nodes: ClusterNode[] = []
    for (let i = 1; i <= size; i++) {
      const dir = join(root, `node${i}`)
      const port = ports[i - 1] as number
      const entry = entries[i - 1] as TcpProxy
      const peers = [...proxies.entries()].filter(([pair]) => pair.startsWith(`${i}>`)).map(([, proxy]) => proxy.url)
      const argsOf = (override?: string): NodeArgs => ({
        dir,
        port,
        peers,
        secret: override ?? options.secrets?.[i] ?? secret,
        advertiseUrl: entry.url,
        peerTimeoutMs: options.peerTimeoutMs ?? 2000,
        logLevel: options.logLevel,
        extra: options.args,
      })
      nodes.push(new ClusterNode(i, port, dir, entry, argsOf))
    }
    const cluster = new Cluster(root, secret, nodes, proxies)
    clusters.add(cluster)
    for (const node of nodes) node.spawn()
    try {
      if (options.waitReady !== false) await Promise.all(nodes.map((node) => node.waitReady()))
    } catch (error) {
      await cluster.close().catch(() => undefined)
      throw error
    }
    return cluster
  }

  /**
   * Starts one more node that knows only `peers` (URLs, e.g. another node's `entry.url`): how a
   * new member joins a running cluster. It gets its own port, data directory and entry proxy.
   */
  async addNode(options: { peers: string[]; args?: string[]; waitReady?: boolean }): Promise<ClusterNode> {
    const n = this.nodes.length + 1
    const port = await freePort()
    const entry = await TcpProxy.start(port)
    const dir = join(this.root, `node${n}`)
    const argsOf = (override?: string): NodeArgs => ({
      dir,
      port,
      peers: options.peers,
      secret: override ?? this.secret,
      advertiseUrl: entry.url,
      peerTimeoutMs: 2000,
      logLevel: 'info',
      extra: options.args,
    })
    const node = new ClusterNode(n, port, dir, entry, argsOf)
    this.nodes.push(node)
    node.spawn()
    if (options.waitReady !== false) await node.waitReady()
    return node
  }

  /**
   * Copies the data directory of node `n` (stopped) to a new node, as an operator cloning a
   * machine would: same node id, same secret, its own port and entry proxy, and the peers of `n`
   * unless `peers` says otherwise. The copy is not started. `frozen`: the node runs but its caller
   * froze it (SIGSTOP), which is as good as stopped for a copy of its directory.
   */
  async cloneNode(n: number, options: { peers?: string[]; frozen?: boolean } = {}): Promise<ClusterNode> {
    const original = this.node(n)
    if (original.running && options.frozen !== true)
      throw new Error(`node ${n} must be stopped (or frozen) before its directory is copied`)
    const k = this.nodes.length + 1
    const port = await freePort()
    const entry = await TcpProxy.start(port)
    const dir = join(this.root, `node${k}-clone-of-${n}`)
    await cp(original.dir, dir, { recursive: true })
    const peers =
      options.peers ?? [...this.#proxies.entries()].filter(([pair]) => pair.startsWith(`${n}>`)).map(([, p]) => p.url)
    const argsOf = (override?: string): NodeArgs => ({
      dir,
      port,
      peers,
      secret: override ?? this.secret,
      advertiseUrl: entry.url,
      peerTimeoutMs: 2000,
    })
    const clone = new ClusterNode(k, port, dir, entry, argsOf)
    this.nodes.push(clone)
    return clone
  }

  /** Node `n`, 1-based as the tests name them. */
  node(n: number): ClusterNode {
    const node = this.nodes[n - 1]
    if (node === undefined) throw new Error(`no node ${n}`)
    return node
  }

  urls(...ns: number[]): string[] {
    return (ns.length === 0 ? this.nodes : ns.map((n) => this.node(n))).map((node) => node.url)
  }

  /** The proxy node `from` dials node `to` through. */
  proxy(from: number, to: number): TcpProxy {
    const proxy = this.#proxies.get(`${from}>${to}`)
    if (proxy === undefined) throw new Error(`no proxy ${from}>${to}`)
    return proxy
  }

  /** Cuts the link between nodes `a` and `b` (both directions). */
  cut(a: number, b: number): void {
    this.proxy(a, b).pause()
    this.proxy(b, a).pause()
  }

  /**
   * Cuts every link of node `n`; it keeps serving its clients. A node added by `addNode` has no
   * proxy per pair: its links to `n` are cut only where it dialed `n` (through `n`'s entry), and
   * `n` may still dial it.
   */
  isolate(n: number): void {
    for (const other of this.nodes) if (other.n !== n && this.#proxies.has(`${n}>${other.n}`)) this.cut(n, other.n)
    this.node(n).entry.pause()
  }

  /** Cuts every link: each node alone. */
  isolateAll(): void {
    for (const node of this.nodes) this.isolate(node.n)
  }

  /** Resumes every proxy. */
  heal(): void {
    for (const proxy of this.#proxies.values()) proxy.resume()
    for (const node of this.nodes) node.entry.resume()
  }

  /** Starts node `n` again on its directory and port, and waits until it is ready. */
  async restart(n: number, options: { secret?: string; waitReady?: boolean } = {}): Promise<void> {
    const node = this.node(n)
    node.spawn(options.secret === undefined ? {} : { secret: options.secret })
    if (options.waitReady !== false) await node.waitReady()
  }

  /** The running nodes. */
  live(): ClusterNode[] {
    return this.nodes.filter((node) => node.running)
  }

  /**
   * Waits until each of `ns` (default: every running node) has a live link to each other one of
   * them, as its `/v1/status` says (`linked`).
   */
  async waitLinked(ns: number[] = this.live().map((node) => node.n), ms = 15_000): Promise<void> {
    const members = ns.map((n) => this.node(n))
    await waitFor(`links between nodes ${ns.join(', ')}`, ms, async () => {
      const statuses = await Promise.all(members.map((node) => node.status()))
      return allLinked(statuses) ? true : undefined
    })
  }

  /**
   * Polls `/v1/digest` of `ns` (default: every running node) until all are equal; resolves with
   * the digest and how long it took.
   */
  async waitConverged(
    ns: number[] = this.live().map((node) => node.n),
    ms = 30_000,
  ): Promise<{ digest: DigestJson; ms: number }> {
    const started = Date.now()
    let last: string[] = []
    try {
      const digest = await waitFor(`equal digests on nodes ${ns.join(', ')}`, ms, async () => {
        const digests = await Promise.all(ns.map((n) => this.node(n).digest()))
        last = digests.map(
          (digest, index) => `node ${ns[index]}: ${digest.digest} keys=${digest.keys} vc=${JSON.stringify(digest.vc)}`,
        )
        const first = digests[0] as DigestJson
        // Equal clocks too: a node that has not yet received writes whose keys are all deleted
        // elsewhere hashes the same (all-tombstone keys are not hashed) while it still lacks them.
        const clock = (digest: DigestJson): string => JSON.stringify(Object.entries(digest.vc).sort())
        return digests.every((digest) => digest.digest === first.digest && clock(digest) === clock(first))
          ? first
          : undefined
      })
      return { digest, ms: Date.now() - started }
    } catch (error) {
      throw new Error(`${(error as Error).message}\n  ${last.join('\n  ')}`)
    }
  }

  /** Kills every node, closes the proxies, removes the data directories. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clusters.delete(this)
    await Promise.all(
      this.nodes.map(async (node) => {
        if (!node.running) return
        node.continue()
        await node.kill('SIGKILL')
      }),
    )
    await Promise.all(
      [...this.#proxies.values(), ...this.nodes.map((node) => node.entry)].map((proxy) => proxy.close()),
    )
    await rm(this.root, { recursive: true, force: true })
  }
}

/** For afterAll: closes every cluster still open and kills any stray child. */
export async function stopAllClusters(): Promise<void> {
  await Promise.all([...clusters].map((cluster) => cluster.close()))
  await stopAllProcesses()
}

function kvUrl(node: string, key: string, query: Record<string, string>): string {
  const search = new URLSearchParams(query).toString()
  return `${node}/v1/kv/${encodeURIComponent(key)}${search === '' ? '' : `?${search}`}`
}

/** A key's value as written by the tests: PUT with `?w=` and friends. */
export async function put(
  node: string,
  key: string,
  value: string,
  query: Record<string, string> = {},
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  return request(kvUrl(node, key, query), {
    method: 'PUT',
    headers: { 'content-type': 'text/plain', ...headers },
    body: value,
    timeoutMs: 15_000,
  })
}

export async function get(
  node: string,
  key: string,
  query: Record<string, string> = {},
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  return request(kvUrl(node, key, query), {
    headers,
    timeoutMs: 15_000,
  })
}

/** Waits until `key` reads `value` on `node`. */
export async function waitValue(node: string, key: string, value: string, ms = 10_000): Promise<void> {
  await waitFor(`${key}=${value} on ${node}`, ms, async () => {
    const answer = await get(node, key)
    return answer.status === 200 && answer.text === value ? true : undefined
  })
}

/** Every key under `prefix` on `node`, following pages. */
export async function listKeys(node: string, prefix: string): Promise<Set<string>> {
  const keys = new Set<string>()
  let cursor: string | null = null
  for (;;) {
    const query = new URLSearchParams({ prefix, limit: '1000' })
    if (cursor !== null) query.set('cursor', cursor)
    const answer = await request(`${node}/v1/kv?${query.toString()}`, { timeoutMs: 15_000 })
    if (answer.status !== 200 || answer.json === undefined)
      throw new Error(`list on ${node} answered ${answer.status}: ${answer.text}`)
    const items = answer.json['items'] as { key: string }[]
    for (const item of items) keys.add(item.key)
    cursor = answer.json['next'] as string | null
    if (cursor === null || items.length === 0) return keys
  }
}

/**
 * The set-up most cluster test files share: build if stale, start `size` real nodes, wait until
 * they are linked; at the end stop any kvctl children and every cluster. `started` receives the
 * cluster (files keep it in a variable of their own).
 */
export function useLinkedCluster(started: (cluster: Cluster) => void, size = 3): void {
  beforeAll(async () => {
    buildBinariesIfStale()
    const cluster = await Cluster.start({ size })
    await cluster.waitLinked()
    started(cluster)
  }, 60_000)
  afterAll(async () => {
    await killKvctlChildren()
    await stopAllClusters()
  })
}
