/**
 * Real `meshkv node` processes (bin/meshkv.js, built from src/cli) on free loopback ports with
 * their data under a temp directory and a random cluster secret, as test/cluster/helpers.ts does.
 * With `proxies: true`, node i dials node j through a TcpProxy (i→j, test/support/tcp-proxy.ts), and advertises its own
 * entry proxy, so every byte of every peer link is counted.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { getJson, request } from './http.js'
import { TcpProxy } from '../../test/support/tcp-proxy.js'
import { allLinked, nodeArgs } from '../../test/support/processes.js'
import type { Exit, Proc } from './procs.js'
import { MESHKV_BIN, freePort, nowMs, removeDir, spawnNode, tempDir, waitFor } from './procs.js'

export interface ClusterSpec {
  size: number
  /** Peer links (default true); false starts standalone nodes. */
  linked?: boolean
  proxies?: boolean
  /** Default warn: no per-request log lines (the default `info` logs every request). */
  logLevel?: string
  sync?: boolean
  label?: string
  /** Added to each node's environment (e.g. `MESHKV_TRACE_STAGES: '1'`). */
  env?: Record<string, string>
}

export type VectorClock = Record<string, number>

export interface StatusJson {
  nodeId: string
  ready: boolean
  vc: VectorClock
  lsn: number
  linked: string[]
  peers: { nodeId: string | null; state: string; lagChanges: number; lagMs: number }[]
  replication: Record<string, number>
  snapshot?: unknown
  [field: string]: unknown
}

export interface DigestJson {
  digest: string
  vc: VectorClock
  keys: number
}

export class MeshkvNode {
  proc: Proc | undefined
  /** When the current process was spawned (performance.now()). */
  spawnedAtMs = 0

  constructor(
    readonly n: number,
    readonly port: number,
    readonly dir: string,
    readonly args: () => string[],
    readonly env: Record<string, string> = {},
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get running(): boolean {
    return this.proc?.running === true
  }

  get pid(): number {
    return this.proc?.pid ?? -1
  }

  start(nodeOptions: string[] = []): void {
    if (this.running) throw new Error(`node ${this.n} is already running`)
    this.spawnedAtMs = nowMs()
    // MESHKV_BENCH_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=DIR" profiles every node a case starts
    // (Node refuses --cpu-prof in NODE_OPTIONS); bench/tools/cpuprofile-top.ts reads the files.
    const profiling = process.env['MESHKV_BENCH_NODE_OPTIONS']?.split(' ').filter(Boolean) ?? []
    const options = [...profiling, ...nodeOptions]
    this.proc = spawnNode(`meshkv node ${this.n}`, [MESHKV_BIN, ...this.args()], options, this.env)
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit | undefined> {
    const proc = this.proc
    if (proc === undefined || !proc.running) return undefined
    return proc.stop(signal)
  }

  /** Resolves with the time (performance.now()) the node first answered /livez. */
  async waitListening(ms = 30_000): Promise<number> {
    return waitFor(
      `node ${this.n} to listen`,
      ms,
      async () => {
        this.#checkAlive()
        await getJson(`${this.url}/livez`, 1000)
        return nowMs()
      },
      10,
    )
  }

  async waitReady(ms = 60_000): Promise<void> {
    await waitFor(
      `node ${this.n} to be ready`,
      ms,
      async () => {
        this.#checkAlive()
        await getJson(`${this.url}/readyz`, 1000)
        return true
      },
      25,
    )
  }

  status(): Promise<StatusJson> {
    return getJson<StatusJson>(`${this.url}/v1/status`)
  }

  digest(timeoutMs = 120_000): Promise<DigestJson> {
    return getJson<DigestJson>(`${this.url}/v1/digest`, timeoutMs)
  }

  /** The CPU seconds the process has spent (prom-client's `process_cpu_seconds_total` on /metrics). */
  async cpuSeconds(): Promise<number> {
    const answer = await request(`${this.url}/metrics`)
    const match = /^process_cpu_seconds_total (\S+)$/m.exec(answer.body.toString())
    if (answer.status !== 200 || match === null) throw new Error(`node ${this.n}: no process_cpu_seconds_total`)
    return Number(match[1])
  }

  #checkAlive(): void {
    if (!this.running) throw new Error(`node ${this.n} is not running; stderr:\n${this.proc?.stderr ?? ''}`)
  }
}

export class MeshkvCluster {
  readonly nodes: MeshkvNode[] = []
  readonly proxies: TcpProxy[] = []
  /** `i>j` (1-based) → the proxy node i dials node j through (with `proxies: true`). */
  readonly pairProxies = new Map<string, TcpProxy>()
  readonly secret = randomBytes(16).toString('hex')
  #closed = false

  private constructor(
    readonly root: string,
    readonly spec: ClusterSpec,
  ) {}

