/**
 * The access table: one row per route the HTTP app registers, with the role it needs, a request
 * inside a prefix-limited token's prefix and one outside it, and the status an allowed caller
 * gets. Shared by the inject test (test/http/auth.test.ts) and the one on a real process
 * (test/cluster/auth-table.test.ts), so both ask every route of every kind of caller.
 */
import { expect } from 'vitest'
import type { AccessRole } from '../../src/api/access.js'

export const ROOT = 'the-root-token-of-the-auth-tests'
export const PREFIX = 'app-'

export type Who = 'none' | 'wrong' | 'read' | 'write' | 'admin' | 'prefixed' | 'root'
export const WHO: readonly Who[] = ['none', 'wrong', 'read', 'write', 'admin', 'prefixed', 'root']
const ROLE_OF: Record<Exclude<Who, 'none' | 'wrong'>, AccessRole> = {
  read: 'read',
  write: 'write',
  admin: 'admin',
  prefixed: 'write',
  root: 'admin',
}
const RANK: Record<AccessRole, number> = { read: 0, write: 1, admin: 2 }

export interface Call {
  url: string
  body?: unknown
}

export interface Row {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE'
  /** The route pattern as fastify registers it. */
  route: string
  access: AccessRole | 'open'
  /** A request inside the prefix, and the status it gets when allowed. */
  inside: Call
  ok: number
  /** A request outside the prefix (key routes only): allowed for unlimited tokens with `ok`. */
  outside?: Call
}

export const NOT_A_NODE = 'zz'
export const UNKNOWN_TOKEN_ID = '0123456789abcdef'

export const ROWS: Row[] = [
  {
    method: 'GET',
    route: '/v1/kv',
    access: 'read',
    inside: { url: '/v1/kv?prefix=app-' },
    ok: 200,
    outside: { url: '/v1/kv' },
  },
  {
    method: 'GET',
    route: '/v1/kv/*',
    access: 'read',
    inside: { url: '/v1/kv/app-k' },
    ok: 200,
    outside: { url: '/v1/kv/other-k' },
  },
  {
    method: 'PUT',
    route: '/v1/kv/*',
    access: 'write',
    inside: { url: '/v1/kv/app-w', body: 'v' },
    ok: 200,
    outside: { url: '/v1/kv/other-w', body: 'v' },
  },
  {
    method: 'DELETE',
    route: '/v1/kv/*',
    access: 'write',
    inside: { url: '/v1/kv/app-never' },
    ok: 404,
    outside: { url: '/v1/kv/other-never' },
  },
  {
    method: 'GET',
    route: '/v1/counters/:name',
    access: 'read',
    inside: { url: '/v1/counters/app-c' },
    ok: 200,
    outside: { url: '/v1/counters/c' },
  },
  {
    method: 'POST',
    route: '/v1/counters/:name',
    access: 'write',
    inside: { url: '/v1/counters/app-c', body: { delta: 1 } },
    ok: 200,
    outside: { url: '/v1/counters/c', body: { delta: 1 } },
  },
  {
    method: 'GET',
    route: '/v1/sets/:name',
    access: 'read',
    inside: { url: '/v1/sets/app-s' },
    ok: 200,
    outside: { url: '/v1/sets/s' },
  },
  {
    method: 'POST',
    route: '/v1/sets/:name',
    access: 'write',
    inside: { url: '/v1/sets/app-s', body: { add: ['x'] } },
    ok: 200,
    outside: { url: '/v1/sets/s', body: { add: ['x'] } },
  },
  // A document never written is a 404 to an allowed reader.
  {
    method: 'GET',
    route: '/v1/docs/:name',
    access: 'read',
    inside: { url: '/v1/docs/app-d' },
    ok: 404,
    outside: { url: '/v1/docs/d' },
  },
  // The body is the empty Yjs update (two zero bytes): valid, and it changes nothing.
  {
    method: 'POST',
    route: '/v1/docs/:name',
    access: 'write',
    inside: { url: '/v1/docs/app-d', body: '\u0000\u0000' },
    ok: 200,
    outside: { url: '/v1/docs/d', body: '\u0000\u0000' },
  },
  {
    method: 'DELETE',
    route: '/v1/docs/:name',
    access: 'write',
    inside: { url: '/v1/docs/app-d' },
    ok: 200,
    outside: { url: '/v1/docs/d' },
  },
  // An allowed watch gets as far as the handler, which refuses the cursor: the stream never starts.
  {
    method: 'GET',
    route: '/v1/watch',
    access: 'read',
    inside: { url: '/v1/watch?prefix=app-&since=nope' },
    ok: 400,
    outside: { url: '/v1/watch?since=nope' },
  },
  // An export needs read on its prefix, as a listing does: without one, a limited token is refused.
  {
    method: 'GET',
    route: '/v1/export',
    access: 'read',
    inside: { url: '/v1/export?prefix=app-' },
    ok: 200,
    outside: { url: '/v1/export' },
  },
  { method: 'GET', route: '/v1/members', access: 'admin', inside: { url: '/v1/members' }, ok: 200 },
  {
    method: 'DELETE',
    route: '/v1/members/:nodeId',
    access: 'admin',
    inside: { url: `/v1/members/${NOT_A_NODE}` },
    ok: 400,
  },
  { method: 'GET', route: '/v1/status', access: 'admin', inside: { url: '/v1/status' }, ok: 200 },
  { method: 'GET', route: '/v1/digest', access: 'admin', inside: { url: '/v1/digest' }, ok: 200 },
  { method: 'GET', route: '/metrics', access: 'admin', inside: { url: '/metrics' }, ok: 200 },
  {
    method: 'POST',
    route: '/v1/tokens',
    access: 'admin',
    inside: { url: '/v1/tokens', body: { role: 'read', prefix: 'app-t' } },
    ok: 201,
  },
  { method: 'GET', route: '/v1/tokens', access: 'admin', inside: { url: '/v1/tokens' }, ok: 200 },
  {
    method: 'DELETE',
    route: '/v1/tokens/:id',
    access: 'admin',
    inside: { url: `/v1/tokens/${UNKNOWN_TOKEN_ID}` },
    ok: 404,
  },
  // The browser page reads like a document (its token may also come as ?token=, ui test).
  {
    method: 'GET',
    route: '/ui/docs/:name',
    access: 'read',
    inside: { url: '/ui/docs/app-d' },
    ok: 200,
    outside: { url: '/ui/docs/d' },
  },
  // Library code for the page (yjs and friends), no data: open.
  {
    method: 'GET',
    route: '/ui/modules/:package/:file',
    access: 'open',
    inside: { url: '/ui/modules/y-protocols/sync.js' },
    ok: 200,
  },
  {
    method: 'GET',
    route: '/ui/modules/:package/:dir/:file',
    access: 'open',
    inside: { url: '/ui/modules/yjs/dist/yjs.mjs' },
    ok: 200,
  },
  // The cluster page and its two files: no data (the page asks the API with its own token), open.
  { method: 'GET', route: '/ui', access: 'open', inside: { url: '/ui' }, ok: 200 },
  { method: 'GET', route: '/ui/cluster.js', access: 'open', inside: { url: '/ui/cluster.js' }, ok: 200 },
  { method: 'GET', route: '/ui/cluster.css', access: 'open', inside: { url: '/ui/cluster.css' }, ok: 200 },
  { method: 'GET', route: '/livez', access: 'open', inside: { url: '/livez' }, ok: 200 },
  { method: 'GET', route: '/healthz', access: 'open', inside: { url: '/healthz' }, ok: 200 },
  { method: 'GET', route: '/readyz', access: 'open', inside: { url: '/readyz' }, ok: 200 },
  // Peers sign these with the cluster secret; this node has none, so nobody's request is answered.
  {
    method: 'GET',
    route: '/v1/internal/state/:space/*',
    access: 'open',
    inside: { url: '/v1/internal/state/kv/app-k' },
    ok: 401,
  },
]

