/**
 * Hostile HTTP against a REAL node process over real sockets (docs/testing.md, "Hostile input"):
 * header floods (ws CVE-2024-37890) on data routes and on /v1/peer, a long
 * Sec-WebSocket-Protocol (CVE-2021-32640), 500 half-open sockets, malformed and huge bodies, and
 * keys `__proto__`, empty, not UTF-8 and over the limit. After each the node keeps serving within a
 * second and has stored nothing it should not (its log position counts exactly the accepted writes).
 *
 * test/http/*.test.ts check the same answers through fastify's `inject` (no socket); here the bytes
 * go through Node's HTTP parser and the node's own limits, as a client on the network sends them.
 */
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RealNode } from './helpers.js'
import { footprint, rawStatus, request, startRealNode, stopAllNodes } from './helpers.js'

let node: RealNode
let host: string

beforeAll(async () => {
  node = await startRealNode()
  host = `127.0.0.1:${node.port}`
}, 60_000)

afterAll(async () => {
  await node?.stop()
  await stopAllNodes()
})

/**
 * Plain requests are answered and a write still lands and reads back (the timeouts are liveness
 * bounds, not measurements: timing belongs in bench/).
 */
async function stillServing(): Promise<void> {
  expect((await request(`${node.url}/v1/status`, { timeoutMs: 5_000 })).status).toBe(200)
  const value = `yes ${Math.random()}`
  expect((await request(`${node.url}/v1/kv/serving`, { method: 'PUT', body: value, timeoutMs: 5_000 })).status).toBe(
    200,
  )
  expect((await request(`${node.url}/v1/kv/serving`, { timeoutMs: 5_000 })).text).toBe(value)
}

function upgradeRequest(extra: string[] = [], path = '/v1/peer'): string {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ...extra,
    '',
    '',
  ].join('\r\n')
}

describe('header floods', () => {
  it('2,000 request headers are refused on a data route and on /v1/peer; 100 headers on /v1/peer get 431; the node keeps serving', async () => {
    const before = await footprint(node)
    const filler = Array.from({ length: 2_000 }, (_, index) => `X-Filler-${index}: v`)
    const onData = await rawStatus(node.port, [
      [
        `PUT /v1/kv/flooded HTTP/1.1`,
        `Host: ${host}`,
        'Content-Length: 1',
        'Connection: close',
        ...filler,
        '',
        'x',
      ].join('\r\n'),
    ])
    const onPeer = await rawStatus(node.port, [upgradeRequest(filler)])
    const hundred = await rawStatus(node.port, [upgradeRequest(filler.slice(0, 100))])
    console.log(
      `MEASURED header floods: 2,000 headers on PUT /v1/kv → ${onData.status}, on /v1/peer → ${onPeer.status}; 100 headers on /v1/peer → ${hundred.status}`,
    )
    expect(onData.status).toBe(431)
    expect(onPeer.status).toBe(431)
    expect(hundred.status).toBe(431)
    expect((await request(`${node.url}/v1/kv/flooded`)).status).toBe(404)
    expect(await footprint(node)).toEqual(before)
    await stillServing()
  })

  it('a 10 kB Sec-WebSocket-Protocol on /v1/peer is refused with 400', async () => {
    const protocols = Array.from({ length: 1_500 }, (_, index) => `p${index}`).join(', ')
    const answer = await rawStatus(node.port, [
      upgradeRequest([`Sec-WebSocket-Protocol: ${protocols}${'x'.repeat(Math.max(0, 10_000 - protocols.length))}`]),
    ])
    expect(answer.status).toBe(400)
    await stillServing()
  })
})