  /** Starts `spec.size` nodes and waits until every one is ready (and, when linked, linked). */
  static async start(spec: ClusterSpec): Promise<MeshkvCluster> {
    const cluster = new MeshkvCluster(await tempDir(spec.label ?? 'cluster'), spec)
    try {
      const ports: number[] = []
      for (let i = 0; i < spec.size; i++) ports.push(await freePort())
      const linked = spec.linked !== false
      const entries: (TcpProxy | undefined)[] = []
      const dialUrls = new Map<string, string>()
      for (let i = 0; i < spec.size; i++) {
        const entry = spec.proxies === true ? await TcpProxy.start(ports[i] as number) : undefined
        if (entry !== undefined) cluster.proxies.push(entry)
        entries.push(entry)
        for (let j = 0; j < spec.size; j++) {
          if (i === j) continue
          if (spec.proxies === true) {
            const proxy = await TcpProxy.start(ports[j] as number)
            cluster.proxies.push(proxy)
            cluster.pairProxies.set(`${i + 1}>${j + 1}`, proxy)
            dialUrls.set(`${i}>${j}`, proxy.url)
          } else {
            dialUrls.set(`${i}>${j}`, `http://127.0.0.1:${ports[j]}`)
          }
        }
      }
      for (let i = 0; i < spec.size; i++) {
        const peers = linked
          ? ports.map((_, j) => dialUrls.get(`${i}>${j}`)).filter((url): url is string => url !== undefined)
          : []
        cluster.#add(ports[i] as number, peers, entries[i]?.url)
      }
      for (const node of cluster.nodes) node.start()
      await Promise.all(cluster.nodes.map((node) => node.waitReady()))
      if (linked && spec.size > 1) await cluster.waitLinked()
      return cluster
    } catch (error) {
      await cluster.close()
      throw error
    }
  }

  /** A new node (not started) whose peers are the given nodes (default: all), dialed directly. */
  async addNode(peers: MeshkvNode[] = [...this.nodes]): Promise<MeshkvNode> {
    const port = await freePort()
    return this.#add(
      port,
      peers.map((node) => node.url),
      undefined,
    )
  }

  node(n: number): MeshkvNode {
    const node = this.nodes[n - 1]
    if (node === undefined) throw new Error(`no node ${n}`)
    return node
  }

  running(): MeshkvNode[] {
    return this.nodes.filter((node) => node.running)
  }

  async waitLinked(nodes: MeshkvNode[] = this.running(), ms = 30_000): Promise<void> {
    await waitFor(
      'peer links',
      ms,
      async () => {
        const statuses = await Promise.all(nodes.map((node) => node.status()))
        return allLinked(statuses) ? true : undefined
      },
      50,
    )
  }

  /** Vector clocks of `nodes`, equal when they hold the same changes. */
  async vcs(nodes: MeshkvNode[] = this.running()): Promise<VectorClock[]> {
    return Promise.all(nodes.map(async (node) => (await node.status()).vc))
  }

  /**
   * Polls the nodes' vector clocks until they are equal (every node holds every change); resolves
   * with how long that took, or throws after `ms`. Cheap: /v1/status, not a digest of the state.
   */
  async waitSameVc(nodes: MeshkvNode[] = this.running(), ms = 60_000, everyMs = 20): Promise<number> {
    const started = nowMs()
    await waitFor('equal vector clocks', ms, async () => (sameVcs(await this.vcs(nodes)) ? true : undefined), everyMs)
    return nowMs() - started
  }

  /** Digests of `nodes`; throws unless all equal. */
  async checkDigests(nodes: MeshkvNode[] = this.running()): Promise<DigestJson> {
    const digests = await Promise.all(nodes.map((node) => node.digest()))
    const first = digests[0] as DigestJson
    if (!digests.every((digest) => digest.digest === first.digest)) {
      throw new Error(
        `digests differ: ${digests.map((digest) => `${digest.digest.slice(0, 12)} keys=${digest.keys}`).join(', ')}`,
      )
    }
    return first
  }

  /**
   * Digest checks of `nodes` until all are equal (right after their clocks matched, they should
   * be at once). Returns when: `afterMs` if the first check agreed, else when the agreeing check
   * began; and how many checks it took. Throws after `ms`.
   */
  async waitSameDigest(
    nodes: MeshkvNode[],
    afterMs: number,
    ms = 120_000,
  ): Promise<{ at: number; checks: number; digest: DigestJson }> {
    let at = afterMs
    for (let checks = 1; ; checks++) {
      const started = nowMs()
      const digests = await Promise.all(nodes.map((node) => node.digest()))
      const first = digests[0] as DigestJson
      if (digests.every((digest) => digest.digest === first.digest)) return { at, checks, digest: first }
      if (started - afterMs > ms)
        throw new Error(
          `digests still differ ${ms} ms after the vector clocks matched: ${digests.map((digest) => `${digest.digest.slice(0, 12)} keys=${digest.keys}`).join(', ')}`,
        )
      await new Promise((resolve) => setTimeout(resolve, 100))
      at = nowMs()
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all(this.nodes.map((node) => node.stop('SIGKILL').catch(() => undefined)))
    await Promise.all(this.proxies.map((proxy) => proxy.close().catch(() => undefined)))
    await removeDir(this.root)
  }

  #add(port: number, peers: string[], advertiseUrl: string | undefined): MeshkvNode {
    const n = this.nodes.length + 1
    const dir = join(this.root, `node${n}`)
    const spec = this.spec
    const args = (): string[] =>
      nodeArgs({
        dir,
        port,
        peers,
        secret: peers.length > 0 ? this.secret : undefined,
        advertiseUrl,
        logLevel: spec.logLevel,
        sync: spec.sync,
      })
    const node = new MeshkvNode(n, port, dir, args, spec.env)
    this.nodes.push(node)
    return node
  }
}

export function sameVcs(vcs: VectorClock[]): boolean {
  const norm = vcs.map(normalizeVc)
  return norm.every((vc) => vc === norm[0])
}

export function normalizeVc(vc: VectorClock): string {
  return JSON.stringify(
    Object.entries(vc)
      .filter(([, seq]) => seq > 0)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  )
}

/** True when `a` has seen everything `b` has. */
export function vcCovers(a: VectorClock, b: VectorClock): boolean {
  return Object.entries(b).every(([node, seq]) => (a[node] ?? 0) >= seq)
}
