/**
 * Client tokens on embedded nodes (src/node/tokens.ts), on real LevelDB: create, list, revoke,
 * authenticate; what reaches the disk; and two nodes linked over real WebSockets, where a token
 * made on one works on the other and a revocation on either holds on both.
 */
import { Level } from 'level'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { CreatedToken, TokenInfo } from '../../src/api/access.js'
import type { MeshNodeOptions } from '../../src/node/index.js'
import { MeshNode } from '../../src/node/index.js'
import { meshCodeOf, takeWithin, tempDir } from '../helpers/async.js'
import { twoLinkedNodes } from './linked.js'

const SECRET = 'tokens-test-cluster-secret'
const TOKEN_TEXT = /^mkv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

const cleanups: (() => Promise<void>)[] = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function dirFor(): Promise<string> {
  const { dir, remove } = await tempDir('tokens')
  cleanups.push(remove)
  return dir
}

async function openNode(options: MeshNodeOptions): Promise<MeshNode> {
  const node = await MeshNode.open(options)
  cleanups.push(() => node.close())
  return node
}

const twoNodes = (): Promise<[MeshNode, MeshNode]> => twoLinkedNodes('tokens', SECRET, cleanups)

describe('tokens on one node', () => {
  it('create answers the token once; list shows it without secret; authenticate knows it', async () => {
    const node = await openNode({ dir: await dirFor(), now: () => Date.UTC(2026, 0, 2) })
    const created = await node.tokens.create({ role: 'write', prefix: 'app/', name: 'ci' })
    const [, id, secret] = TOKEN_TEXT.exec(created.token) ?? []
    expect(created).toEqual({
      id,
      role: 'write',
      prefix: 'app/',
      name: 'ci',
      createdAt: '2026-01-02T00:00:00.000Z',
      token: created.token,
    })
    const plain = await node.tokens.create({ role: 'read' })
    expect(plain).toMatchObject({ role: 'read', prefix: null, name: null })
    const infoOf = ({ token: _token, ...info }: CreatedToken): TokenInfo => info
    // Both made at the same instant: listed by id then.
    const listed = [infoOf(created), infoOf(plain)].sort((x, y) => (x.id < y.id ? -1 : 1))
    expect(await node.tokens.list()).toEqual(listed)
    expect(JSON.stringify(await node.tokens.list())).not.toContain(secret)

    expect(await node.tokens.authenticate(created.token)).toEqual({ id, role: 'write', prefix: 'app/' })
    expect(await node.tokens.authenticate(plain.token)).toEqual({ id: plain.id, role: 'read', prefix: null })
  })

  it('refuses a wrong secret, an unknown id and text that is no token', async () => {
    const node = await openNode({ dir: await dirFor() })
    const { id, token } = await node.tokens.create({ role: 'admin' })
    const last = token.at(-1) === 'A' ? 'B' : 'A'
    for (const text of [
      token.slice(0, -1) + last,
      `mkv_${'f'.repeat(16)}_${token.slice(22)}`,
      token + 'x',
      token.toUpperCase(),
      `mkv_${id}_`,
      '',
      'Bearer ' + token,
    ])
      expect(await node.tokens.authenticate(text)).toBeUndefined()
  })

  it('revoke refuses the token at once; a second revoke, or an unknown id, is NOT_FOUND', async () => {
    const node = await openNode({ dir: await dirFor() })
    const kept = await node.tokens.create({ role: 'read' })
    const gone = await node.tokens.create({ role: 'read' })
    await node.tokens.revoke(gone.id)
    expect(await node.tokens.authenticate(gone.token)).toBeUndefined()
    expect(await node.tokens.authenticate(kept.token)).toMatchObject({ id: kept.id })
    expect((await node.tokens.list()).map((token) => token.id)).toEqual([kept.id])
    expect(await meshCodeOf(node.tokens.revoke(gone.id))).toBe('MESHKV_ERR_NOT_FOUND')
    expect(await meshCodeOf(node.tokens.revoke('0123456789abcdef'))).toBe('MESHKV_ERR_NOT_FOUND')
    expect(await meshCodeOf(node.tokens.revoke('not-an-id'))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('checks role, prefix and name like keys', async () => {
    const node = await openNode({ dir: await dirFor(), keyBytesMax: 64 })
    const create = (spec: unknown) => meshCodeOf(node.tokens.create(spec as { role: 'read' }))
    expect(await create({ role: 'owner' })).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await create(null)).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect(await create({ role: 'read', prefix: '' })).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await create({ role: 'read', prefix: '\u0000meshkv/' })).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await create({ role: 'read', prefix: 'p'.repeat(65) })).toBe('MESHKV_ERR_KEY_TOO_LARGE')
    expect(await create({ role: 'read', name: '\ud800' })).toBe('MESHKV_ERR_INVALID_KEY')
    expect(await create({ role: 'read', name: 'n'.repeat(129) })).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    expect((await node.tokens.create({ role: 'read', name: 'é'.repeat(32) })).name).toBe('é'.repeat(32))
    expect(await node.tokens.list()).toHaveLength(1)
  })

  it('keeps only a hash: the secret never reaches the disk; tokens outlive a restart', async () => {
    const dir = await dirFor()
    const node = await MeshNode.open({ dir })
    const { token } = await node.tokens.create({ role: 'read', name: 'kept' })
    const secret = (TOKEN_TEXT.exec(token) ?? [])[2] as string
    await node.close()

    const raw = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    let bytes = 0
    for await (const [key, value] of raw.iterator()) {
      bytes += key.length + value.length
      expect(key.includes(secret)).toBe(false)
      expect(value.includes(secret)).toBe(false)
    }
    await raw.close()
    expect(bytes).toBeGreaterThan(0)

    const again = await openNode({ dir })
    expect(await again.tokens.authenticate(token)).toMatchObject({ role: 'read', prefix: null })
    expect((await again.tokens.list()).map((info) => info.name)).toEqual(['kept'])
  })

  it("watchers see no token entries: the set is meshkv's own", async () => {
    const node = await openNode({ dir: await dirFor() })
    const events = node.watch()
    const seen: string[] = []
    node.on('change', (event) => seen.push(event.type === 'set.add' ? event.name : event.type))
    const { id } = await node.tokens.create({ role: 'read' })
    await node.tokens.revoke(id)
    await node.set('visible').add('x')
    const [first] = await takeWithin(events, 1)
    expect(first).toMatchObject({ type: 'set.add', name: 'visible', member: 'x' })
    expect(seen).toEqual(['visible'])
    await events.return(undefined)
  })

  it('a replica refuses to make or revoke tokens', async () => {
    const node = await openNode({ dir: await dirFor(), role: 'replica' })
    expect(await meshCodeOf(node.tokens.create({ role: 'read' }))).toBe('MESHKV_ERR_READ_ONLY')
  })

  it('a closed node refuses every call', async () => {
    const node = await MeshNode.open({ dir: await dirFor() })
    const { id, token } = await node.tokens.create({ role: 'read' })
    await node.close()
    expect(await meshCodeOf(node.tokens.authenticate(token))).toBe('MESHKV_ERR_CLOSED')
    expect(await meshCodeOf(node.tokens.list())).toBe('MESHKV_ERR_CLOSED')
    expect(await meshCodeOf(node.tokens.revoke(id))).toBe('MESHKV_ERR_CLOSED')
    expect(await meshCodeOf(node.tokens.create({ role: 'read' }))).toBe('MESHKV_ERR_CLOSED')
  })
})

