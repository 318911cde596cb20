/**
 * Client tokens, kept in the cluster (docs/architecture.md, "Tokens and roles"). A token is
 * `mkv_<id>_<secret>`; the cluster keeps only the SHA-256 of the secret, in a replicated add-wins
 * set under a reserved name (like the member sets, it starts with U+0000, which no client name
 * may), one entry per token. Creating a token adds its entry on whichever node was asked; revoking
 * removes it. Both reach every node by replication, so a token made on one node works on all.
 *
 * Each node keeps the set in memory, read again whenever a commit touches it, so authenticating
 * costs no LevelDB read. Until the read that follows such a commit is done, `authenticate` waits
 * for it: a revocation is in force on a node from the moment its change is applied there.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { AccessRole, CreatedToken, TokenInfo } from '../api/access.js'
import { isAccessRole } from '../api/access.js'
import { parseWriteConcern } from '../api/concern.js'
import type { Intent, SetState } from '../crdt/index.js'
import { setMembers } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import type { Store } from '../storage/index.js'
import type { Cluster } from './cluster.js'
import type { Limits } from './options.js'
import type { ConcernOptions } from './types.js'
import { checkKey } from './values.js'

export const TOKENS_SET = '\u0000meshkv/tokens'
export const TOKEN_NAME_CHARS_MAX = 128
const TOKEN_PATTERN = /^mkv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/
const TOKEN_ID_PATTERN = /^[0-9a-f]{16}$/
const SECRET_BYTES = 32

/** Who a request acts as: a cluster token's id (or `root`), its role and key prefix. */
export interface Principal {
  id: string
  role: AccessRole
  /** Only keys and names starting with this, or null for every key. */
  prefix: string | null
}

export interface TokenSpec {
  role: AccessRole
  prefix?: string | null
  name?: string | null
}

/** A token as the set keeps it: what `list` shows, and the hash of its secret (base64url). */
interface TokenRecord extends TokenInfo {
  hash: string
}

export interface TokensOptions {
  store: Store
  cluster: Cluster
  limits: Limits
  now: () => number
  checkOpen: () => void
}

export class Tokens {
  readonly #options: TokensOptions
  readonly #unsubscribe: () => void
  #index = new Map<string, TokenRecord>()
  /** Commits that touched the set, and how many of them the index has read: behind while `have < wanted`. */
  #wanted = 1
  #have = 0
  #reading: Promise<void> | null = null

