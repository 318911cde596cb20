/**
 * The benchmark suite's code paths with tiny sizes: `bench/run.ts --smoke` runs every benchmark
 * (real node processes, autocannon, proxies) in a few minutes at most and must produce every named
 * entry of latest.json with the right shape and finite positive figures. Nothing here is about
 * speed: the figures of a smoke run mean nothing.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ENTRY_NAMES, LATENCY_ENTRIES } from '../../bench/cases/index.js'
import { REPO_ROOT, buildIfStale } from '../cli/helpers.js'

interface Run {
  code: number | null
  output: string
  json: Record<string, Record<string, unknown>>
}

let dir: string
let run: Run
let child: ChildProcess | undefined

function runSmoke(out: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const bench = spawn(
      process.execPath,
      ['--import', 'tsx', join(REPO_ROOT, 'bench', 'run.ts'), '--smoke', '--out', out],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    child = bench
    let output = ''
    bench.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    bench.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    bench.once('error', reject)
    bench.once('close', (code) => {
      child = undefined
      resolve({ code, output })
    })
  })
}

/** The unit of each entry: a smoke run must write exactly these, no other string. */
const UNIT_OF: Readonly<Record<string, string>> = {
  embedded_put: 'ops/s',
  embedded_put_fsync: 'ops/s',
  http_put: 'req/s',
  http_get: 'req/s',
  put_latency: 'ms',
  replication_lag: 'ms',
  replication_lag_80pct: 'ms',
  replicated_throughput: 'writes/s',
  replicated_throughput_http: 'writes/s',
  semi_sync: 'req/s',
  catch_up: 'changes/s',
  snapshot_bootstrap: 'keys/s',
  memory: 'MB',
  wire_bytes: 'bytes/change',
  yjs_edit_latency: 'ms',
  scale: 'µs/change/link',
}

const positive = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value) && value > 0
const nonNegative = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value) && value >= 0

