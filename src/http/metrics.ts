/**
 * Prometheus metrics, one `Registry` per app (never prom-client's global one, so two apps in one
 * process, or one per test, never collide): HTTP requests, the bounded resources, and the
 * cluster's (cluster-metrics.ts); docs/operations.md lists them all. Labels are the route pattern
 * (`/v1/kv/*`), never a key or a name, so the number of series stays bounded whatever clients ask for.
 */
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { NodeStatus } from '../node/index.js'
import type { Scrape } from './cluster-metrics.js'
import { clusterMetrics, perScrape } from './cluster-metrics.js'
import type { AppContext } from './context.js'
import { RequestMetrics } from './request-metrics.js'

/** The route label of a request that matched no route. */
const UNMATCHED_ROUTE = 'unmatched'
const DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export interface HttpMetrics {
  readonly registry: Registry
  observe(route: string, method: string, status: number, seconds: number): void
}

export function createMetrics(context: Pick<AppContext, 'node' | 'streams' | 'load' | 'authRefused'>): HttpMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const requests = new RequestMetrics(registry, DURATION_BUCKETS_SECONDS)
  const node = context.node
  const scrape: Scrape = {
    status: perScrape(() => node.status()),
    peers: perScrape(() => node.peers()),
    gc: perScrape(() => node.gcStatus()),
  }
  new Gauge({
    name: 'meshkv_lsn',
    help: 'The last log sequence number this node has committed.',
    registers: [registry],
    collect() {
      this.set(scrape.status().lsn)
    },
  })
  new Gauge({
    name: 'meshkv_http_watch_streams',
    help: 'Watch (server-sent events) streams open now.',
    registers: [registry],
    collect() {
      this.set(context.streams.size)
    },
  })
  boundMetrics(registry, context.load, scrape)
  clusterMetrics(registry, scrape, context.authRefused)
  return {
    registry,
    observe: (route, method, status, seconds) => requests.observe(route, method, status, seconds),
  }
}

/**
 * The bounded resources a client can hold (docs/architecture.md, "Limits a client meets"): what
 * is open now, and what was refused for lack of room. Read when scraped, from the counts the app
 * and the node keep.
 */
function boundMetrics(registry: Registry, load: AppContext['load'], scrape: Scrape): void {
  const parked = (): NodeStatus['parked'] => scrape.status().parked
  new Counter({
    name: 'meshkv_busy_total',
    help: 'Requests and connections refused because a bounded resource was full (503 MESHKV_ERR_BUSY, or a connection closed).',
    labelNames: ['resource'] as const,
    registers: [registry],
    collect() {
      const { reads, writes } = parked()
      const refused = { ...load.refused, reads: reads.refused, writes: writes.refused }
      this.reset()
      for (const [resource, count] of Object.entries(refused)) this.inc({ resource }, count)
    },
  })
  new Gauge({
    name: 'meshkv_http_connections',
    help: 'Client connections open now.',
    registers: [registry],
    collect() {
      this.set(load.connections)
    },
  })
  new Gauge({
    name: 'meshkv_parked',
    help: 'Reads (causal waits and quorum reads) and writes (waiting for their write concern) parked now.',
    labelNames: ['resource'] as const,
    registers: [registry],
    collect() {
      for (const [resource, { open }] of Object.entries(parked())) this.set({ resource }, open)
    },
  })
}

/** Counts every answered request and serves `GET /metrics`. Installed on the root instance. */
export function installMetrics(app: FastifyInstance, metrics: HttpMetrics): void {
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observe(
      request.routeOptions.url ?? UNMATCHED_ROUTE,
      request.method,
      reply.statusCode,
      reply.elapsedTime / 1000,
    )
    done()
  })
  app.get('/metrics', { config: { access: 'admin' } }, async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
  app.addHook('onClose', (_instance, done) => {
    metrics.registry.clear()
    done()
  })
}
