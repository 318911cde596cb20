/**
 * A rolling restart under load (issue 15, part 3): three real nodes, and three `MeshClient`
 * sessions (two sticky, starting on different nodes, one round-robin; each knows all three
 * endpoints) that write (w=2), read and count without pause. Each node in turn gets SIGTERM,
 * must exit 0, is started again on its directory and port, and must answer `/readyz` 200 before
 * the next one goes. This is the upgrade procedure of docs/operations.md with the same binary.
 *
 * Checked: no request failed at all (a graceful stop refuses new requests with 503 and closes
 * its connections, and the client retries those on the next node); every acknowledged write is
 * readable at the end on every node, with its value or a later one of its session; no read of a
 * session went backwards (rolling-load.ts says how "later" is decided); the counters hold every
 * acknowledged increment; the digests are equal at the end.
 */
import { describe, expect, it, vi } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { Cluster, useLinkedCluster } from './helpers.js'
import { KEYS_PER_SESSION, Session, newestWrite } from './rolling-load.js'

/** Operations every session must get through in each phase: before a stop, while down, after ready. */
const OPS_PER_PHASE = 30

let cluster: Cluster

useLinkedCluster((started) => (cluster = started))

/** Waits until every session has done `ops` more successful operations than now. */
async function progress(sessions: readonly Session[], ops: number, what: string): Promise<void> {
  const from = sessions.map((session) => session.okOps)
  await vi.waitFor(
    () => {
      const behind = sessions.filter((session, index) => session.okOps - (from[index] as number) < ops)
      const failed = sessions.flatMap((session) => session.failures).slice(0, 3)
      expect(
        behind.map((session) => session.n),
        `${what}; first failures: ${JSON.stringify(failed)}`,
      ).toEqual([])
    },
    { timeout: 30_000, interval: 50 },
  )
}

describe('rolling restart', () => {
  it('restarts every node in turn under load: no failed request, nothing acknowledged lost, no read backwards, equal digests', async () => {
    const urls = cluster.urls()
    const rotate = (by: number): string[] => urls.map((_, index) => urls[(index + by) % urls.length] as string)
    const sessions = [
      new Session(1, rotate(0), 'sticky'),
      new Session(2, rotate(1), 'sticky'),
      new Session(3, rotate(2), 'round-robin'),
    ]
    for (const session of sessions) session.start()
    const steps: string[] = []
    try {
      await progress(sessions, OPS_PER_PHASE, 'load before the first restart')
      for (const node of cluster.nodes) {
        const stoppedAtMs = Date.now()
        const exit = await node.kill('SIGTERM')
        const exitedAtMs = Date.now()
        expect({ node: node.n, exit, stderr: node.stderr }).toEqual({
          node: node.n,
          exit: { code: 0, signal: null },
          stderr: '',
        })
        await progress(sessions, OPS_PER_PHASE, `load while node ${node.n} is down`)
        await cluster.restart(node.n)
        await progress(sessions, OPS_PER_PHASE, `load after node ${node.n} is ready again`)
        steps.push(
          `node ${node.n} (${node.url}): SIGTERM at ${stoppedAtMs}, exit 0 at ${exitedAtMs}, ready again at ${Date.now()}; ops so far ${sessions.map((s) => s.okOps)}`,
        )
      }
    } finally {
      await Promise.all(sessions.map((session) => session.stop()))
    }
    const failures = sessions.flatMap((session) => session.failures)
    const regressions = sessions.flatMap((session) => session.regressions)
    console.log(
      `MEASURED rolling restart: ${steps.join('; ')}; ` +
        sessions
          .map(
            (s) =>
              `session ${s.n} (${s.client.policy}): ${s.okOps} ops ok, ${s.reads} reads, ${s.incrAcked}/${s.incrSent} increments acknowledged, ${s.failures.length} failed`,
          )
          .join('; ') +
        `; failures: ${JSON.stringify(failures)}; regressions: ${JSON.stringify(regressions)}`,
    )
    expect(failures).toEqual([])
    expect(regressions).toEqual([])

    await cluster.waitLinked()
    const { digest } = await cluster.waitConverged(undefined, 30_000)
    expect(digest.keys).toBeGreaterThanOrEqual(sessions.length * KEYS_PER_SESSION)
    await checkEveryNodeHoldsWhatWasAcknowledged(sessions)
  })
})

/** On every node: each key holds its last acknowledged write or a later one; each counter every acknowledged increment. */
async function checkEveryNodeHoldsWhatWasAcknowledged(sessions: readonly Session[]): Promise<void> {
  for (const node of cluster.nodes) {
    const reader = new MeshClient({ nodes: [node.url], timeoutMs: 5_000 })
    const lost: string[] = []
    for (const session of sessions) {
      for (const [key, acked] of session.acked) {
        const held = newestWrite(await reader.get(key, { siblings: true }))
        if (held < acked) lost.push(`${key}: acknowledged s${session.n}:${acked}, holds ${held}`)
      }
      const value = await reader.counter(session.counterName)
      // An increment that failed after it was sent may have counted; none is expected to fail.
      if (value < session.incrAcked || value > session.incrSent)
        lost.push(`${session.counterName}: ${value}, acknowledged ${session.incrAcked}, sent ${session.incrSent}`)
    }
    expect({ node: node.n, lost }).toEqual({ node: node.n, lost: [] })
  }
}
