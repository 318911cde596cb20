/**
 * Request loggers made on first use (src/http/request-logger.ts): a request that logs nothing at
 * the logger's level makes no pino child, and one that does logs as a pino child would, with
 * the request id on every line and the authorization header still redacted.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/http/app.js'
import { lazyChildLogger } from '../../src/http/request-logger.js'
import type { Harness } from './helpers.js'
import { openHarness } from './helpers.js'

let h: Harness

beforeAll(async () => {
  h = await openHarness()
})

afterAll(async () => {
  await h.close()
})

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString('utf8'))
      done()
    },
  })
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  return { stream, lines }
}

describe('request loggers', () => {
  it('log only at enabled levels, with their bindings, and make a child for a level or serializers of their own at once', () => {
    const { stream, lines } = capture()
    const parent = pino({ level: 'warn' }, stream)
    const child = lazyChildLogger(parent, { reqId: 'req-7' })
    expect(child.level).toBe('warn')
    child.info('not written')
    child.debug({ some: 'thing' }, 'nor this')
    child.warn({ key: 'k' }, 'written')
    child.child({ more: 1 }).error('from a grandchild')
    expect(lines()).toEqual([
      expect.objectContaining({ reqId: 'req-7', key: 'k', msg: 'written', level: 40 }),
      expect.objectContaining({ reqId: 'req-7', more: 1, msg: 'from a grandchild', level: 50 }),
    ])
    const own = lazyChildLogger(parent, { reqId: 'req-8' }, { level: 'info' })
    own.info('a route at info')
    expect(lines().at(-1)).toEqual(expect.objectContaining({ reqId: 'req-8', msg: 'a route at info' }))
  })

  it('a request at info is logged with its id on both lines and no token; at warn a good one logs nothing', async () => {
    const info = capture()
    const app = await buildApp(h.node, { logger: pino({ level: 'info' }, info.stream) })
    const quiet = capture()
    const warnApp = await buildApp(h.node, { logger: pino({ level: 'warn' }, quiet.stream) })
    try {
      const headers = { authorization: 'Bearer not-a-real-token-but-a-secret-all-the-same' }
      expect((await app.inject({ method: 'PUT', url: '/v1/kv/logged', payload: 'v', headers })).statusCode).toBe(200)
      expect((await warnApp.inject({ url: '/v1/kv/logged', headers })).statusCode).toBe(200)
    } finally {
      await app.close()
      await warnApp.close()
    }
    const lines = info.lines().filter((line) => line['reqId'] !== undefined)
    expect(lines.map((line) => line['msg'])).toEqual(['incoming request', 'request completed'])
    expect(new Set(lines.map((line) => line['reqId'])).size).toBe(1)
    expect(JSON.stringify(info.lines())).not.toContain('a-secret-all-the-same')
    expect(quiet.lines()).toEqual([])
  })
})
