/**
 * `/metrics` of a real three-node cluster (docs/operations.md, "Metrics"), scraped over HTTP and
 * read as the Prometheus text format: each node names its peers by node id; writes move the
 * change, frame and byte counters on both ends of a link; a killed node shows as down on its
 * peers, with its lag growing in changes and in seconds, until it is back; a write-concern
 * timeout is counted by its `w`; writes made on both sides of a cut show as siblings created.
 */
import { describe, expect, it } from 'vitest'
import type { Exposition } from '../support/prometheus.js'
import { parseExposition } from '../support/prometheus.js'
import type { ClusterNode } from './helpers.js'
import { Cluster, put, request, useLinkedCluster, waitFor } from './helpers.js'

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

async function scrape(node: ClusterNode): Promise<Exposition> {
  const answer = await request(`${node.url}/metrics`)
  if (answer.status !== 200) throw new Error(`node ${node.n} /metrics answered ${answer.status}: ${answer.text}`)
  return parseExposition(answer.text)
}

/** The value of a sample, or 0 when the series is not there yet (a counter never moved). */
function valueOr0(metrics: Exposition, name: string, labels: Record<string, string>): number {
  const found = metrics.find(name, labels)
  return found.length === 0 ? 0 : metrics.value(name, labels)
}

/** Polls node `node`'s metrics until `check` returns something; resolves with it. */
function waitMetrics<T>(what: string, node: ClusterNode, check: (metrics: Exposition) => T | undefined): Promise<T> {
  return waitFor(what, 20_000, async () => check(await scrape(node)), 100)
}

async function nodeIds(): Promise<string[]> {
  return Promise.all(cluster.nodes.map(async (node) => (await node.status()).nodeId))
}

