/**
 * `MeshLevel`: the `abstract-level` face of a node's `kv` space, so code written for `level`
 * (and the ecosystem on top of it) reads and writes a meshkv node. A put is a blind write, a del
 * a delete, a batch one atomic change. Values are stored as bytes. Keys are any bytes, as in Level:
 * `level-keys.ts` stores each as a meshkv key (text) in the same order, and a text key as itself,
 * so what MeshLevel writes under `user:1` HTTP and kvctl read as `user:1`.
 */
import { AbstractIterator, AbstractLevel } from 'abstract-level'
import type { AbstractDatabaseOptions, AbstractIteratorOptions } from 'abstract-level'
import { MeshError } from './errors.js'
import { KEY_GROWTH_BYTES, decodeKey, encodeKey, encodeTextKey, ownText } from './level-keys.js'
import type { BatchOp, Entry, MeshNodeOptions } from './node/index.js'
import { MeshNode } from './node/index.js'

type Encoded = string | Uint8Array

const MESH_LEVEL_CONTENT_TYPE = 'application/octet-stream'
const NEXTV_PAGE_ENTRIES = 256

export interface MeshLevelOptions<K, V> extends AbstractDatabaseOptions<K, V> {
  /**
   * Stores every key under this prefix of the node's `kv` space, so several databases (or a
   * database and other users of the node) can share a node. With no prefix the database is the
   * whole space: keys that are empty or start with a byte 0x00 or 0x01 are then stored escaped.
   */
  keyPrefix?: string
  /** Close the node when the database closes. Default false: the app owns the node. */
  closeNode?: boolean
}

export class MeshLevel<K = string, V = string> extends AbstractLevel<Encoded, K, V> {
  #node: MeshNode | undefined
  readonly #nodeOptions: MeshNodeOptions | undefined
  readonly #closeNode: boolean
  readonly keyPrefix: string

  /**
   * Over a node the app has opened (`new MeshLevel(node)`), or over a node of its own that opens
   * and closes with the database (`new MeshLevel({ dir })`).
   */
  constructor(node: MeshNode | MeshNodeOptions, options: MeshLevelOptions<K, V> = {}) {
    const { keyPrefix, closeNode, ...levelOptions } = options
    super(
      {
        // Keys and values arrive as strings or bytes as the caller's encoding has them; the
        // other encodings transcode to these.
        encodings: { utf8: true, buffer: true, view: true },
        // Reads see writes as they land, never a snapshot; there is no snapshot() to take.
        implicitSnapshots: false,
        explicitSnapshots: false,
        has: true,
        permanence: node instanceof MeshNode ? node.status().storage !== 'memory' : node.memory !== true,
        seek: true,
        // The node makes its data directory when it is missing and never refuses one that exists.
        createIfMissing: false,
        errorIfExists: false,
        signals: { iterators: true },
        // No getSync: every read goes through the node, which answers asynchronously.
      },
      levelOptions,
    )
    const owned = !(node instanceof MeshNode)
    this.#node = owned ? undefined : node
    this.#nodeOptions = owned ? node : undefined
    this.#closeNode = owned || closeNode === true
    this.keyPrefix = keyPrefix ?? ''
  }

