import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness({ app: { bodyBytesMax: 1024 } })
})

afterAll(async () => {
  await h.close()
})

function add(name: string, payload?: string, contentType = 'application/json') {
  return h.app.inject({
    method: 'POST',
    url: `/v1/counters/${name}`,
    ...(payload === undefined ? {} : { payload, headers: { 'content-type': contentType } }),
  })
}

describe('/v1/counters/:name', () => {
  it('reads 0 for a counter never written', async () => {
    const response = await h.app.inject({ url: '/v1/counters/fresh' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ name: 'fresh', value: 0 })
    expect(response.headers['x-causal-token']).toMatch(/^c1\./)
  })

  it('adds the delta, 1 when the body is empty, and answers value and token', async () => {
    const first = await add('hits', '{"delta": 5}')
    expect(first.statusCode).toBe(200)
    expect(first.json()).toEqual({ name: 'hits', value: 5, token: expect.stringMatching(/^c1\./) })
    expect(first.headers['x-causal-token']).toBe(first.json().token)
    expect((await add('hits')).json().value).toBe(6)
    expect((await add('hits', '')).json().value).toBe(7)
    expect((await add('hits', '{}')).json().value).toBe(8)
    expect((await add('hits', '{"delta": -10}')).json().value).toBe(-2)
    const read = await h.app.inject({ url: '/v1/counters/hits', headers: { 'x-causal-token': first.json().token } })
    expect(read.json()).toEqual({ name: 'hits', value: -2 })
  })

  it('takes percent-encoded and prototype names, and long ones up to the key limit', async () => {
    for (const name of ['__proto__', 'a/b', 'ü ☃']) {
      const response = await add(encodeURIComponent(name), '{"delta": 2}')
      expect(response.json()).toEqual({ name, value: 2, token: expect.any(String) })
      expect((await h.app.inject({ url: `/v1/counters/${encodeURIComponent(name)}` })).json()).toEqual({
        name,
        value: 2,
      })
    }
    const long = 'n'.repeat(h.node.limits.keyBytesMax)
    expect((await add(long, '{"delta": 1}')).statusCode).toBe(200)
    expectProblem(await add(`${long}n`, '{"delta": 1}'), 'MESHKV_ERR_KEY_TOO_LARGE')
  })

  it('refuses a zero, fractional, huge or non-numeric delta, and unknown fields', async () => {
    for (const body of [
      '{"delta": 0}',
      '{"delta": 1.5}',
      '{"delta": 1e300}',
      '{"delta": [1, 2]}',
      '{"delta": {}}',
      '[1]',
      '"x"',
      '{"delta": 1, "extra": true}',
    ]) {
      const response = await add('strict', body)
      expect({ body, code: response.json().code }).toEqual({
        body,
        code: expect.stringMatching(/^MESHKV_ERR_INVALID_ARGUMENT$/),
      })
      expectProblem(response, 'MESHKV_ERR_INVALID_ARGUMENT')
    }
    expect((await h.app.inject({ url: '/v1/counters/strict' })).json().value).toBe(0)
  })

  it('refuses malformed JSON, other media types, an empty name and a body over the limit', async () => {
    expectProblem(await add('bad', '{"delta":'), 'MESHKV_ERR_MALFORMED_JSON')
    expectProblem(await add('bad', '{"__proto__": {"delta": 1}}'), 'MESHKV_ERR_MALFORMED_JSON')
    expectProblem(await add('bad', 'delta=1', 'application/x-www-form-urlencoded'), 'MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE')
    expectProblem(await add('bad', '1', 'text/plain'), 'MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE')
    expectProblem(await add('', '{"delta": 1}'), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await h.app.inject({ url: '/v1/counters/' }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await add('bad', JSON.stringify({ delta: 1, pad: 'x'.repeat(2048) })), 'MESHKV_ERR_BODY_TOO_LARGE')
    expect((await add('bad', '{"delta": 1}')).json().value).toBe(1)
  })
})
