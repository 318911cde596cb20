/**
 * MeshClient against a real node with auth on (`buildApp(node, { rootToken })`): the root makes
 * tokens, a read token cannot write (MESHKV_ERR_FORBIDDEN), a prefix limits the keys, a revoked
 * token is refused (MESHKV_ERR_UNAUTHENTICATED), and no call goes in without a token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshClient } from '../../src/client/index.js'
import { meshCodeOf, nextWithin } from '../helpers/async.js'
import type { LiveNode } from './helpers.js'
import { startNode } from './helpers.js'

const ROOT = 'root-token-for-the-client-tests-0123456789'
let live: LiveNode
let root: MeshClient

beforeAll(async () => {
  live = await startNode({ rootToken: ROOT })
  root = new MeshClient({ nodes: live.url, token: ROOT })
})

afterAll(async () => {
  await live?.close()
})

const text = (bytes: Uint8Array | undefined): string | undefined =>
  bytes === undefined ? undefined : new TextDecoder().decode(bytes)

describe('MeshClient with tokens against a node with auth on', () => {
  it('no token, or a wrong one: MESHKV_ERR_UNAUTHENTICATED on reads, writes and watches', async () => {
    for (const client of [new MeshClient({ nodes: live.url }), new MeshClient({ nodes: live.url, token: 'wrong' })]) {
      expect(await meshCodeOf(client.get('k'))).toBe('MESHKV_ERR_UNAUTHENTICATED')
      expect(await meshCodeOf(client.put('k', 'v'))).toBe('MESHKV_ERR_UNAUTHENTICATED')
      expect(await meshCodeOf(nextWithin(client.watch(), 3_000, 'the refusal'))).toBe('MESHKV_ERR_UNAUTHENTICATED')
    }
  })

  it('root makes a read token: it reads and watches, it cannot write; revoked, it is refused', async () => {
    await root.put('app/greeting', 'hello')
    const created = await root.createToken({ role: 'read', name: 'reader' })
    expect(created).toMatchObject({ role: 'read', prefix: null, name: 'reader' })
    expect(created.id).toMatch(/^[0-9a-f]{16}$/)
    const reader = new MeshClient({ nodes: live.url, token: created.token })
    expect(text((await reader.get('app/greeting'))?.value)).toBe('hello')
    const controller = new AbortController()
    const watch = reader.watch({ prefix: 'app/', signal: controller.signal })
    const event = nextWithin(watch, 5_000, 'the watch event')
    await root.put('app/later', 'x')
    expect((await event).value).toMatchObject({ event: 'put' })
    controller.abort()
    await watch.return(undefined)

    expect(await meshCodeOf(reader.put('app/greeting', 'overwritten'))).toBe('MESHKV_ERR_FORBIDDEN')
    expect(await meshCodeOf(reader.incr('hits'))).toBe('MESHKV_ERR_FORBIDDEN')
    expect(await meshCodeOf(reader.listTokens())).toBe('MESHKV_ERR_FORBIDDEN')
    expect(text((await root.get('app/greeting'))?.value)).toBe('hello')

    const listed = await root.listTokens()
    expect(listed).toContainEqual({
      id: created.id,
      role: 'read',
      prefix: null,
      name: 'reader',
      createdAt: created.createdAt,
    })
    expect(JSON.stringify(listed)).not.toContain(created.token)
    await root.revokeToken(created.id)
    expect(await meshCodeOf(reader.get('app/greeting'))).toBe('MESHKV_ERR_UNAUTHENTICATED')
    expect((await root.listTokens()).map((token) => token.id)).not.toContain(created.id)
    expect(await meshCodeOf(root.revokeToken(created.id))).toBe('MESHKV_ERR_NOT_FOUND')
  })

  it('a write token with a prefix writes under it and nowhere else', async () => {
    const created = await root.createToken({ role: 'write', prefix: 'team/' })
    const writer = new MeshClient({ nodes: live.url, token: created.token })
    await writer.put('team/a', '1')
    expect(await writer.incr('team/count')).toBe(1)
    expect(await meshCodeOf(writer.put('other/a', '1'))).toBe('MESHKV_ERR_FORBIDDEN')
    expect(await meshCodeOf(writer.get('app/greeting'))).toBe('MESHKV_ERR_FORBIDDEN')
    expect(await meshCodeOf(writer.createToken({ role: 'read' }))).toBe('MESHKV_ERR_FORBIDDEN')
  })

  it('an admin token may make tokens', async () => {
    const admin = new MeshClient({ nodes: live.url, token: (await root.createToken({ role: 'admin' })).token })
    const made = await admin.createToken({ role: 'read', prefix: 'x/' })
    expect(made).toMatchObject({ role: 'read', prefix: 'x/', name: null })
  })
})
