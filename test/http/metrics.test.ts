/**
 * `/metrics` on one real node (src/http/metrics.ts, cluster-metrics.ts): a lint over every metric
 * the app registers (Prometheus naming, no label that could carry a key, a prefix or a name, and a
 * row in docs/operations.md),
 * then the counts one node can show by itself: writes that made siblings, auth refusals by reason,
 * the seq guard's state and what garbage collection holds. The cluster's own metrics (peers, lag,
 * bytes, write-concern timeouts) are scraped from real processes in test/cluster/metrics.test.ts.
 */
import { readFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMetrics } from '../../src/http/metrics.js'
import { parseExposition } from '../support/prometheus.js'
import type { Exposition } from '../support/prometheus.js'
import { ROOT } from './access-table.js'
import type { Harness } from './helpers.js'
import { openHarness } from './helpers.js'

/** Labels whose values a client chooses: never on a metric, whatever the metric is. */
const CLIENT_LABELS = ['key', 'prefix', 'name', 'member', 'token', 'value']

let h: Harness

beforeAll(async () => {
  h = await openHarness({ app: { rootToken: ROOT } })
})

afterAll(async () => {
  await h.close()
})

async function scrape(): Promise<Exposition> {
  const response = await h.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ROOT}` } })
  expect(response.statusCode).toBe(200)
  return parseExposition(response.body)
}

describe('the metrics an app registers', () => {
  it('are named the Prometheus way, documented, and none has a label named key, prefix, name or another a client chooses', async () => {
    const registry = createMetrics({
      node: h.node,
      streams: new Map(),
      load: { connections: 0, refused: { watch: 0, connections: 0 } },
      authRefused: { missing: 0, invalid: 0, forbidden: 0 },
    }).registry
    const metrics = registry.getMetricsAsArray() as unknown as { name: string; type: string; labelNames: string[] }[]
    const own = metrics.filter((metric) => metric.name.startsWith('meshkv_'))
    // The cluster's metrics are there (a list shrinking by accident fails here).
    expect(own.length).toBeGreaterThanOrEqual(35)
    for (const metric of metrics) {
      expect(metric.name, 'a metric name').toMatch(/^[a-z][a-z0-9_]*$/)
      expect(
        metric.labelNames.filter((label) => CLIENT_LABELS.includes(label)),
        metric.name,
      ).toEqual([])
    }
    for (const metric of own) {
      // Counters end in _total and nothing else does; units are base units (seconds, bytes).
      expect(metric.name.endsWith('_total'), metric.name).toBe(metric.type === 'counter')
      expect(metric.name, metric.name).not.toMatch(/_(ms|milliseconds|kb|mib)(_|$)/)
    }
    // docs/operations.md lists every one of them.
    const doc = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8')
    expect(own.map((metric) => metric.name).filter((name) => !doc.includes(`| \`${name}\` |`))).toEqual([])
    // What a scrape shows carries the same labels only.
    const text = await registry.metrics()
    for (const sample of parseExposition(text).samples)
      expect(
        Object.keys(sample.labels).filter((label) => CLIENT_LABELS.includes(label)),
        sample.name,
      ).toEqual([])
    registry.clear()
  })
})

describe('/metrics on one node', () => {
  it('counts puts and deletes that left their key with siblings, by type, never naming the key', async () => {
    const before = await scrape()
    const first = await h.node.put('sibling-key', 'a')
    await h.node.put('sibling-key', 'b')
    // A write that read the first version replaces only that one: it stands beside the second.
    await h.node.put('sibling-key', 'c', { context: first.version })
    expect((await h.node.get('sibling-key'))?.siblingCount).toBe(2)
    // So does a delete that read it: a tombstone beside two values (the newest, so the key reads as gone).
    await h.node.del('sibling-key', { context: first.version })
    expect(await h.node.get('sibling-key')).toBeUndefined()
    const after = await scrape()
    const delta = (type: string): number =>
      after.value('meshkv_siblings_created_total', { type }) - before.value('meshkv_siblings_created_total', { type })
    expect({ put: delta('put'), delete: delta('delete') }).toEqual({ put: 1, delete: 1 })
    expect(after.samples.some((sample) => JSON.stringify(sample).includes('sibling-key'))).toBe(false)
  })

  it('counts auth refusals by reason: no token, an unknown one, a token without the role', async () => {
    const { token: readToken } = await h.node.tokens.create({ role: 'read' })
    const before = await scrape()
    expect((await h.app.inject({ url: '/v1/kv/a' })).statusCode).toBe(401)
    const unknown = `mkv_${'0'.repeat(16)}_${'A'.repeat(43)}`
    expect((await h.app.inject({ url: '/v1/kv/a', headers: { authorization: `Bearer ${unknown}` } })).statusCode).toBe(
      401,
    )
    const asReader = { authorization: `Bearer ${readToken}` }
    expect((await h.app.inject({ method: 'PUT', url: '/v1/kv/a', payload: 'x', headers: asReader })).statusCode).toBe(
      403,
    )
    expect((await h.app.inject({ url: '/metrics', headers: asReader })).statusCode).toBe(403)
    const after = await scrape()
    const delta = (reason: string): number =>
      after.value('meshkv_token_refusals_total', { reason }) - before.value('meshkv_token_refusals_total', { reason })
    expect({ missing: delta('missing'), invalid: delta('invalid'), forbidden: delta('forbidden') }).toEqual({
      missing: 1,
      invalid: 1,
      forbidden: 2,
    })
  })

  it('shows the seq guard state, readiness, the log and tombstones held, and no peer', async () => {
    await h.node.put('gc-key', 'x')
    await h.node.del('gc-key')
    const metrics = await scrape()
    // A node without peers is writable at once: one state is 1, the others 0.
    expect(metrics.find('meshkv_seq_guard_state').map(({ labels, value }) => [labels['state'], value])).toEqual([
      ['verifying', 0],
      ['writable', 1],
      ['recovering', 0],
      ['diverged', 0],
      ['conflict', 0],
    ])
    expect(metrics.value('meshkv_ready')).toBe(1)
    const gc = await h.node.gcStatus()
    expect(metrics.value('meshkv_gc_log_entries')).toBe(gc.logEntries)
    expect(metrics.value('meshkv_gc_tombstones')).toBe(gc.tombstones)
    expect(gc.tombstones).toBeGreaterThanOrEqual(1)
    expect(metrics.value('meshkv_lsn')).toBe(h.node.status().lsn)
    expect(metrics.find('meshkv_peer_lag_changes')).toEqual([])
    expect(metrics.value('meshkv_peers_unreached')).toBe(0)
    expect(metrics.value('meshkv_snapshot_remaining_keys')).toBe(0)
    expect(metrics.types.get('meshkv_replication_changes_applied_total')).toBe('counter')
    expect(metrics.types.get('meshkv_peer_lag_seconds')).toBe('gauge')
  })
})
