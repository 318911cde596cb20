import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Harness } from './helpers.js'
import { expectProblem, openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
})

afterAll(async () => {
  await h.close()
})

function update(name: string, body: unknown, contentType = 'application/json') {
  return h.app.inject({
    method: 'POST',
    url: `/v1/sets/${name}`,
    payload: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': contentType },
  })
}

describe('/v1/sets/:name', () => {
  it('reads an empty set that was never written', async () => {
    const response = await h.app.inject({ url: '/v1/sets/none' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ name: 'none', members: [] })
    expect(response.headers['x-causal-token']).toMatch(/^c1\./)
  })

  it('adds and removes in one change, answering members and token', async () => {
    const before = h.node.status().lsn
    const added = await update('tags', { add: ['red', 'green', 'blue'] })
    expect(added.statusCode).toBe(200)
    expect(added.json()).toEqual({
      name: 'tags',
      members: ['blue', 'green', 'red'],
      token: expect.stringMatching(/^c1\./),
    })
    expect(added.headers['x-causal-token']).toBe(added.json().token)
    expect(h.node.status().lsn).toBe(before + 1)

    const both = await update('tags', { add: ['yellow'], remove: ['red', 'green'] })
    expect(both.json().members).toEqual(['blue', 'yellow'])
    expect(h.node.status().lsn).toBe(before + 2)

    expect((await update('tags', { remove: ['blue'] })).json().members).toEqual(['yellow'])
    const read = await h.app.inject({ url: '/v1/sets/tags', headers: { 'x-causal-token': both.json().token } })
    expect(read.json()).toEqual({ name: 'tags', members: ['yellow'] })
  })

  it('answers membership of one member with ?member=', async () => {
    await update('roles', { add: ['admin', '__proto__'] })
    expect((await h.app.inject({ url: '/v1/sets/roles?member=admin' })).json()).toEqual({
      name: 'roles',
      member: 'admin',
      has: true,
    })
    expect((await h.app.inject({ url: '/v1/sets/roles?member=__proto__' })).json()).toEqual({
      name: 'roles',
      member: '__proto__',
      has: true,
    })
    expect((await h.app.inject({ url: '/v1/sets/roles?member=guest' })).json()).toEqual({
      name: 'roles',
      member: 'guest',
      has: false,
    })
    expect((await h.app.inject({ url: `/v1/sets/roles?member=${encodeURIComponent('a&b=c')}` })).json()).toEqual({
      name: 'roles',
      member: 'a&b=c',
      has: false,
    })
    expectProblem(await h.app.inject({ url: '/v1/sets/roles?member=' }), 'MESHKV_ERR_INVALID_KEY')
  })

  it('refuses bodies of the wrong shape', async () => {
    for (const body of [{}, { add: 'x' }, { add: [1] }, { add: ['x'], other: [] }, [], 'null']) {
      const response = await update('shape', body)
      expect({ body, code: response.json().code }).toEqual({ body, code: 'MESHKV_ERR_INVALID_ARGUMENT' })
      expectProblem(response, 'MESHKV_ERR_INVALID_ARGUMENT')
    }
    expectProblem(await update('shape', { add: [''] }), 'MESHKV_ERR_INVALID_KEY')
    expectProblem(await update('shape', { add: ['x'], remove: ['x'] }), 'MESHKV_ERR_BATCH_INVALID')
    expectProblem(await update('shape', ''), 'MESHKV_ERR_MALFORMED_JSON')
    expectProblem(await update('shape', '{"add": ['), 'MESHKV_ERR_MALFORMED_JSON')
    expectProblem(await update('shape', 'x', 'text/plain'), 'MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE')
    expectProblem(await h.app.inject({ method: 'POST', url: '/v1/sets/shape' }), 'MESHKV_ERR_INVALID_ARGUMENT')
    expectProblem(await update('', { add: ['x'] }), 'MESHKV_ERR_INVALID_KEY')
    expect((await h.app.inject({ url: '/v1/sets/shape' })).json().members).toEqual([])
  })
})