describe('bench --smoke', () => {
  beforeAll(async () => {
    buildIfStale()
    dir = await mkdtemp(join(tmpdir(), 'meshkv-bench-smoke-'))
    const out = join(dir, 'smoke.json')
    const { code, output } = await runSmoke(out)
    let json: Run['json'] = {}
    try {
      json = JSON.parse(await readFile(out, 'utf8')) as Run['json']
    } catch {
      // asserted below, with the output
    }
    run = { code, output, json }
    // Every case, scale's two clusters included: 160 s on this 2-core machine at load average 15.
  }, 240_000)

  afterAll(async () => {
    // A run cut short (timeout): SIGTERM makes run.ts stop every process it started.
    if (child !== undefined && child.exitCode === null) {
      const ended = new Promise((resolve) => child?.once('close', resolve))
      child.kill('SIGTERM')
      await ended
    }
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('runs every benchmark and exits 0', () => {
    expect(run.code, run.output.slice(-4000)).toBe(0)
    expect(run.json['_meta']?.['failures'], run.output.slice(-4000)).toBeUndefined()
  })

  it('writes machine info under _meta', () => {
    const meta = run.json['_meta'] ?? {}
    expect(positive(meta['cpus'])).toBe(true)
    expect(meta['node']).toBe(process.version)
    expect(String(meta['command'])).toContain('--smoke')
    expect(Number.isNaN(Date.parse(String(meta['date'])))).toBe(false)
  })

  it('writes exactly the known entries, each with a known unit', () => {
    expect(Object.keys(UNIT_OF).sort()).toEqual([...ENTRY_NAMES].sort())
    expect(Object.keys(run.json).sort(), run.output.slice(-4000)).toEqual(['_meta', ...ENTRY_NAMES].sort())
  })

  it.each(ENTRY_NAMES.map((name) => [name]))('%s has the entry shape with finite positive figures', (name) => {
    expect(run.json[name], `${name} missing; output:\n${run.output.slice(-4000)}`).toBeDefined()
    const entry = run.json[name] ?? {}
    expect(entry['unit']).toBe(UNIT_OF[name])
    // A latency's p50 may legitimately round to 0 only if most samples were seen before their ack.
    if (LATENCY_ENTRIES.includes(name) && name.startsWith('replication_lag'))
      expect(nonNegative(entry['value'])).toBe(true)
    else expect(positive(entry['value']), `${name}.value = ${String(entry['value'])}`).toBe(true)
    expect(
      entry['baseline'] === null || positive(entry['baseline']),
      `${name}.baseline = ${String(entry['baseline'])}`,
    ).toBe(true)
    expect(entry['ratio'] === null || positive(entry['ratio']), `${name}.ratio = ${String(entry['ratio'])}`).toBe(true)
    if (entry['baseline'] === null) expect(entry['ratio']).toBeNull()
    if (LATENCY_ENTRIES.includes(name)) {
      for (const field of ['p50_ms', 'p99_ms', 'max_ms'])
        expect(nonNegative(entry[field]), `${name}.${field}`).toBe(true)
      expect(entry['p99_ms'] as number).toBeGreaterThanOrEqual(entry['p50_ms'] as number)
      expect(entry['max_ms'] as number).toBeGreaterThanOrEqual(entry['p99_ms'] as number)
    }
  })

  it('records what the issue asks beyond the common fields', () => {
    expect(run.json['memory']?.['unit']).toBe('MB')
    expect(run.json['memory']?.['baseline']).toBeNull()
    // The method as the node named it: any other string (or none) fails.
    expect(['log', 'snapshot']).toContain(run.json['snapshot_bootstrap']?.['method'])
    expect(
      nonNegative(run.json['wire_bytes']?.['overhead_bytes']),
      `wire_bytes.overhead_bytes = ${String(run.json['wire_bytes']?.['overhead_bytes'])}`,
    ).toBe(true)
    expect(run.json['embedded_put_fsync']).toBeDefined()
    expect(run.json['replicated_throughput_http']).toBeDefined()
  })

  it("splits replication lag into its stages, from the nodes' trace", () => {
    const stages = (run.json['replication_lag']?.['stages'] ?? {}) as Record<string, Record<string, unknown>>
    expect(positive(stages['samples']), `stages = ${JSON.stringify(stages)}`).toBe(true)
    for (const stage of ['ack_to_sent', 'sent_to_received', 'received_to_applied', 'applied_to_seen']) {
      // ack_to_sent is negative when the frame left before the answer was read: finite, any sign.
      for (const field of ['p50_ms', 'p99_ms', 'max_ms']) expect(Number.isFinite(stages[stage]?.[field])).toBe(true)
      expect(stages[stage]?.['p99_ms'] as number).toBeGreaterThanOrEqual(stages[stage]?.['p50_ms'] as number)
    }
    for (const stage of ['sent_to_received', 'received_to_applied'])
      expect(nonNegative(stages[stage]?.['p50_ms']), `${stage} = ${JSON.stringify(stages[stage])}`).toBe(true)
  })

  it('puts one write beside a GET and a durable batch, and a large cluster beside a small one', () => {
    const latency = run.json['put_latency'] ?? {}
    for (const field of ['get_p50_ms', 'batch_p50_ms', 'target_ms']) expect(positive(latency[field]), field).toBe(true)
    expect(typeof latency['target_met']).toBe('boolean')
    const scale = run.json['scale'] ?? {}
    const [large, base] = [scale['large'], scale['base']] as Record<string, unknown>[]
    expect(large?.['nodes'] as number).toBeGreaterThan(base?.['nodes'] as number)
    for (const side of [large, base]) {
      expect(positive(side?.['gross_us_per_change_link']), JSON.stringify(side)).toBe(true)
      expect(positive(side?.['writes'])).toBe(true)
      expect(side?.['missing']).toBe(0)
    }
  })
})
