/**
 * The two per-request metrics, `meshkv_http_requests_total` and
 * `meshkv_http_request_duration_seconds`, counted without prom-client on the request path.
 *
 * prom-client's `inc(labels)` and `observe(labels, v)` validate and hash the label object on
 * every call; at tens of thousands of requests a second that was a measurable share of a GET's
 * CPU (docs/performance.md). Here a request adds to its series in nested Maps (route, method,
 * status: the route is the route pattern, so the series stay few), and prom-client reads the
 * totals only when `/metrics` is scraped: the counter through its public `inc` in `collect`, the
 * histogram by answering its export (`RouteDurations`). The text exposed is the same as before.
 */
import type { MetricObjectWithValues, MetricType, MetricValueWithName, Registry } from 'prom-client'
import { Counter, Histogram } from 'prom-client'

/** The histogram's labels, and the bucket label its export adds. */
type RouteLabel = 'route' | 'method' | 'le'
type Export = MetricObjectWithValues<MetricValueWithName<RouteLabel>>

/** One route and method: its durations by bucket, and its answers by status not yet handed to the counter. */
interface RouteSeries {
  readonly labels: { route: string; method: string }
  /** Requests per bucket (not cumulative): index i counts durations in (bounds[i-1], bounds[i]]. */
  readonly buckets: number[]
  count: number
  sum: number
  readonly statuses: Map<number, number>
}

export class RequestMetrics {
  readonly #bounds: readonly number[]
  readonly #routes = new Map<string, Map<string, RouteSeries>>()
  readonly #series: RouteSeries[] = []

  constructor(registry: Registry, buckets: readonly number[]) {
    this.#bounds = buckets
    const series = this.#series
    new Counter({
      name: 'meshkv_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status.',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
      collect() {
        for (const { labels, statuses } of series) {
          for (const [status, count] of statuses) this.inc({ ...labels, status: String(status) }, count)
          statuses.clear()
        }
      },
    })
    new RouteDurations(
      {
        name: 'meshkv_http_request_duration_seconds',
        help: 'Time from receiving an HTTP request to finishing its answer, by route pattern and method.',
        labelNames: ['route', 'method'] as const,
        buckets: [...buckets],
        registers: [registry],
      },
      series,
    )
  }

  observe(route: string, method: string, status: number, seconds: number): void {
    let methods = this.#routes.get(route)
    if (methods === undefined) this.#routes.set(route, (methods = new Map()))
    let series = methods.get(method)
    if (series === undefined) {
      series = { labels: { route, method }, buckets: this.#bounds.map(() => 0), count: 0, sum: 0, statuses: new Map() }
      methods.set(method, series)
      this.#series.push(series)
    }
    series.count++
    series.sum += seconds
    const bucket = bucketOf(this.#bounds, seconds)
    if (bucket < series.buckets.length) series.buckets[bucket] = (series.buckets[bucket] as number) + 1
    series.statuses.set(status, (series.statuses.get(status) ?? 0) + 1)
  }
}

function bucketOf(bounds: readonly number[], value: number): number {
  let index = 0
  while (index < bounds.length && value > (bounds[index] as number)) index++
  return index
}

/**
 * A histogram whose values are the series above: prom-client's own export shape (cumulative
 * `_bucket` lines with `le` first, then `+Inf`, `_sum`, `_count`), made when scraped. The registry
 * asks a histogram for `getForPromString` (prom-client 15) and others for `get`: both answer it.
 */
class RouteDurations extends Histogram<RouteLabel> {
  readonly #series: readonly RouteSeries[]
  readonly #meta: { name: string; help: string; bounds: readonly number[] }

  constructor(
    config: ConstructorParameters<typeof Histogram<RouteLabel>>[0] & { buckets: number[] },
    series: readonly RouteSeries[],
  ) {
    super(config)
    this.#series = series
    this.#meta = { name: config.name, help: config.help, bounds: config.buckets }
  }

  override async get(): Promise<Export> {
    return this.getForPromString()
  }

  async getForPromString(): Promise<Export> {
    const { name, help, bounds } = this.#meta
    const values: MetricValueWithName<RouteLabel>[] = []
    for (const { labels, buckets, count, sum } of this.#series) {
      let below = 0
      bounds.forEach((le, index) => {
        below += buckets[index] as number
        values.push({ labels: { le, ...labels }, value: below, metricName: `${name}_bucket` })
      })
      values.push({ labels: { le: '+Inf', ...labels }, value: count, metricName: `${name}_bucket` })
      values.push({ labels, value: sum, metricName: `${name}_sum` })
      values.push({ labels, value: count, metricName: `${name}_count` })
    }
    return {
      name,
      help, // prom-client declares MetricType as an enum it does not export at run time.
      type: 'histogram' as unknown as MetricType,
      aggregator: 'sum',
      collect: () => undefined,
      values,
    }
  }
}
