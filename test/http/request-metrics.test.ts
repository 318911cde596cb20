/**
 * The per-request metrics (src/http/request-metrics.ts) keep their own counts and hand them to
 * prom-client when scraped: what a scrape shows must be what prom-client's own counter and
 * histogram showed for the same requests (cumulative buckets, `le` bounds inclusive, +Inf, sum,
 * count; answers by status), and a second scrape must not count a request twice.
 */
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { RequestMetrics } from '../../src/http/request-metrics.js'
import { parseExposition } from '../support/prometheus.js'

const BUCKETS = [0.001, 0.01, 0.1]
const DURATION = 'meshkv_http_request_duration_seconds'
const REQUESTS = 'meshkv_http_requests_total'

describe('request metrics', () => {
  it('scrape as a counter by route, method and status and a histogram by route and method', async () => {
    const registry = new Registry()
    const metrics = new RequestMetrics(registry, BUCKETS)
    const route = { route: '/v1/kv/*', method: 'GET' }
    for (const seconds of [0.0005, 0.001, 0.002, 0.1, 5]) metrics.observe(route.route, route.method, 200, seconds)
    metrics.observe(route.route, route.method, 404, 0.0001)
    metrics.observe('/v1/kv/*', 'PUT', 200, 0.05)

    const scraped = parseExposition(await registry.metrics())
    expect(scraped.types.get(REQUESTS)).toBe('counter')
    expect(scraped.types.get(DURATION)).toBe('histogram')
    expect(scraped.value(REQUESTS, { ...route, status: '200' })).toBe(5)
    expect(scraped.value(REQUESTS, { ...route, status: '404' })).toBe(1)
    expect(scraped.value(REQUESTS, { route: '/v1/kv/*', method: 'PUT', status: '200' })).toBe(1)
    const buckets = ['0.001', '0.01', '0.1', '+Inf'].map((le) => scraped.value(`${DURATION}_bucket`, { ...route, le }))
    expect(buckets).toEqual([3, 4, 5, 6])
    expect(scraped.value(`${DURATION}_count`, route)).toBe(6)
    expect(scraped.value(`${DURATION}_sum`, route)).toBeCloseTo(0.0005 + 0.001 + 0.002 + 0.1 + 5 + 0.0001, 9)
    expect(scraped.value(`${DURATION}_count`, { route: '/v1/kv/*', method: 'PUT' })).toBe(1)

    metrics.observe(route.route, route.method, 200, 0.02)
    const again = parseExposition(await registry.metrics())
    expect(again.value(REQUESTS, { ...route, status: '200' })).toBe(6)
    expect(again.value(REQUESTS, { ...route, status: '404' })).toBe(1)
    expect(again.value(`${DURATION}_bucket`, { ...route, le: '0.1' })).toBe(6)
    expect(again.value(`${DURATION}_count`, route)).toBe(7)
  })

  it('answer the same through the registry as JSON', async () => {
    const registry = new Registry()
    new RequestMetrics(registry, BUCKETS).observe('/metrics', 'GET', 200, 0.003)
    const json = await registry.getMetricsAsJSON()
    const duration = json.find((metric) => metric.name === DURATION) as { values: { labels: object; value: number }[] }
    expect(duration.values).toContainEqual(
      expect.objectContaining({ labels: { le: 0.01, route: '/metrics', method: 'GET' }, value: 1 }),
    )
  })
})