  constructor(options: TokensOptions) {
    this.#options = options
    // A snapshot joined is a commit without entries: the set may have changed too.
    this.#unsubscribe = options.store.onCommit((entries) => {
      if (entries.length === 0 || entries.some((entry) => touchesTokens(entry.change.ops))) this.#touched()
    })
  }

  /** Makes a token and stores its hash; the token's text is in the answer and nowhere else. */
  async create(spec: TokenSpec, options: ConcernOptions = {}): Promise<CreatedToken> {
    const info = this.#infoOf(spec)
    const secret = randomBytes(SECRET_BYTES).toString('base64url')
    const record: TokenRecord = { ...info, hash: hashOf(secret) }
    await this.#commit([{ type: 'set.add', name: TOKENS_SET, member: encodeRecord(record) }], options)
    return { ...info, token: `mkv_${info.id}_${secret}` }
  }

  /** Every token of the cluster this node knows of, oldest first; never a secret or a hash. */
  async list(): Promise<TokenInfo[]> {
    this.#options.checkOpen()
    const index = await this.#current()
    return [...index.values()]
      .map(({ hash: _hash, ...info }) => info)
      .sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : a.createdAt < b.createdAt ? -1 : 1))
  }

  /** Revokes a token on every node (by replication); `MESHKV_ERR_NOT_FOUND` when no token has this id. */
  async revoke(id: string, options: ConcernOptions = {}): Promise<void> {
    this.#options.checkOpen()
    if (typeof id !== 'string' || !TOKEN_ID_PATTERN.test(id))
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a token id is 16 hex digits')
    // Every entry with this id goes (there is one, unless a peer wrote two).
    const state = await this.#options.store.getState('set', TOKENS_SET)
    const entries = setMembers(state).filter((entry) => decodeRecord(entry)?.id === id)
    if (entries.length === 0) throw new MeshError('MESHKV_ERR_NOT_FOUND', `no token has the id ${id}`)
    await this.#commit(
      entries.map((member) => ({ type: 'set.remove', name: TOKENS_SET, member })),
      options,
    )
  }

  /** Who `text` is, when it is a token of this cluster that has not been revoked. */
  async authenticate(text: string): Promise<Principal | undefined> {
    this.#options.checkOpen()
    const match = typeof text === 'string' ? TOKEN_PATTERN.exec(text) : null
    if (match === null) return undefined
    const record = (await this.#current()).get(match[1] as string)
    if (record === undefined) return undefined
    const given = createHash('sha256')
      .update(match[2] as string)
      .digest()
    const stored = Buffer.from(record.hash, 'base64url')
    if (stored.length !== given.length || !timingSafeEqual(stored, given)) return undefined
    return { id: record.id, role: record.role, prefix: record.prefix }
  }

  close(): void {
    this.#unsubscribe()
  }

  #infoOf(spec: TokenSpec): TokenInfo {
    const { limits, now } = this.#options
    if (typeof spec !== 'object' || spec === null || !isAccessRole(spec.role))
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', 'a token role is read, write or admin')
    const prefix = spec.prefix ?? null
    if (prefix !== null) checkKey(prefix, limits, 'token prefix')
    const name = spec.name ?? null
    if (typeof name === 'string' && name.length > TOKEN_NAME_CHARS_MAX)
      throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `a token name is at most ${TOKEN_NAME_CHARS_MAX} characters`)
    if (name !== null) checkKey(name, limits, 'token name')
    const id = randomBytes(8).toString('hex')
    return { id, role: spec.role, prefix, name, createdAt: new Date(now()).toISOString() }
  }

  /** A token write is an admin's write: refused by a replica and by a node still joining, like any other. */
  async #commit(intents: Intent[], options: ConcernOptions): Promise<void> {
    const { store, cluster, checkOpen } = this.#options
    checkOpen()
    cluster.checkWrites('manage tokens')
    const concern = parseWriteConcern(options.w)
    cluster.checkConcern(concern)
    const expected = concern !== 1 ? cluster.replicator.expectAcks() : undefined
    try {
      const result = await store.commitLocal(intents)
      // The commit's own news marks the index behind; reading it here makes the change hold at once.
      await this.#current()
      if (result.change !== null && concern !== 1)
        await cluster.awaitConcern(result.change.dot, concern, options.timeoutMs)
    } finally {
      expected?.()
    }
  }

  #touched(): void {
    this.#wanted++
    this.#startRead().catch(() => undefined)
  }

  /** The index, once it has read every commit that touched the set so far. */
  async #current(): Promise<ReadonlyMap<string, TokenRecord>> {
    while (this.#have < this.#wanted) await this.#startRead()
    return this.#index
  }

  /** One read at a time; it reads again while commits touched the set during the last read. */
  #startRead(): Promise<void> {
    this.#reading ??= this.#read().finally(() => (this.#reading = null))
    return this.#reading
  }

  async #read(): Promise<void> {
    while (this.#have < this.#wanted) {
      const target = this.#wanted
      this.#index = indexOf(await this.#options.store.getState('set', TOKENS_SET))
      this.#have = target
    }
  }
}

function touchesTokens(ops: readonly { type: string; name?: string }[]): boolean {
  return ops.some((op) => (op.type === 'set.add' || op.type === 'set.remove') && op.name === TOKENS_SET)
}

function hashOf(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url')
}

/** Tokens by id; of two entries with one id (only a faulty peer writes those), the greatest wins. */
function indexOf(state: SetState): Map<string, TokenRecord> {
  const index = new Map<string, TokenRecord>()
  for (const entry of setMembers(state).sort()) {
    const record = decodeRecord(entry)
    if (record !== null) index.set(record.id, record)
  }
  return index
}

/** An entry is base64url of a JSON array: `[id, hash, role, prefix, name, createdAt]`. */
function encodeRecord(record: TokenRecord): string {
  const fields = [record.id, record.hash, record.role, record.prefix, record.name, record.createdAt]
  return Buffer.from(JSON.stringify(fields), 'utf8').toString('base64url')
}

function decodeRecord(entry: string): TokenRecord | null {
  let fields: unknown
  try {
    fields = JSON.parse(Buffer.from(entry, 'base64url').toString('utf8'))
  } catch {
    return null
  }
  if (!Array.isArray(fields) || fields.length !== 6) return null
  const [id, hash, role, prefix, name, createdAt] = fields as unknown[]
  const optional = (value: unknown): value is string | null => value === null || typeof value === 'string'
  if (typeof id !== 'string' || !TOKEN_ID_PATTERN.test(id) || typeof hash !== 'string' || !isAccessRole(role))
    return null
  if (!optional(prefix) || !optional(name) || typeof createdAt !== 'string') return null
  return { id, hash, role, prefix, name, createdAt }
}