describe('half-open sockets', () => {
  it('500 half-open sockets (silent, half a request line, half the headers, half a body, half an upgrade): plain requests still answer within a second', async () => {
    const before = await footprint(node)
    const sockets: net.Socket[] = []
    try {
      await Promise.all(
        Array.from(
          { length: 500 },
          (_, index) =>
            new Promise<void>((resolve) => {
              const socket = net.connect(node.port, '127.0.0.1', () => {
                const halves = [
                  '',
                  'GET /v1/kv/x HT',
                  `PUT /v1/kv/halfopen/${index} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: text/plain\r\n`,
                  `PUT /v1/kv/halfopen/${index} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 1000\r\n\r\nonly ten b`,
                  `GET /v1/peer HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`,
                ]
                const half = halves[index % halves.length] as string
                if (half !== '') socket.write(half)
                resolve()
              })
              socket.on('error', () => resolve())
              sockets.push(socket)
            }),
        ),
      )
      const open = sockets.filter((socket) => !socket.destroyed).length
      // Every plain request is answered while they are held (5 s is a liveness bound only).
      for (let i = 0; i < 40; i++) {
        const answer =
          i % 3 === 0
            ? await request(`${node.url}/v1/kv/during/${i}`, { method: 'PUT', body: `v${i}`, timeoutMs: 5_000 })
            : i % 3 === 1
              ? await request(`${node.url}/v1/kv?prefix=during/`, { timeoutMs: 5_000 })
              : await request(`${node.url}/v1/status`, { timeoutMs: 5_000 })
        expect({ i, status: answer.status }).toEqual({ i, status: 200 })
      }
      expect(open).toBe(500)
    } finally {
      for (const socket of sockets) socket.destroy()
    }
    // A sentinel write after the sockets are gone: once it has landed, the node has seen them
    // close. None of the half-sent writes landed; only the 14 whole PUTs and the sentinel did.
    expect((await request(`${node.url}/v1/kv/during/sentinel`, { method: 'PUT', body: 's' })).status).toBe(200)
    const after = await footprint(node)
    expect(after.lsn).toBe(before.lsn + 15)
    expect(((await request(`${node.url}/v1/kv?prefix=halfopen/`)).json?.['items'] as unknown[]).length).toBe(0)
    await stillServing()
  })
})

