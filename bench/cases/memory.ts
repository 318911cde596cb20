/**
 * memory: resident set size of a `meshkv node` process holding N keys (1M; quick 100k), data on
 * disk. The store is filled first in this process through MeshNode on the node's directory (one
 * key per change, 64 in flight, so the log holds N changes as it would after N client writes);
 * then the node process starts standalone, answers 2,000 GETs of random keys and one listing,
 * and its VmRSS is read from /proc after a short settle. `peak_mb` is VmHWM. Baseline null.
 */
import { MeshkvCluster } from '../lib/cluster.js'
import { getJson, request } from '../lib/http.js'
import { fillNode, keyOf } from '../lib/populate.js'
import { rssOf, sleep } from '../lib/procs.js'
import { entry } from '../lib/report.js'
import type { BenchCase, Context } from './types.js'

const MB = 1024 * 1024

export const memoryCase: BenchCase = {
  names: ['memory'],
  async run({ sizes, log }: Context) {
    const keys = sizes.memoryKeys
    const cluster = await MeshkvCluster.start({ size: 1, linked: false, label: 'memory' })
    try {
      const node = cluster.node(1)
      await node.stop()
      const fillRate = await fillNode(node.dir, {
        count: keys,
        prefix: 'mem-',
        valueBytes: sizes.valueBytes,
        inflight: sizes.inflight,
      })
      log(`filled ${keys} keys (${Math.round(fillRate)}/s)`)
      node.start()
      await node.waitReady(120_000)
      const afterStart = await rssOf(node.pid)
      const reads = 2000
      let next = 0
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < reads) {
            next++
            const answer = await request(`${node.url}/v1/kv/${keyOf('mem-', Math.floor(Math.random() * keys))}`)
            if (answer.status !== 200) throw new Error(`GET answered ${answer.status}`)
          }
        }),
      )
      await getJson(`${node.url}/v1/kv?prefix=mem-&limit=1000`)
      await sleep(1000)
      const { rss, peak } = await rssOf(node.pid)
      log(
        `RSS ${(rss / MB).toFixed(1)} MB (after start ${(afterStart.rss / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB)`,
      )
      return {
        memory: entry(rss / MB, 'MB', null, {
          keys,
          value_bytes: sizes.valueBytes,
          rss_after_start_mb: Math.round((afterStart.rss / MB) * 10) / 10,
          peak_mb: Math.round((peak / MB) * 10) / 10,
          measured: 'VmRSS of the meshkv node process after start, 2000 random GETs and one listing page',
        }),
      }
    } finally {
      await cluster.close()
    }
  },
}
