/**
 * kvctl against a real `meshkv node` process serving HTTPS with a certificate from a private CA
 * made here: `--cacert FILE` or `MESHKV_CACERT` makes it trust the CA; without it kvctl exits 5
 * (unreachable) with one line that names the code and says to give the CA.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { makeTestPki } from '../support/certs.js'
import type { RunningChild } from './helpers.js'
import { buildIfStale, cleanEnv, freePort, killAll, kvctl, spawnMeshkv } from './helpers.js'

let root: string
let caFile: string
let otherCaFile: string
let url: string
let server: RunningChild

/** Polls the node's status through a client that trusts the CA, until it answers ready. */
async function waitReadyTls(ca: string, ms = 15_000): Promise<void> {
  const client = new MeshClient({ nodes: url, ca, timeoutMs: 1_000 })
  const deadline = Date.now() + ms
  try {
    while (Date.now() < deadline) {
      const status = await client.status().catch(() => undefined)
      if (status?.ready === true) return
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`meshkv at ${url} was not ready within ${ms} ms; stderr:\n${server.stderr()}`)
  } finally {
    await client.close()
  }
}

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-kvctl-tls-'))
  const pki = await makeTestPki()
  caFile = join(root, 'ca.pem')
  otherCaFile = join(root, 'other-ca.pem')
  const [certFile, keyFile] = [join(root, 'node.pem'), join(root, 'node.key')]
  await Promise.all([
    writeFile(caFile, pki.ca.cert),
    writeFile(otherCaFile, pki.otherCa.cert),
    writeFile(certFile, pki.leaf.cert),
    writeFile(keyFile, pki.leaf.key, { mode: 0o600 }),
  ])
  const port = await freePort()
  url = `https://127.0.0.1:${port}`
  const args = ['node', '--dir', join(root, 'data'), '--port', String(port), '--log-level', 'warn']
  server = spawnMeshkv([...args, '--tls-cert', certFile, '--tls-key', keyFile])
  await waitReadyTls(pki.ca.cert)
}, 60_000)

afterAll(async () => {
  await killAll()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe('kvctl against an HTTPS node with a private CA', () => {
  it('--cacert FILE: put and get', async () => {
    const put = await kvctl(['--node', url, '--cacert', caFile, 'put', 'tls/k', 'hello over tls'])
    expect({ code: put.code, stderr: put.stderr }).toEqual({ code: 0, stderr: '' })
    const get = await kvctl(['--node', url, '--cacert', caFile, 'get', 'tls/k'])
    expect({ code: get.code, out: get.out }).toEqual({ code: 0, out: 'hello over tls' })
  })

  it('MESHKV_CACERT works like --cacert, and the flag wins over it', async () => {
    const env = { ...cleanEnv(), MESHKV_CACERT: caFile }
    expect((await kvctl(['--node', url, 'get', 'tls/k'], { env })).out).toBe('hello over tls')
    const flagWins = await kvctl(['--node', url, '--cacert', otherCaFile, 'get', 'tls/k'], { env })
    expect(flagWins.code).toBe(5)
  })

  it.each([
    ['no CA', []],
    ['another CA', ['--cacert']],
  ] as const)('with %s: exit 5 and one line naming the code and the CA', async (_what, flags) => {
    const args = flags.length === 0 ? [] : [...flags, otherCaFile]
    const result = await kvctl(['--node', url, ...args, 'get', 'tls/k'])
    expect(result.code).toBe(5)
    expect(result.out).toBe('')
    expect(result.stderr).toMatch(/^kvctl: [^\n]*not trusted[^\n]*--cacert[^\n]* \(MESHKV_ERR_UNREACHABLE\)\n$/)
  })
})
