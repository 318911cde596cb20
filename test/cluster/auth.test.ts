/**
 * Peer authentication between real processes: a node with the wrong cluster secret gets no link
 * (its peers do not list it as up, its writes stay its own, the logs say MESHKV_ERR_AUTH), and a
 * node started with peers but no secret does not start at all.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { cleanEnv, freePort, killAll as killCliChildren, spawnMeshkv } from '../cli/helpers.js'
import { Cluster, buildIfStale, get, put, request, stopAllClusters, waitValue } from './helpers.js'

let cluster: Cluster
let scratch: string

beforeAll(async () => {
  buildIfStale()
  scratch = await mkdtemp(join(tmpdir(), 'meshkv-auth-'))
  cluster = await Cluster.start({ size: 3 })
  await cluster.waitLinked()
}, 60_000)

afterAll(async () => {
  await killCliChildren()
  await stopAllClusters()
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
})

const isAuthRefusal = (record: Record<string, unknown>): boolean => record['code'] === 'MESHKV_ERR_AUTH'

describe('cluster secret', () => {
  it('node 3 restarted with a wrong secret gets no link: not up on its peers, its write stays its own, MESHKV_ERR_AUTH in the logs', async () => {
    const [n1, n2, n3] = cluster.urls() as [string, string, string]
    const id3 = (await cluster.node(3).status()).nodeId
    // SIGTERM with live peer links: a clean stop.
    expect(await cluster.node(3).kill('SIGTERM')).toEqual({ code: 0, signal: null })
    // It has been a member, so it is ready (and takes writes) without any peer.
    await cluster.restart(3, { secret: 'not-the-cluster-secret' })

    // Both sides refuse: node 3 refuses the others' proofs, and they refuse node 3's.
    await vi.waitFor(
      () => {
        const mine = cluster.node(3).logs(isAuthRefusal)
        const theirs = [...cluster.node(1).logs(isAuthRefusal), ...cluster.node(2).logs(isAuthRefusal)]
        expect({ mine: mine.length > 0, theirs: theirs.length > 0 }).toEqual({ mine: true, theirs: true })
      },
      { timeout: 15_000, interval: 100 },
    )
    const refusal = cluster.node(1).logs(isAuthRefusal)[0] ?? cluster.node(2).logs(isAuthRefusal)[0]
    expect(refusal).toMatchObject({ msg: 'peer link refused', code: 'MESHKV_ERR_AUTH', peer: id3 })
    // Each line names the node that wrote it (`nodeId`) and the one it refused (`peer`).
    for (const node of cluster.nodes) {
      const own = node.n === 3 ? id3 : (await node.status()).nodeId
      for (const record of node.logs(isAuthRefusal)) {
        expect(record['nodeId']).toBe(own)
        if (node.n !== 3) expect(record['peer']).toBe(id3)
      }
    }
    // Duplicate keys would hide one of them from any JSON reader: the raw lines have one nodeId.
    for (const line of cluster.node(3).logLines.filter((text) => text.includes('MESHKV_ERR_AUTH')))
      expect(line.match(/"nodeId":/g)).toHaveLength(1)
    expect(String(refusal?.['message'])).toMatch(/secret|proof/)
    console.log(
      `refusal logged by a peer of the outsider: ${JSON.stringify(refusal)}\nand by the outsider: ${JSON.stringify(cluster.node(3).logs(isAuthRefusal)[0])}`,
    )

    const written = await put(n3, 'from-the-outsider', 'not for the cluster')
    expect(written.status).toBe(200)
    // The sentinel: the nodes keep redialing each other. A refusal logged on both sides after the
    // write shows a link was attempted once the write was there to be sent, and was refused.
    const refusalsOf = (ns: number[]): number =>
      ns.reduce((sum, n) => sum + cluster.node(n).logs(isAuthRefusal).length, 0)
    const [peersBefore, outsiderBefore] = [refusalsOf([1, 2]), refusalsOf([3])]
    await vi.waitFor(
      () =>
        expect(
          refusalsOf([1, 2]) > peersBefore && refusalsOf([3]) > outsiderBefore,
          'auth refusals on both sides after the outsider wrote',
        ).toBe(true),
      { timeout: 30_000, interval: 100 },
    )
    for (const url of [n1, n2]) {
      const status = (await request(`${url}/v1/status`)).json as {
        linked: string[]
        peers: { nodeId: string | null; state: string }[]
      }
      expect(status.linked).not.toContain(id3)
      expect(status.peers.filter((peer) => peer.state === 'up' && peer.nodeId === id3)).toEqual([])
      expect((await get(url, 'from-the-outsider')).status).toBe(404)
    }
    const own = (await request(`${n3}/v1/status`)).json as { linked: string[] }
    expect(own.linked).toEqual([])

    // With the right secret again, node 3 links and its write reaches the others.
    await cluster.node(3).kill('SIGTERM')
    await cluster.restart(3)
    await waitValue(n1, 'from-the-outsider', 'not for the cluster', 15_000)
    await waitValue(n2, 'from-the-outsider', 'not for the cluster', 5_000)
  })

  it('a brand-new node with a wrong secret never becomes ready: it cannot join', async () => {
    const port = await freePort()
    const outsider = spawnMeshkv([
      'node',
      '--dir',
      join(scratch, 'outsider'),
      '--port',
      String(port),
      '--peers',
      cluster.node(1).url,
      '--secret',
      'wrong-cluster-secret-0123456789',
      '--peer-timeout-ms',
      '2000',
      '--log-level',
      'warn',
    ])
    const url = `http://127.0.0.1:${port}`
    await vi.waitFor(
      async () =>
        expect((await request(`${url}/livez`, { timeoutMs: 500 })).status, 'the outsider to listen').toBe(200),
      { timeout: 15_000, interval: 50 },
    )
    await vi.waitFor(
      () =>
        expect(/"code":"MESHKV_ERR_AUTH"/.test(outsider.stdout()), 'an auth refusal in the outsider log').toBe(true),
      { timeout: 15_000, interval: 100 },
    )
    expect((await request(`${url}/readyz`)).status).toBe(503)
    const refused = await put(url, 'k', 'v')
    expect({ status: refused.status, code: refused.json?.['code'] }).toEqual({
      status: 503,
      code: 'MESHKV_ERR_NOT_READY',
    })
    outsider.child.kill('SIGKILL')
    await outsider.exited
  })

  it('meshkv node --peers URL without a secret exits 2 with one clear line', async () => {
    const port = await freePort()
    const run = spawnMeshkv(
      ['node', '--dir', join(scratch, 'nosecret'), '--port', String(port), '--peers', cluster.node(1).url],
      cleanEnv(),
    )
    const exited = await run.exited
    expect(exited.code).toBe(2)
    expect(exited.stderr).toMatch(
      /^meshkv: a node started with peers needs the cluster secret: --secret or MESHKV_SECRET \(MESHKV_ERR_CONFIG\)\n$/,
    )
  })
})
