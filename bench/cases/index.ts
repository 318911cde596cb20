/** Every benchmark program, in the order `npm run bench` runs them, and the entries they produce. */
import { catchUpCase } from './catch-up.js'
import { embeddedCase } from './embedded.js'
import { httpCase } from './http.js'
import { lagCase } from './lag.js'
import { memoryCase } from './memory.js'
import { putLatencyCase } from './put-latency.js'
import { scaleCase } from './scale.js'
import { semiSyncCase } from './semi-sync.js'
import { throughputCase } from './throughput.js'
import type { BenchCase } from './types.js'
import { wireCase } from './wire.js'
import { yjsCase } from './yjs.js'

export const CASES: readonly BenchCase[] = [
  embeddedCase,
  httpCase,
  putLatencyCase,
  lagCase,
  throughputCase,
  semiSyncCase,
  catchUpCase,
  memoryCase,
  wireCase,
  yjsCase,
  scaleCase,
]

/** The names of latest.json's entries. */
export const ENTRY_NAMES: readonly string[] = CASES.flatMap((benchCase) => benchCase.names)

/** Entries that carry p50_ms, p99_ms and max_ms. */
export const LATENCY_ENTRIES: readonly string[] = [
  'http_put',
  'http_get',
  'put_latency',
  'replication_lag',
  'replication_lag_80pct',
  'semi_sync',
  'yjs_edit_latency',
  'scale',
]
