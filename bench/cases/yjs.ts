/**
 * yjs_edit_latency: stock y-websocket clients (`WebsocketProvider`, `ws` as the WebSocket) in this
 * process, one on node 1 and one on node 2 of 3 linked `meshkv node` processes, in one room. The
 * client on node 1 inserts one character into a Y.Text, waits until the client on node 2 has it,
 * and inserts the next (one edit in flight, `sizes.yjsEdits` of them, after an unmeasured warm-up
 * of a tenth as many). Latency of an edit = the time the second client's Y.Text observer saw it
 * minus the time of the insert, one monotonic clock. value = p50 (ms).
 *
 * Baseline, same run and machine: the same two clients on ONE stock y-websocket server
 * (`@y/websocket-server`, bench/workers/y-websocket-server.ts, in a process of its own): what
 * relaying an edit costs without replication. ratio = baseline/value, like replication_lag (below
 * 1: meshkv is slower than the single server).
 */
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { MeshkvCluster } from '../lib/cluster.js'
import { Latencies } from '../lib/hist.js'
import type { LatencySummary } from '../lib/hist.js'
import { nowMs, spawnWorker, waitFor } from '../lib/procs.js'
import { entry } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

const EDIT_MS = 10_000

function connect(wsBase: string, room: string): { doc: Y.Doc; provider: WebsocketProvider } {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(wsBase, room, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    disableBc: true,
  })
  return { doc, provider }
}

/** `edits` one-character inserts by a client of `from`, each timed until a client of `to` sees it. */
async function editLatency(from: string, to: string, room: string, edits: number): Promise<LatencySummary> {
  const writer = connect(from, room)
  const reader = connect(to, room)
  try {
    await waitFor(`both clients of ${room} synced`, 15_000, () =>
      writer.provider.synced && reader.provider.synced ? true : undefined,
    )
    const source = writer.doc.getText('body')
    const seen = reader.doc.getText('body')
    const latencies = new Latencies()
    for (let i = 0; i < edits; i++) {
      const arrived = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`edit ${i} of ${room} not seen in ${EDIT_MS} ms`)), EDIT_MS)
        const observer = (): void => {
          if (seen.length <= i) return
          seen.unobserve(observer)
          clearTimeout(timer)
          resolve(nowMs())
        }
        seen.observe(observer)
      })
      const start = nowMs()
      source.insert(i, 'x')
      latencies.recordMs((await arrived) - start)
    }
    return latencies.summary()
  } finally {
    for (const { doc, provider } of [writer, reader]) {
      provider.destroy()
      doc.destroy()
    }
  }
}

async function meshkvRun(edits: number): Promise<LatencySummary> {
  const cluster = await MeshkvCluster.start({ size: 3, label: 'yjs' })
  try {
    const ws = (n: number): string => `${cluster.node(n).url.replace(/^http/u, 'ws')}/v1/yjs`
    await editLatency(ws(1), ws(2), 'warm', Math.max(5, Math.round(edits / 10)))
    return await editLatency(ws(1), ws(2), 'measured', edits)
  } finally {
    await cluster.close()
  }
}

async function baselineRun(edits: number): Promise<LatencySummary> {
  const server = spawnWorker('y-websocket server', 'y-websocket-server.ts')
  try {
    const line = await server.waitLine((text) => text.startsWith('{'), 30_000, 'listening line')
    const url = `ws://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`
    await editLatency(url, url, 'warm', Math.max(5, Math.round(edits / 10)))
    return await editLatency(url, url, 'measured', edits)
  } finally {
    await server.stop()
  }
}

export const yjsCase: BenchCase = {
  names: ['yjs_edit_latency'],
  async run({ sizes, log }: Context) {
    const baseline = await baselineRun(sizes.yjsEdits)
    log(`one y-websocket server, both clients on it: p50 ${baseline.p50_ms} ms, p99 ${baseline.p99_ms} ms`)
    const mesh = await meshkvRun(sizes.yjsEdits)
    log(`meshkv, client on node 1 -> client on node 2: p50 ${mesh.p50_ms} ms, p99 ${mesh.p99_ms} ms`)
    return {
      yjs_edit_latency: entry(
        mesh.p50_ms,
        'ms',
        baseline.p50_ms,
        {
          p50_ms: mesh.p50_ms,
          p99_ms: mesh.p99_ms,
          max_ms: mesh.max_ms,
          mean_ms: mesh.mean_ms,
          samples: mesh.count,
          method: 'WebsocketProvider on node 1 inserts one character; time until the provider on node 2 observes it',
          baseline_kind: 'the same two clients on one stock y-websocket server (@y/websocket-server), p50',
          baseline_p99_ms: baseline.p99_ms,
          baseline_max_ms: baseline.max_ms,
        },
        mesh.p50_ms > 0 ? baseline.p50_ms / mesh.p50_ms : null,
      ),
    }
  },
}