describe('/metrics of a three-node cluster', () => {
  it('names each peer by node id, up with no lag; the seq guard writable; no metric carries a key', async () => {
    const ids = await nodeIds()
    for (const [index, node] of cluster.nodes.entries()) {
      const others = ids.filter((_, other) => other !== index).sort()
      const metrics = await waitMetrics(`node ${node.n}: both peers up, lag 0, no URL unreached`, node, (metrics) => {
        const up = others.every((peer) => metrics.value('meshkv_peer_link_state', { peer, state: 'up' }) === 1)
        const quiet = others.every((peer) => metrics.value('meshkv_peer_lag_changes', { peer }) === 0)
        // A kept URL learns the node behind it at its first handshake, which may come after a link the
        // other way: until then it counts as unreached.
        return up && quiet && metrics.value('meshkv_peers_unreached') === 0 ? metrics : undefined
      })
      const peers = new Set(metrics.find('meshkv_peer_link_state').map((sample) => sample.labels['peer']))
      expect([...peers].sort()).toEqual(others)
      for (const peer of others) {
        expect(metrics.value('meshkv_peer_link_state', { peer, state: 'down' })).toBe(0)
        expect(metrics.value('meshkv_peer_lag_seconds', { peer })).toBe(0)
        expect(metrics.value('meshkv_peer_catch_up_remaining_changes', { peer })).toBe(0)
      }
      expect(metrics.value('meshkv_seq_guard_state', { state: 'writable' })).toBe(1)
      expect(metrics.value('meshkv_members')).toBe(3)
      for (const sample of metrics.samples)
        expect(Object.keys(sample.labels).filter((label) => ['key', 'prefix', 'name'].includes(label))).toEqual([])
    }
  })

  it('writes on node 1 move its sent counters and bytes, and node 2 its received and applied ones', async () => {
    const [id1, id2] = (await nodeIds()) as [string, string]
    const [n1, n2] = [cluster.node(1), cluster.node(2)]
    const [before1, before2] = await Promise.all([scrape(n1), scrape(n2)])
    const value = 'v'.repeat(1000)
    for (let i = 0; i < 20; i++) expect((await put(n1.url, `metrics-write-${i}`, value, { w: 'all' })).status).toBe(200)
    const [after1, after2] = await Promise.all([scrape(n1), scrape(n2)])
    const delta = (after: Exposition, before: Exposition, name: string, labels: Record<string, string> = {}): number =>
      valueOr0(after, name, labels) - valueOr0(before, name, labels)

    expect(delta(after1, before1, 'meshkv_lsn')).toBeGreaterThanOrEqual(20)
    expect(delta(after1, before1, 'meshkv_replication_changes_sent_total')).toBeGreaterThanOrEqual(20)
    expect(delta(after1, before1, 'meshkv_replication_frames_sent_total')).toBeGreaterThanOrEqual(1)
    // Twenty values of 1000 bytes crossed the link 1→2, whichever side dialed it.
    expect(delta(after1, before1, 'meshkv_peer_sent_bytes_total', { peer: id2 })).toBeGreaterThanOrEqual(20_000)
    expect(delta(after2, before2, 'meshkv_peer_received_bytes_total', { peer: id1 })).toBeGreaterThanOrEqual(20_000)
    // Every node is linked to every other: node 2 gets node 1's changes from node 1 itself.
    expect(delta(after1, before1, 'meshkv_peer_sent_changes_total', { peer: id2 })).toBeGreaterThanOrEqual(20)
    expect(delta(after2, before2, 'meshkv_peer_received_changes_total', { peer: id1 })).toBeGreaterThanOrEqual(20)
    expect(delta(after2, before2, 'meshkv_replication_changes_received_total')).toBeGreaterThanOrEqual(20)
    expect(delta(after2, before2, 'meshkv_replication_changes_applied_total')).toBeGreaterThanOrEqual(20)
    expect(after2.value('meshkv_replication_changes_refused_total', { reason: 'store' })).toBe(0)
    expect(after1.samples.some((sample) => JSON.stringify(sample).includes('metrics-write'))).toBe(false)
  })

  it('a killed node is down on its peers and its lag grows in changes and seconds; a w=all timeout is counted; back, lag 0', async () => {
    const ids = await nodeIds()
    const id3 = ids[2] as string
    const n1 = cluster.node(1)
    await cluster.node(3).kill('SIGKILL')
    const atDown = await waitMetrics('node 1 to see node 3 down', n1, (metrics) =>
      metrics.value('meshkv_peer_link_state', { peer: id3, state: 'down' }) === 1 ? metrics : undefined,
    )
    expect(atDown.value('meshkv_peer_link_state', { peer: id3, state: 'up' })).toBe(0)
    for (let i = 0; i < 5; i++) expect((await put(n1.url, `while-3-down-${i}`, 'x')).status).toBe(200)
    const afterWrites = await scrape(n1)
    const lagChanges = afterWrites.value('meshkv_peer_lag_changes', { peer: id3 })
    expect(lagChanges).toBeGreaterThanOrEqual(atDown.value('meshkv_peer_lag_changes', { peer: id3 }) + 5)
    // The oldest change node 3 lacks only gets older.
    const lagSeconds = afterWrites.value('meshkv_peer_lag_seconds', { peer: id3 })
    await waitMetrics('the lag in seconds of node 3 to grow', n1, (metrics) =>
      metrics.value('meshkv_peer_lag_seconds', { peer: id3 }) > lagSeconds ? true : undefined,
    )
    // Node 2 sees the same.
    expect((await scrape(cluster.node(2))).value('meshkv_peer_link_state', { peer: id3, state: 'down' })).toBe(1)

    const timeouts = valueOr0(afterWrites, 'meshkv_write_concern_timeouts_total', { w: 'all' })
    expect((await put(n1.url, 'needs-all', 'x', { w: 'all', timeout_ms: '300' })).status).toBe(504)
    const afterTimeout = await scrape(n1)
    expect(afterTimeout.value('meshkv_write_concern_timeouts_total', { w: 'all' })).toBe(timeouts + 1)

    await cluster.restart(3)
    const back = await waitMetrics('node 1 to see node 3 up and level', n1, (metrics) =>
      metrics.value('meshkv_peer_link_state', { peer: id3, state: 'up' }) === 1 &&
      metrics.value('meshkv_peer_lag_changes', { peer: id3 }) === 0
        ? metrics
        : undefined,
    )
    expect(back.value('meshkv_peer_lag_seconds', { peer: id3 })).toBe(0)
  })

  it('writes of one key on both sides of a cut count as siblings created once the sides meet', async () => {
    await cluster.waitLinked()
    const [n1, n2] = [cluster.node(1), cluster.node(2)]
    const before = await Promise.all([scrape(n1), scrape(n2)])
    cluster.isolate(1)
    try {
      expect((await put(n1.url, 'split-key', 'from 1')).status).toBe(200)
      expect((await put(n2.url, 'split-key', 'from 2')).status).toBe(200)
    } finally {
      cluster.heal()
    }
    await cluster.waitConverged()
    const after = await Promise.all([scrape(n1), scrape(n2)])
    for (const side of [0, 1]) {
      const created = (metrics: Exposition | undefined): number =>
        valueOr0(metrics as Exposition, 'meshkv_siblings_created_total', { type: 'put' })
      // The other side's write arrived beside this side's own: one sibling created on each side.
      expect(created(after[side]) - created(before[side])).toBeGreaterThanOrEqual(1)
    }
  })
})
