/**
 * `MeshLevel`: the `abstract-level` face of a node's `kv` space, so code written for `level`
 * (and the ecosystem on top of it) reads and writes a meshkv node. A put is a blind write, a del
 * a delete, a batch one atomic change. Keys are UTF-8 strings (meshkv keys are text); values are
 * stored as bytes.
 */
import { AbstractIterator, AbstractLevel } from 'abstract-level'
import type { AbstractDatabaseOptions, AbstractIteratorOptions } from 'abstract-level'
import { MeshError } from './errors.js'
import type { Entry, MeshNodeOptions } from './node/index.js'
import { MeshNode } from './node/index.js'

type Encoded = string | Uint8Array

const MESH_LEVEL_CONTENT_TYPE = 'application/octet-stream'
const NEXTV_PAGE_ENTRIES = 256

export interface MeshLevelOptions<K, V> extends AbstractDatabaseOptions<K, V> {
  /**
   * Stores every key under this prefix of the node's `kv` space, so several databases (or a
   * database and other users of the node) can share a node. With no prefix the empty key is
   * refused (`MESHKV_ERR_INVALID_KEY`), as everywhere in meshkv.
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
        encodings: { utf8: true, view: true },
        implicitSnapshots: false,
        explicitSnapshots: false,
        permanence: true,
        seek: true,
      },
      levelOptions,
    )
    const owned = !(node instanceof MeshNode)
    this.#node = owned ? undefined : node
    this.#nodeOptions = owned ? node : undefined
    this.#closeNode = owned || closeNode === true
    this.keyPrefix = keyPrefix ?? ''
  }

  #key(key: Encoded): string {
    return this.keyPrefix + keyText(key)
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
    const entry = await this.node.get(this.#key(key))
    return entry === undefined ? undefined : outputValue(entry.value, options.valueEncoding)
  }

  async _getMany(keys: Encoded[], options: { valueEncoding: string }): Promise<(Encoded | undefined)[]> {
    return Promise.all(keys.map((key) => this._get(key, options)))
  }

  async _put(key: Encoded, value: Encoded): Promise<void> {
    await this.node.put(this.#key(key), inputValue(value), { contentType: MESH_LEVEL_CONTENT_TYPE })
  }

  async _del(key: Encoded): Promise<void> {
    await this.node.del(this.#key(key))
  }

  async _batch(operations: { type: 'put' | 'del'; key: Encoded; value?: Encoded }[]): Promise<void> {
    // A level batch may write a key twice; the last operation on a key is what it ends as.
    const last = new Map<string, { type: 'put' | 'del'; key: Encoded; value?: Encoded }>()
    for (const operation of operations) last.set(this.#key(operation.key), operation)
    const ops = [...last].map(([key, operation]) =>
      operation.type === 'put'
        ? { type: 'put' as const, key, value: inputValue(operation.value ?? ''), contentType: MESH_LEVEL_CONTENT_TYPE }
        : { type: 'del' as const, key },
    )
    if (ops.length > 0) await this.node.batch(ops)
  }

  /** Deletes a range in batches of at most the node's batch limit; each batch is one change. */
  async _clear(options: AbstractIteratorOptions<Encoded, Encoded>): Promise<void> {
    const iterator = this._iterator({ ...options, keyEncoding: 'utf8', valueEncoding: 'utf8' })
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
  readonly #reverse: boolean
  readonly #range: Range
  readonly #valueEncoding: string
  readonly #keyEncoding: string
  #entries: AsyncGenerator<Entry>
  /** Entries yielded so far: a seek starts a new scan, but the limit counts across scans. */
  #count = 0
  readonly #limit: number

  constructor(
    db: AbstractLevel<Encoded, Encoded, Encoded>,
    node: MeshNode,
    prefix: string,
    options: AbstractIteratorOptions<Encoded, Encoded>,
  ) {
    super(db, options)
    const bound = (value: Encoded | undefined): string | undefined =>
      value === undefined ? undefined : prefix + keyText(value)
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
    this.#entries = this.#scan(range)
  }

  #scan(range: Range): AsyncGenerator<Entry> {
    const bounds = Object.fromEntries(Object.entries(range).filter(([, value]) => value !== undefined))
    return prefixed(this.#node.entries({ ...bounds, reverse: this.#reverse }), this.#prefix, this.#reverse)
  }

  async _next(): Promise<[Encoded, Encoded] | undefined> {
    if (this.#limit >= 0 && this.#count >= this.#limit) return undefined
    const next = await this.#entries.next()
    if (next.done === true) return undefined
    this.#count++
    return [
      outputKey(next.value.key.slice(this.#prefix.length), this.#keyEncoding),
      outputValue(next.value.value, this.#valueEncoding),
    ]
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
    const key = this.#prefix + keyText(target)
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

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/** meshkv keys are text: a byte key that is not valid UTF-8 is refused, never silently replaced. */
function keyText(key: Encoded): string {
  if (typeof key === 'string') return key
  try {
    return strictUtf8.decode(key)
  } catch (error) {
    throw new MeshError('MESHKV_ERR_INVALID_KEY', 'a MeshLevel key must be valid UTF-8', { cause: error })
  }
}

function inputValue(value: Encoded): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value
}

function outputKey(key: string, encoding: string): Encoded {
  return encoding === 'utf8' ? key : Buffer.from(key, 'utf8')
}

function outputValue(value: Uint8Array, encoding: string): Encoded {
  return encoding === 'utf8' ? Buffer.from(value).toString('utf8') : value
}
