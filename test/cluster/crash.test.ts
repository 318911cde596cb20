/**
 * kill -9 of one node in the middle of a write load: 5,000 keys written with w=2 through the two
 * other nodes, 32 requests in flight. The killed node restarts on its directory and catches up:
 * all digests equal, every acknowledged key on every node.
 */
import { describe, expect, it } from 'vitest'
import { Cluster, kvctl, listKeys, put, useLinkedCluster } from './helpers.js'

const KEYS = 5_000
const IN_FLIGHT = 32
const KILL_AFTER_ACKS = 1_000
const STATUS_AFTER_ACKS = 2_500

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

describe('kill -9 during writes', () => {
  it('node 2 killed while 5,000 keys are written with w=2 through nodes 1 and 3: after its restart every acknowledged key is on every node', async () => {
    const [n1, , n3] = cluster.urls() as [string, string, string]
    const acked: string[] = []
    const failures = new Map<string, number>()
    let next = 0
    let killed: Promise<unknown> | undefined
    let statusRun: Promise<{ code: number | null; out: string; stderr: string }> | undefined

    const writer = async (): Promise<void> => {
      while (next < KEYS) {
        const index = next++
        const key = `load-${String(index).padStart(5, '0')}`
        const target = index % 2 === 0 ? n1 : n3
        try {
          const answer = await put(target, key, `value ${index}`, { w: '2', timeout_ms: '5000' })
          if (answer.status === 200) acked.push(key)
          else
            failures.set(
              String(answer.json?.['code'] ?? answer.status),
              (failures.get(String(answer.json?.['code'] ?? answer.status)) ?? 0) + 1,
            )
        } catch (error) {
          const name = error instanceof Error ? error.name : 'error'
          failures.set(name, (failures.get(name) ?? 0) + 1)
        }
        if (killed === undefined && acked.length >= KILL_AFTER_ACKS) killed = cluster.node(2).kill('SIGKILL')
        if (statusRun === undefined && acked.length >= STATUS_AFTER_ACKS) statusRun = kvctl(['--node', n1, 'status'])
      }
    }
    const started = Date.now()
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => writer()))
    const writeMs = Date.now() - started
    expect(killed).toBeDefined()
    expect(await killed).toMatchObject({ signal: 'SIGKILL' })
    const status = await statusRun
    expect(status?.code).toBe(0)

    console.log(
      `MEASURED kill -9: ${acked.length} of ${KEYS} writes (w=2) acknowledged in ${writeMs} ms (${Math.round((acked.length / writeMs) * 1000)}/s, ${IN_FLIGHT} in flight); not acknowledged: ${JSON.stringify(Object.fromEntries(failures))}`,
    )
    console.log(`MEASURED kvctl status against node 1 mid-write (node 2 dead):\n${status?.out ?? ''}`)
    expect(status?.out).toMatch(/peers:/)
    // Writes through two live nodes with w=2 are all acknowledged (node 2 is not needed).
    expect(acked.length).toBeGreaterThanOrEqual(KEYS - IN_FLIGHT)

    const restarted = Date.now()
    await cluster.restart(2)
    const readyMs = Date.now() - restarted
    const { ms } = await cluster.waitConverged([1, 2, 3], 60_000)
    const convergedMs = Date.now() - restarted
    console.log(
      `MEASURED node 2 restart: ready after ${readyMs} ms, digests equal on all three nodes ${convergedMs} ms after the restart (${ms} ms of polling after ready)`,
    )

    for (const node of cluster.nodes) {
      const keys = await listKeys(node.url, 'load-')
      const missing = acked.filter((key) => !keys.has(key))
      expect({ node: node.n, missing: missing.length, sample: missing.slice(0, 5) }).toEqual({
        node: node.n,
        missing: 0,
        sample: [],
      })
    }
  })
})