  /** The stored form of a key: the prefix, then the key as `level-keys.ts` encodes it. */
  #key(key: Encoded): string {
    return this.keyPrefix + storedKey(key, this.keyPrefix === '')
  }

  /** The same for a key to read or write, refused when the node could not hold it. */
  #checkedKey(key: Encoded): string {
    const stored = this.#key(key)
    const limit = this.node.limits.keyBytesMax
    const bytes = Buffer.byteLength(stored, 'utf8')
    if (bytes > limit) {
      const keyBytes = typeof key === 'string' ? Buffer.byteLength(key, 'utf8') : key.byteLength
      const room = limit - Buffer.byteLength(this.keyPrefix, 'utf8')
      throw new MeshError(
        'MESHKV_ERR_KEY_TOO_LARGE',
        `the key is ${keyBytes} bytes, ${bytes} as stored (with its prefix and escapes); the node's limit is ` +
          `${limit}: text keys fit in ${room} bytes, any key in ${Math.max(0, Math.floor((room - KEY_GROWTH_BYTES) / 2))}`,
        { details: { limitBytes: limit, actualBytes: bytes, keyBytes } },
      )
    }
    return stored
  }

  /**
   * Rewrites the keys a MeshLevel stored before keys could be bytes (when it stored every key as
   * its text) that are stored otherwise now: text holding U+10FFFF and, with no prefix, text
   * starting with U+0001. Every other key kept its form. Until this runs, iterators pass over such
   * keys and gets miss them. Run it once, before the database is used; each key moves in one batch
   * (its new form with the same value, unless a write since put one there, and the old form
   * deleted), so a run cut short can run again. Resolves with the number of keys moved.
   */
  static async migrateKeys(node: MeshNode, options: { keyPrefix?: string } = {}): Promise<number> {
    const prefix = options.keyPrefix ?? ''
    const bare = prefix === ''
    const stale: Entry[] = []
    const range = bare ? {} : { gte: prefix }
    for await (const entry of prefixed(node.entries(range), prefix, false)) {
      if (decodeKey(entry.key.slice(prefix.length), bare) === undefined) stale.push(entry)
    }
    for (const entry of stale) {
      const key = prefix + encodeTextKey(entry.key.slice(prefix.length), bare)
      const ops: BatchOp[] = [{ type: 'del', key: entry.key }]
      if ((await node.get(key)) === undefined) {
        ops.unshift({ type: 'put', key, value: entry.value, contentType: entry.contentType })
      }
      await node.batch(ops)
    }
    return stale.length
  }

  get node(): MeshNode {
    if (this.#node === undefined) throw new MeshError('MESHKV_ERR_CLOSED', 'the MeshLevel database is not open')
    return this.#node
  }

  async _open(): Promise<void> {
    if (this.#nodeOptions !== undefined && this.#node === undefined) this.#node = await MeshNode.open(this.#nodeOptions)
  }

  async _close(): Promise<void> {
    if (this.#closeNode && this.#node !== undefined) await this.#node.close()
    if (this.#nodeOptions !== undefined) this.#node = undefined
  }

  async _get(key: Encoded, options: { valueEncoding: string }): Promise<Encoded | undefined> {
    const entry = await this.node.get(this.#checkedKey(key))
    return entry === undefined ? undefined : outputValue(entry.value, options.valueEncoding)
  }

  async _has(key: Encoded): Promise<boolean> {
    return (await this.node.get(this.#checkedKey(key))) !== undefined
  }

  async _hasMany(keys: Encoded[]): Promise<boolean[]> {
    return Promise.all(keys.map((key) => this._has(key)))
  }

  async _getMany(keys: Encoded[], options: { valueEncoding: string }): Promise<(Encoded | undefined)[]> {
    return Promise.all(keys.map((key) => this._get(key, options)))
  }

  async _put(key: Encoded, value: Encoded): Promise<void> {
    await this.node.put(this.#checkedKey(key), inputValue(value), { contentType: MESH_LEVEL_CONTENT_TYPE })
  }

  async _del(key: Encoded): Promise<void> {
    await this.node.del(this.#checkedKey(key))
  }

  async _batch(operations: { type: 'put' | 'del'; key: Encoded; value?: Encoded }[]): Promise<void> {
    // A level batch may write a key twice; the last operation on a key is what it ends as.
    const last = new Map<string, { type: 'put' | 'del'; key: Encoded; value?: Encoded }>()
    for (const operation of operations) last.set(this.#checkedKey(operation.key), operation)
    const ops = [...last].map(([key, operation]) =>
      operation.type === 'put'
        ? { type: 'put' as const, key, value: inputValue(operation.value ?? ''), contentType: MESH_LEVEL_CONTENT_TYPE }
        : { type: 'del' as const, key },
    )
    if (ops.length > 0) await this.node.batch(ops)
  }

  /** Deletes a range in batches of at most the node's batch limit; each batch is one change. */
  async _clear(options: AbstractIteratorOptions<Encoded, Encoded>): Promise<void> {
    const iterator = this._iterator({ ...options, keyEncoding: 'buffer', valueEncoding: 'buffer' })
    try {
      while (true) {
        const entries = await iterator._nextv(this.node.limits.batchOpsMax)
        if (entries.length === 0) return
        await this.node.batch(entries.map(([key]) => ({ type: 'del' as const, key: this.#key(key) })))
      }
    } finally {
      await iterator._close()
    }
  }

  _iterator(options: AbstractIteratorOptions<Encoded, Encoded>): MeshLevelIterator {
    return new MeshLevelIterator(
      this as unknown as AbstractLevel<Encoded, Encoded, Encoded>,
      this.node,
      this.keyPrefix,
      options,
    )
  }
}

class MeshLevelIterator extends AbstractIterator<AbstractLevel<Encoded, Encoded, Encoded>, Encoded, Encoded> {
  readonly #node: MeshNode
  readonly #prefix: string
  readonly #bare: boolean
  readonly #reverse: boolean
  readonly #range: Range
  readonly #valueEncoding: string
  readonly #keyEncoding: string
  readonly #signal: AbortSignal | undefined
  #entries: AsyncGenerator<Entry>
  /** Entries yielded so far: a seek starts a new scan, but the limit counts across scans. */
  #count = 0
  readonly #limit: number

  constructor(
    db: AbstractLevel<Encoded, Encoded, Encoded>,
    node: MeshNode,
    prefix: string,
    options: AbstractIteratorOptions<Encoded, Encoded> & { signal?: AbortSignal },
  ) {
    super(db, options)
    this.#bare = prefix === ''
    const bound = (value: Encoded | undefined): string | undefined =>
      value === undefined ? undefined : prefix + storedKey(value, this.#bare)
    const range: Range = {
      gt: bound(options.gt),
      gte: bound(options.gte),
      lt: bound(options.lt),
      lte: bound(options.lte),
    }
    if (range.gt === undefined && range.gte === undefined && prefix !== '') range.gte = prefix
    this.#node = node
    this.#prefix = prefix
    this.#reverse = options.reverse === true
    this.#range = range
    this.#limit = options.limit ?? -1
    this.#keyEncoding = String(options.keyEncoding ?? 'utf8')
    this.#valueEncoding = String(options.valueEncoding ?? 'utf8')
    this.#signal = options.signal
    this.#entries = this.#scan(range)
  }

  #scan(range: Range): AsyncGenerator<Entry> {
    const bounds = Object.fromEntries(Object.entries(range).filter(([, value]) => value !== undefined))
    return prefixed(this.#node.entries({ ...bounds, reverse: this.#reverse }), this.#prefix, this.#reverse)
  }

  async _next(): Promise<[Encoded, Encoded] | undefined> {
    if (this.#limit >= 0 && this.#count >= this.#limit) return undefined
    while (true) {
      const next = await this.#entries.next()
      // abstract-level checks the signal before a read; a read under way ends here.
      if (this.#signal?.aborted === true) throw new LevelAbortError()
      if (next.done === true) return undefined
      const stored = next.value.key.slice(this.#prefix.length)
      const key = outputKey(stored, this.#bare, this.#keyEncoding)
      // A key this database could not have written (see level-keys.ts) is not one of its keys.
      if (key === undefined) continue
      this.#count++
      return [key, outputValue(next.value.value, this.#valueEncoding)]
    }
  }

  async _nextv(size: number): Promise<[Encoded, Encoded][]> {
    const entries: [Encoded, Encoded][] = []
    while (entries.length < Math.min(size, NEXTV_PAGE_ENTRIES)) {
      const entry = await this._next()
      if (entry === undefined) break
      entries.push(entry)
    }
    return entries
  }

  /** Moves to the first key at or after `target` (at or before, in reverse), within the range. */
  _seek(target: Encoded): void {
    const key = this.#prefix + storedKey(target, this.#bare)
    const range: Range = { ...this.#range }
    if (this.#reverse) {
      if (range.lt === undefined || compareKeys(key, range.lt) < 0) {
        if (range.lte === undefined || compareKeys(key, range.lte) < 0) range.lte = key
      }
    } else if (range.gt === undefined || compareKeys(key, range.gt) > 0) {
      if (range.gte === undefined || compareKeys(key, range.gte) > 0) range.gte = key
    }
    const previous = this.#entries
    void previous.return(undefined)
    this.#entries = this.#scan(range)
  }

  async _close(): Promise<void> {
    await this.#entries.return(undefined)
  }
}

/** Level's own abort error (abstract-level does not export it): what a read under way rejects with. */
class LevelAbortError extends Error {
  readonly code = 'LEVEL_ABORTED'
  constructor() {
    super('Operation has been aborted')
  }

  override get name(): string {
    return 'AbortError'
  }
}

type Range = { gt?: string; gte?: string; lt?: string; lte?: string }

function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/** Entries of `source` under `prefix`: in reverse, keys above the prefix are passed over first. */
async function* prefixed(source: AsyncGenerator<Entry>, prefix: string, reverse: boolean): AsyncGenerator<Entry> {
  try {
    for await (const entry of source) {
      if (!entry.key.startsWith(prefix)) {
        if (reverse && compareKeys(entry.key, prefix) > 0) continue
        return
      }
      yield entry
    }
  } finally {
    await source.return(undefined)
  }
}

function storedKey(key: Encoded, bare: boolean): string {
  return typeof key === 'string' ? encodeTextKey(key, bare) : encodeKey(key, bare)
}

function inputValue(value: Encoded): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value
}

/** The key stored as `stored` in the caller's format, or undefined when it is no Level key. */
function outputKey(stored: string, bare: boolean, encoding: string): Encoded | undefined {
  if (encoding === 'utf8') {
    const text = ownText(stored, bare)
    if (text !== undefined) return text
  }
  const bytes = decodeKey(stored, bare)
  if (bytes === undefined) return undefined
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  // Like Level's utf8 encoding, bytes that are not UTF-8 read as U+FFFD.
  return encoding === 'utf8' ? buffer.toString('utf8') : buffer
}

function outputValue(value: Uint8Array, encoding: string): Encoded {
  return encoding === 'utf8' ? Buffer.from(value).toString('utf8') : value
}
