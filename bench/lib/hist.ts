/** Latency histograms (hdr-histogram-js), recorded in microseconds, reported in milliseconds. */
import * as hdr from 'hdr-histogram-js'

export interface LatencySummary {
  count: number
  p50_ms: number
  p99_ms: number
  max_ms: number
  mean_ms: number
}

export class Latencies {
  readonly #histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 600_000_000,
    numberOfSignificantValueDigits: 3,
  })
  /** Samples below zero (recorded as 0): e.g. a change visible on a peer before its ack arrived. */
  negative = 0

  recordMs(ms: number): void {
    if (ms < 0) this.negative++
    this.#histogram.recordValue(Math.max(0, Math.round(ms * 1000)))
  }

  get count(): number {
    return this.#histogram.totalCount
  }

  summary(): LatencySummary {
    const h = this.#histogram
    const ms = (us: number): number => Math.round(us) / 1000
    // A percentile is the top of its bucket (3 significant digits) while maxValue is the exact
    // largest sample: with few samples p99 falls in the max's bucket and would exceed the max.
    const at = (percentile: number): number => Math.min(h.getValueAtPercentile(percentile), h.maxValue)
    return {
      count: h.totalCount,
      p50_ms: ms(at(50)),
      p99_ms: ms(at(99)),
      max_ms: ms(h.maxValue),
      mean_ms: ms(h.mean),
    }
  }
}