describe('tokens across two linked nodes', () => {
  it('a token made on one authenticates on the other; revoked there, it is refused on the first', async () => {
    const [a, b] = await twoNodes()
    const made = await a.tokens.create({ role: 'write', prefix: 'team/' })
    await vi.waitFor(async () => expect(await b.tokens.authenticate(made.token)).toMatchObject({ id: made.id }), {
      timeout: 10_000,
      interval: 20,
    })
    expect(await b.tokens.list()).toEqual(await a.tokens.list())

    await b.tokens.revoke(made.id)
    expect(await b.tokens.authenticate(made.token)).toBeUndefined()
    await vi.waitFor(async () => expect(await a.tokens.authenticate(made.token)).toBeUndefined(), {
      timeout: 10_000,
      interval: 20,
    })
  })

  it('with w=2 the other node knows a token (and its revocation) when the call returns', async () => {
    const [a, b] = await twoNodes()
    const made = await a.tokens.create({ role: 'read' }, { w: 2 })
    expect(await b.tokens.authenticate(made.token)).toMatchObject({ id: made.id, role: 'read' })
    await a.tokens.revoke(made.id, { w: 2 })
    expect(await b.tokens.authenticate(made.token)).toBeUndefined()
  })

  it('concurrent revocations on both nodes converge: both lists agree', async () => {
    const [a, b] = await twoNodes()
    const made = await Promise.all([0, 1, 2, 3].map((n) => (n % 2 === 0 ? a : b).tokens.create({ role: 'read' })))
    const ids = made.map((token) => token.id).sort()
    await vi.waitFor(
      async () => {
        expect((await a.tokens.list()).map((token) => token.id).sort()).toEqual(ids)
        expect((await b.tokens.list()).map((token) => token.id).sort()).toEqual(ids)
      },
      { timeout: 10_000, interval: 20 },
    )
    const [t0, t1, t2, t3] = made.map((token) => token.id) as [string, string, string, string]
    // t0 is revoked on both at once; t1 on a, t2 on b; t3 stays.
    await Promise.all([a.tokens.revoke(t0), b.tokens.revoke(t0), a.tokens.revoke(t1), b.tokens.revoke(t2)])
    await vi.waitFor(
      async () => {
        expect((await a.tokens.list()).map((token) => token.id)).toEqual([t3])
        expect(await b.tokens.list()).toEqual(await a.tokens.list())
      },
      { timeout: 10_000, interval: 20 },
    )
    for (const node of [a, b]) {
      for (const token of made.slice(0, 3)) expect(await node.tokens.authenticate(token.token)).toBeUndefined()
      expect(await node.tokens.authenticate((made[3] as { token: string }).token)).toMatchObject({ id: t3 })
    }
  })
})
