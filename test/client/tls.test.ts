/**
 * MeshClient against a real node serving HTTPS with a certificate from a private CA made here:
 * with `ca` it works (watch streams too), without it, or with another CA, it fails with a clear
 * MESHKV_ERR_UNREACHABLE that names the CA, and the node never got the request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { MeshError } from '../../src/errors.js'
import type { TestPki } from '../support/certs.js'
import { makeTestPki } from '../support/certs.js'
import { nextWithin, rejectionOf } from '../helpers/async.js'
import type { LiveNode } from './helpers.js'
import { startNode } from './helpers.js'

let pki: TestPki
let live: LiveNode
const clients: MeshClient[] = []

beforeAll(async () => {
  pki = await makeTestPki()
  live = await startNode({ tls: { cert: pki.leaf.cert, key: pki.leaf.key } })
})

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()))
  await live?.close()
})

function client(options: { ca?: string | Uint8Array; nodes?: string } = {}): MeshClient {
  const made = new MeshClient({ nodes: options.nodes ?? live.url, ...options })
  clients.push(made)
  return made
}

describe('MeshClient over HTTPS with a private CA', () => {
  it('the node serves https', () => {
    expect(live.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
  })

  it('with ca: writes, reads and watches', async () => {
    const trusting = client({ ca: pki.ca.cert })
    const controller = new AbortController()
    const watch = trusting.watch({ prefix: 'tls/', signal: controller.signal })
    const first = nextWithin(watch, 5_000, 'the watch event')
    await trusting.put('tls/a', 'over tls')
    expect(new TextDecoder().decode((await trusting.get('tls/a'))?.value)).toBe('over tls')
    expect((await first).value).toMatchObject({ event: 'put' })
    controller.abort()
    await watch.return(undefined)
  })

  it('the host name counts too: localhost is in the certificate, so it works by name', async () => {
    const byName = client({ ca: pki.ca.cert, nodes: live.url.replace('127.0.0.1', 'localhost') })
    expect((await byName.status()).nodeId).toBe(live.node.nodeId)
  })

  it.each([
    ['no ca (the system CAs)', undefined],
    ['another CA', 'other'],
  ] as const)('with %s: a clear error, and no request reached the node', async (_what, which) => {
    const before = live.node.status().lsn
    const untrusting = client(which === undefined ? {} : { ca: pki.otherCa.cert })
    const error = await rejectionOf(untrusting.put('tls/b', 'never'))
    expect(error).toBeInstanceOf(MeshError)
    expect((error as MeshError).code).toBe('MESHKV_ERR_UNREACHABLE')
    expect((error as MeshError).message).toMatch(/not trusted.*ca/i)
    expect(live.node.status().lsn).toBe(before)
  })
})