describe('malformed and huge bodies', () => {
  it('malformed bodies are refused as problems and store nothing', async () => {
    const before = await footprint(node)
    const json = { 'content-type': 'application/json' }
    const answers = {
      kvNotJson: await request(`${node.url}/v1/kv/bad/json`, { method: 'PUT', headers: json, body: '{"unterminated' }),
      kvNotUtf8: await request(`${node.url}/v1/kv/bad/utf8`, {
        method: 'PUT',
        headers: json,
        body: Buffer.from([0x22, 0xff, 0xfe, 0x22]),
      }),
      counterTruncated: await request(`${node.url}/v1/counters/bad`, {
        method: 'POST',
        headers: json,
        body: '{"delta":',
      }),
      counterProto: await request(`${node.url}/v1/counters/bad`, {
        method: 'POST',
        headers: json,
        body: '{"__proto__":{"delta":5}}',
      }),
      counterText: await request(`${node.url}/v1/counters/bad`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: '5',
      }),
      counterFloat: await request(`${node.url}/v1/counters/bad`, {
        method: 'POST',
        headers: json,
        body: '{"delta":1e400}',
      }),
      setShape: await request(`${node.url}/v1/sets/bad`, {
        method: 'POST',
        headers: json,
        body: '{"add":"not a list"}',
      }),
      setConstructor: await request(`${node.url}/v1/sets/bad`, {
        method: 'POST',
        headers: json,
        body: '{"constructor":{"prototype":{"polluted":1}}}',
      }),
    }
    const raw = {
      badChunk: await rawStatus(node.port, [
        `PUT /v1/kv/bad/chunk HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
      ]),
      smuggled: await rawStatus(node.port, [
        `PUT /v1/kv/bad/smuggle HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      ]),
      shortBody: await rawStatus(
        node.port,
        [
          `PUT /v1/kv/bad/short HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly ten b`,
        ],
        2_000,
      ).catch(() => ({ status: -1, text: 'no answer (the node waits for the rest)' })),
      badLength: await rawStatus(node.port, [
        `PUT /v1/kv/bad/length HTTP/1.1\r\nHost: ${host}\r\nContent-Length: -5\r\nConnection: close\r\n\r\n`,
      ]),
    }
    console.log(
      `MEASURED malformed bodies: ${JSON.stringify(Object.fromEntries(Object.entries(answers).map(([name, answer]) => [name, `${answer.status} ${String(answer.json?.['code'] ?? '')}`])))}; raw: ${JSON.stringify(Object.fromEntries(Object.entries(raw).map(([name, answer]) => [name, answer.status])))}`,
    )
    for (const answer of Object.values(answers)) {
      expect(answer.status).toBeGreaterThanOrEqual(400)
      expect(answer.status).toBeLessThan(500)
      expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(answer.text).not.toMatch(/\bat .+:\d+:\d+/)
    }
    expect(answers.kvNotJson.json?.['code']).toBe('MESHKV_ERR_MALFORMED_JSON')
    expect(answers.counterText.json?.['code']).toBe('MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE')
    for (const name of ['badChunk', 'smuggled', 'badLength'] as const) expect(raw[name].status).toBe(400)
    expect([-1, 0, 400]).toContain(raw.shortBody.status)
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
    expect(((await request(`${node.url}/v1/kv?prefix=bad/`)).json?.['items'] as unknown[]).length).toBe(0)
    expect((await request(`${node.url}/v1/counters/bad`)).json?.['value']).toBe(0)
    expect(await footprint(node)).toEqual(before)
    await stillServing()
  })

  it('huge bodies: a 10 GB Content-Length is refused at once, a 64 MiB chunked stream is cut off at the limit, memory stays bounded', async () => {
    const before = await footprint(node)
    const rssBefore = await node.rssBytes()
    // Only 4 of the 10 GB are ever sent: an answer at all shows the node refused it without waiting.
    const declared = await rawStatus(node.port, [
      `PUT /v1/kv/huge/declared HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 10737418240\r\nConnection: close\r\n\r\nxxxx`,
    ])
    // A 2 MiB JSON body announced by its Content-Length, the first 64 KiB sent (a node that answers
    // before reading the rest resets the connection, and the answer with it, if the rest were sent).
    const counterPayload = `{"delta":1,"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`
    const counterBody = await rawStatus(node.port, [
      `POST /v1/counters/huge HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${counterPayload.length}\r\nConnection: close\r\n\r\n`,
      counterPayload.slice(0, 65_536),
    ])

    // 64 MiB in 64 KiB chunks, as fast as the node takes them, until it answers or closes.
    const streamed = await new Promise<{ status: number; sentBytes: number }>((resolve) => {
      const socket = net.connect(node.port, '127.0.0.1')
      let text = ''
      let sentBytes = 0
      let done = false
      const finish = (): void => {
        if (done) return
        done = true
        socket.destroy()
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/u.exec(text)?.[1] ?? 0), sentBytes })
      }
      socket.on('data', (chunk) => {
        text += chunk.toString('latin1')
        if (text.includes('\r\n\r\n')) finish()
      })
      socket.on('error', finish)
      socket.on('close', finish)
      const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 'y'), Buffer.from('\r\n')])
      const pump = (): void => {
        while (!done && sentBytes < 64 * 1024 * 1024) {
          sentBytes += 0x10000
          if (!socket.write(chunk)) {
            socket.once('drain', pump)
            return
          }
        }
        if (!done) socket.write('0\r\n\r\n')
      }
      socket.on('connect', () => {
        socket.write(
          `PUT /v1/kv/huge/streamed HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n`,
        )
        pump()
      })
    })
    const rssAfter = await node.rssBytes()
    console.log(
      `MEASURED huge bodies: Content-Length 10 GB → ${declared.status}; 2 MiB counter body → ${counterBody.status} ${/MESHKV_ERR_\w+/u.exec(counterBody.text)?.[0] ?? ''}; ` +
        `64 MiB chunked PUT → ${streamed.status} after ${Math.round(streamed.sentBytes / 2 ** 20)} MiB sent; node RSS ${Math.round(rssBefore / 2 ** 20)} → ${Math.round(rssAfter / 2 ** 20)} MiB`,
    )
    expect(declared.status).toBe(413)
    expect(declared.text).toContain('"code":"MESHKV_ERR_VALUE_TOO_LARGE"')
    expect(counterBody.status).toBe(413)
    expect(counterBody.text).toContain('MESHKV_ERR_BODY_TOO_LARGE')
    expect([0, 413]).toContain(streamed.status)
    expect(streamed.sentBytes).toBeLessThan(64 * 1024 * 1024)
    expect(rssAfter - rssBefore).toBeLessThan(48 * 2 ** 20)
    expect(((await request(`${node.url}/v1/kv?prefix=huge/`)).json?.['items'] as unknown[]).length).toBe(0)
    expect(await footprint(node)).toEqual(before)
    await stillServing()
  })
})