/** fastify answers HEAD for every GET route; auth treats it like the GET. */
export const ALL_ROWS: (Omit<Row, 'method'> & { method: Row['method'] | 'HEAD' })[] = [
  ...ROWS,
  ...ROWS.filter((row) => row.method === 'GET').map((row) => ({ ...row, method: 'HEAD' as const })),
]

/** The status `who` must get for `row` (outside: the request outside the prefix). */
export function expected(row: Row | (typeof ALL_ROWS)[number], who: Who, outside: boolean): number {
  if (row.access === 'open') return row.ok
  if (who === 'none' || who === 'wrong') return 401
  if (RANK[ROLE_OF[who]] < RANK[row.access]) return 403
  if (who === 'prefixed' && outside) return 403
  return row.ok
}

/**
 * Asks `row` of every kind of caller through `send`, inside the prefix and (where the row has one)
 * outside it, and expects each status the table gives. `checkDenied` looks closer at every 401 and
 * 403 that has a body to look at (not HEAD, not an open route).
 */
export async function expectRowAnswers<A extends { status: number }>(
  row: (typeof ALL_ROWS)[number],
  send: (call: Call, who: Who) => Promise<A>,
  checkDenied: (answer: A, status: 401 | 403) => void,
): Promise<void> {
  const got: Record<string, number> = {}
  const want: Record<string, number> = {}
  for (const who of WHO) {
    for (const [where, call] of [
      ['inside', row.inside],
      ['outside', row.outside],
    ] as const) {
      if (call === undefined) continue
      const answer = await send(call, who)
      got[`${who} ${where}`] = answer.status
      want[`${who} ${where}`] = expected(row, who, where === 'outside')
      if (row.method === 'HEAD' || row.access === 'open') continue
      if (answer.status === 401 || answer.status === 403) checkDenied(answer, answer.status)
    }
  }
  expect(got).toEqual(want)
}
