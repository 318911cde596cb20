/**
 * Failover without a failover step: a sticky MeshClient over three real nodes keeps writing while
 * the node it talks to is killed with SIGKILL. No acknowledged write (w=2) is lost, and the writes
 * go on, on another node (how long the gap is belongs to bench/). And a write that its node ran, but whose answer was lost with the node,
 * is not run a second time by the client on another node.
 */
import { describe, expect, it, vi } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { isMeshError } from '../../src/errors.js'
import { TcpProxy } from '../support/tcp-proxy.js'
import { Cluster, listKeys, request, useLinkedCluster } from './helpers.js'

/** Writes acknowledged before the kill, and after it, that the test waits for. */
const WRITES_EACH_SIDE = 20

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

describe('client failover', () => {
  it('a sticky client keeps writing while its node is killed: it moves to another node and nothing acknowledged is lost', async () => {
    // Attempts that failed at the socket level, seen through the client's fetch: the client
    // retries some of them on the next node by itself (they never reach the loop below).
    const socketFailures: string[] = []
    const fetchWithLog = async (input: string | URL, init?: RequestInit): Promise<Response> => {
      try {
        return await fetch(input, init)
      } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause
        socketFailures.push(
          `${init?.method ?? 'GET'} ${String(input).replace(/\?.*$/, '')}: ${cause?.code ?? (error as Error).message}`,
        )
        throw error
      }
    }
    const client = new MeshClient({ nodes: cluster.urls(), policy: 'sticky', timeoutMs: 2_000, fetch: fetchWithLog })
    /** `servedBy`: the client's node once the write was acknowledged (the one that answered). */
    const acked: { key: string; startedMs: number; atMs: number; servedBy: string }[] = []
    const failed: { key: string; atMs: number; error: string }[] = []
    let stop = false
    const writer = (async () => {
      for (let index = 0; !stop; index++) {
        const key = `fo-${String(index).padStart(6, '0')}`
        const startedMs = Date.now()
        try {
          await client.put(key, `value ${index}`, { w: 2, waitMs: 2_000 })
          acked.push({ key, startedMs, atMs: Date.now(), servedBy: client.currentEndpoint })
        } catch (error) {
          failed.push({
            key,
            atMs: Date.now(),
            error:
              error instanceof Error
                ? `${(error as { code?: string }).code ?? error.name}: ${error.message}`
                : String(error),
          })
        }
      }
    })()

    // Bounds here are liveness bounds: the writer must get this far, however fast the machine.
    await vi.waitFor(
      () =>
        expect(acked.length >= WRITES_EACH_SIDE, `${WRITES_EACH_SIDE} writes acknowledged before the kill`).toBe(true),
      { timeout: 20_000, interval: 100 },
    )
    const victimUrl = client.currentEndpoint
    const victim = cluster.nodes.find((node) => node.url === victimUrl)
    expect(victim).toBeDefined()
    const killedAtMs = Date.now()
    await victim?.kill('SIGKILL')
    await vi.waitFor(
      () =>
        expect(
          acked.filter((write) => write.startedMs > killedAtMs).length >= WRITES_EACH_SIDE,
          `${WRITES_EACH_SIDE} writes acknowledged after the kill`,
        ).toBe(true),
      { timeout: 20_000, interval: 100 },
    )
    stop = true
    await writer

    const before = acked.filter((write) => write.atMs <= killedAtMs)
    const after = acked.filter((write) => write.atMs > killedAtMs)
    let longestGapMs = 0
    for (let i = 1; i < acked.length; i++)
      longestGapMs = Math.max(
        longestGapMs,
        (acked[i] as { atMs: number }).atMs - (acked[i - 1] as { atMs: number }).atMs,
      )
    const lastBefore = before[before.length - 1]
    const firstAfter = after[0]
    const killGapMs =
      lastBefore !== undefined && firstAfter !== undefined ? firstAfter.atMs - lastBefore.atMs : Infinity
    console.log(
      `MEASURED failover: node ${victim?.n} killed; ${before.length} writes acknowledged before, ${after.length} after (now on ${client.currentEndpoint}); ` +
        `gap across the kill ${killGapMs} ms, longest gap between acknowledged writes ${longestGapMs} ms, first ack after the kill ${firstAfter === undefined ? '-' : firstAfter.atMs - killedAtMs} ms after it; ` +
        `failed writes: ${failed.length} ${JSON.stringify(failed.map((failure) => failure.error.slice(0, 160)))}; ` +
        `attempts that failed at the socket level: ${socketFailures.length} ${JSON.stringify(socketFailures)}`,
    )
    expect(before.length).toBeGreaterThanOrEqual(WRITES_EACH_SIDE)
    expect(client.currentEndpoint).not.toBe(victimUrl)
    // No write begun after the kill was answered by the dead node: the client moved on.
    const servedByTheDead = acked.filter((write) => write.startedMs > killedAtMs && write.servedBy === victimUrl)
    expect(servedByTheDead).toEqual([])

    // Nothing acknowledged is lost: every acked key is on both survivors.
    const survivors = cluster.live().map((node) => node.n)
    expect(survivors).toHaveLength(2)
    await cluster.waitConverged(survivors, 20_000)
    for (const n of survivors) {
      const keys = await listKeys(cluster.node(n).url, 'fo-')
      const missing = acked.filter((write) => !keys.has(write.key)).map((write) => write.key)
      expect({ node: n, missing }).toEqual({ node: n, missing: [] })
    }
  })

  it('a write whose node runs it and dies before answering is not run again on the next node (a counter counts it once)', async () => {
    // Any two live nodes: the client reaches the first through a proxy that loses every answer,
    // as a node killed after its commit (and its w=2 ack) but before it answered would.
    const [first, second] = cluster.live()
    if (first === undefined || second === undefined) throw new Error('two live nodes are needed')
    await cluster.waitLinked([first.n, second.n])
    const lossy = await TcpProxy.start(first.port)
    try {
      lossy.dropResponses()
      const client = new MeshClient({ nodes: [lossy.url, second.url], policy: 'sticky', timeoutMs: 5_000 })
      let acknowledged: number | undefined
      let error: unknown
      try {
        acknowledged = await client.incr('exactly-once', 1, { w: 2 })
      } catch (caught) {
        error = caught
      }
      await cluster.waitConverged([first.n, second.n])
      const values = await Promise.all(
        [first, second].map(async (node) => (await request(`${node.url}/v1/counters/exactly-once`)).json?.['value']),
      )
      console.log(
        `MEASURED lost answer: the client ${error === undefined ? `acknowledged the increment with value ${acknowledged}` : `failed with ${String(error)}`}; the counter holds ${JSON.stringify(values)} on nodes ${first.n} and ${second.n}`,
      )
      // The node behind the proxy ran the increment (and waited for w=2) before its answer was lost.
      expect(values).toEqual([1, 1])
      // The connection broke after the request went out: the client says the write may have run
      // (and does not run it again on the next node), never that it ran it anew.
      expect(acknowledged).toBeUndefined()
      expect(isMeshError(error) ? { code: error.code, maybeApplied: error.details?.['maybeApplied'] } : error).toEqual({
        code: 'MESHKV_ERR_UNREACHABLE',
        maybeApplied: true,
      })
    } finally {
      await lossy.close()
    }
  })
})