describe('keys', () => {
  it('__proto__ and other Object.prototype names are plain keys, counters, sets and members', async () => {
    expect((await request(`${node.url}/v1/kv/__proto__`, { method: 'PUT', body: 'proto value' })).status).toBe(200)
    expect((await request(`${node.url}/v1/kv/__proto__`)).text).toBe('proto value')
    for (const name of ['constructor', 'toString', 'hasOwnProperty', 'prototype'])
      expect((await request(`${node.url}/v1/kv/${name}`)).status).toBe(404)
    const listed = (await request(`${node.url}/v1/kv?prefix=__`)).json?.['items'] as { key: string }[]
    expect(listed.map((item) => item.key)).toEqual(['__proto__'])
    expect(
      (
        await request(`${node.url}/v1/counters/__proto__`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"delta":2}',
        })
      ).json?.['value'],
    ).toBe(2)
    const members = (
      await request(`${node.url}/v1/sets/__proto__`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"add":["__proto__","constructor"]}',
      })
    ).json?.['members']
    expect((members as string[]).sort()).toEqual(['__proto__', 'constructor'])
    expect((await request(`${node.url}/v1/sets/__proto__?member=__proto__`)).json?.['has']).toBe(true)
    expect(({} as Record<string, unknown>)['proto value']).toBeUndefined()
  })

  it('empty, not UTF-8 and over-limit keys, names and members are refused and store nothing; exactly 1,024 bytes is taken', async () => {
    const before = await footprint(node)
    const json = { 'content-type': 'application/json' }
    const refused: Record<string, Awaited<ReturnType<typeof request>>> = {
      emptyKey: await request(`${node.url}/v1/kv/`, { method: 'PUT', body: 'x' }),
      emptyCounter: await request(`${node.url}/v1/counters/`, { method: 'POST', headers: json, body: '{}' }),
      notUtf8: await request(`${node.url}/v1/kv/%FF%FE`, { method: 'PUT', body: 'x' }),
      surrogate: await request(`${node.url}/v1/kv/a%ED%A0%80b`, { method: 'PUT', body: 'x' }),
      overlongUtf8: await request(`${node.url}/v1/kv/%C0%AF`, { method: 'PUT', body: 'x' }),
      notUtf8Counter: await request(`${node.url}/v1/counters/%FF`, { method: 'POST', headers: json, body: '{}' }),
      surrogateMember: await request(`${node.url}/v1/sets/odd`, {
        method: 'POST',
        headers: json,
        body: '{"add":["\\ud800"]}',
      }),
      emptyMember: await request(`${node.url}/v1/sets/odd`, { method: 'POST', headers: json, body: '{"add":[""]}' }),
      keyOver: await request(`${node.url}/v1/kv/${'k'.repeat(1025)}`, { method: 'PUT', body: 'x' }),
      keyOverMultibyte: await request(`${node.url}/v1/kv/${encodeURIComponent('€'.repeat(342))}`, {
        method: 'PUT',
        body: 'x',
      }),
      counterOver: await request(`${node.url}/v1/counters/${'c'.repeat(1025)}`, {
        method: 'POST',
        headers: json,
        body: '{}',
      }),
      memberOver: await request(`${node.url}/v1/sets/odd`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ add: ['m'.repeat(1025)] }),
      }),
      keyHuge: await request(`${node.url}/v1/kv/${'k'.repeat(60_000)}`, { method: 'PUT', body: 'x' }),
    }
    console.log(
      `MEASURED refused keys: ${JSON.stringify(Object.fromEntries(Object.entries(refused).map(([name, answer]) => [name, `${answer.status} ${String(answer.json?.['code'] ?? '')}`])))}`,
    )
    for (const [name, answer] of Object.entries(refused)) {
      expect({ name, status: answer.status >= 400 && answer.status < 500 }).toEqual({ name, status: true })
      expect(answer.text).not.toMatch(/\bat .+:\d+:\d+/)
    }
    expect(refused['notUtf8']?.json?.['code']).toBe('MESHKV_ERR_INVALID_KEY')
    expect(refused['keyOver']?.json?.['code']).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(refused['keyOverMultibyte']?.json?.['code']).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(await footprint(node)).toEqual(before)
    const exact = await request(`${node.url}/v1/kv/${'k'.repeat(1024)}`, { method: 'PUT', body: 'x' })
    expect(exact.status).toBe(200)
    expect((await node.status()).lsn).toBe(before.lsn + 1)
    await stillServing()
  })
})
