/** Command line of `bench/run.ts`, and the sizes of each mode. */
import { parseFlags } from '../../test/support/args.js'

export type Mode = 'full' | 'quick' | 'smoke'

export interface Sizes {
  /** Puts per embedded_put measurement (each of mesh and raw). */
  embeddedOps: number
  embeddedFsyncOps: number
  /** Rounds of each embedded measurement (interleaved; the best counts): the disk is noisy. */
  embeddedRounds: number
  /** Seconds of each HTTP load (and its warm-up). */
  httpSeconds: number
  httpWarmupSeconds: number
  /** Seconds of each fixed-rate replication_lag run, and of the maximum-rate probe. */
  lagSeconds: number
  lagProbeSeconds: number
  lagRate: number
  lagWarmupSeconds: number
  /** Seconds of each replicated_throughput attempt; attempts at most. */
  throughputSeconds: number
  throughputAttempts: number
  throughputWarmupSeconds: number
  semiSyncSeconds: number
  catchUpChanges: number
  bootstrapKeys: number
  memoryKeys: number
  wireChanges: number
  wireRate: number
  /** How long the wire_bytes count waits after convergence for acks (sent on a 1 s tick). */
  wireSettleMs: number
  /** Edits of each yjs_edit_latency run (meshkv and the single y-websocket server). */
  yjsEdits: number
  /** Measured operations of each kind in put_latency (PUT, GET, raw batch), after a fifth as many unmeasured. */
  latencyOps: number
  /** scale: the large cluster's size (against `scaleBaseNodes`), the write rate over all nodes, seconds of load, of idle and of unmeasured warm-up. */
  scaleNodes: number
  scaleBaseNodes: number
  scaleRate: number
  scaleSeconds: number
  scaleIdleSeconds: number
  scaleWarmupSeconds: number
  valueBytes: number
  inflight: number
  httpConnections: number
}

const SIZES: Record<Mode, Sizes> = {
  full: {
    embeddedOps: 100_000,
    embeddedFsyncOps: 50_000,
    embeddedRounds: 2,
    httpSeconds: 10,
    httpWarmupSeconds: 2,
    lagSeconds: 10,
    lagProbeSeconds: 4,
    lagRate: 1000,
    lagWarmupSeconds: 4,
    throughputSeconds: 8,
    throughputAttempts: 5,
    throughputWarmupSeconds: 3,
    semiSyncSeconds: 8,
    catchUpChanges: 200_000,
    bootstrapKeys: 100_000,
    memoryKeys: 1_000_000,
    wireChanges: 10_000,
    wireRate: 1000,
    wireSettleMs: 1500,
    yjsEdits: 200,
    latencyOps: 2000,
    scaleNodes: 16,
    scaleBaseNodes: 3,
    scaleRate: 200,
    scaleSeconds: 10,
    scaleIdleSeconds: 5,
    scaleWarmupSeconds: 3,
    valueBytes: 100,
    inflight: 64,
    httpConnections: 64,
  },
  quick: {
    embeddedOps: 20_000,
    embeddedFsyncOps: 10_000,
    embeddedRounds: 1,
    httpSeconds: 2,
    httpWarmupSeconds: 1,
    lagSeconds: 2,
    lagProbeSeconds: 1.5,
    lagRate: 1000,
    lagWarmupSeconds: 2,
    throughputSeconds: 2,
    throughputAttempts: 3,
    throughputWarmupSeconds: 1,
    semiSyncSeconds: 2,
    catchUpChanges: 20_000,
    bootstrapKeys: 10_000,
    memoryKeys: 100_000,
    wireChanges: 1000,
    wireRate: 1000,
    wireSettleMs: 1100,
    yjsEdits: 200,
    latencyOps: 500,
    scaleNodes: 16,
    scaleBaseNodes: 3,
    scaleRate: 200,
    scaleSeconds: 3,
    scaleIdleSeconds: 2,
    scaleWarmupSeconds: 1,
    valueBytes: 100,
    inflight: 64,
    httpConnections: 64,
  },
  smoke: {
    embeddedOps: 400,
    embeddedFsyncOps: 200,
    embeddedRounds: 1,
    httpSeconds: 0.5,
    httpWarmupSeconds: 0,
    lagSeconds: 0.5,
    lagProbeSeconds: 0.5,
    lagRate: 300,
    lagWarmupSeconds: 0.3,
    throughputSeconds: 0.5,
    throughputAttempts: 1,
    throughputWarmupSeconds: 0.3,
    semiSyncSeconds: 1,
    catchUpChanges: 300,
    bootstrapKeys: 300,
    memoryKeys: 300,
    wireChanges: 200,
    wireRate: 400,
    wireSettleMs: 300,
    yjsEdits: 20,
    latencyOps: 30,
    scaleNodes: 4,
    scaleBaseNodes: 3,
    scaleRate: 100,
    scaleSeconds: 1,
    scaleIdleSeconds: 0.5,
    scaleWarmupSeconds: 0.3,
    valueBytes: 100,
    inflight: 64,
    httpConnections: 16,
  },
}

export interface Options {
  mode: Mode
  sizes: Sizes
  only: string[] | null
  out: string
  command: string
}

export function parseArgs(argv: readonly string[]): Options {
  const flags = parseFlags(argv, {
    quick: { type: 'boolean' },
    smoke: { type: 'boolean' },
    full: { type: 'boolean' },
    only: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  })
  if (flags.help === true) {
    process.stdout.write('usage: npm run bench -- [--quick | --smoke] [--only name1,name2] [--out file.json]\n')
    process.exit(0)
  }
  const mode: Mode = flags.smoke === true ? 'smoke' : flags.quick === true ? 'quick' : 'full'
  const only = flags.only === undefined ? null : flags.only.split(',').filter(Boolean)
  const command = ['npm run bench', ...(argv.length > 0 ? ['--', ...argv] : [])].join(' ')
  return {
    mode,
    sizes: SIZES[mode],
    only,
    out: flags.out ?? (mode === 'smoke' ? 'bench/results/smoke.json' : 'bench/results/latest.json'),
    command,
  }
}
