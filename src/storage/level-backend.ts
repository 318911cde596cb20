/**
 * The LevelDB backend (`level`): one database with a sublevel per `Sub`, atomic batches across
 * sublevels, and explicit snapshots for consistent reads.
 */
import { Level } from 'level'
import type { AbstractSublevel } from 'abstract-level'
import type { Backend, BackendReader, BackendSnapshot, BackendWrite, Range, Sub } from './backend.js'
import { SUBS } from './backend.js'
import { MeshError } from '../errors.js'

type Root = Level<string, Uint8Array>
type Sublevel = AbstractSublevel<Root, string | Buffer | Uint8Array, string, Uint8Array>
type LevelSnapshot = ReturnType<Root['snapshot']>

/** abstract-level's private batch: operations with prefixed keys and encoded values. */
interface PrivateBatch {
  _batch(operations: readonly Record<string, unknown>[], options: { sync: boolean }): Promise<void>
}

/**
 * LevelDB's memtable size (its `writeBufferSize`; LevelDB's default is 4 MiB). A write goes to the
 * memtable and the write-ahead log; a full memtable is written out as a table file that
 * compaction then merges down. With 4 MiB, taking in 100 000 changes cost about 51 µs of CPU per
 * change, half of it on LevelDB's own threads; with 16 MiB about 38 µs (`bench/tools/ingest-cpu.ts`;
 * 64 MiB gave 35 µs). The price is memory: up to two memtables (one being written out) per node.
 */
export const WRITE_BUFFER_BYTES_DEFAULT = 16 * 1024 * 1024

export class LevelBackend implements Backend {
  readonly kind = 'level'
  readonly dir: string
  #db: Root
  #subs: Map<Sub, Sublevel>

  readonly #writeBufferBytes: number

  constructor(dir: string, options: { writeBufferBytes?: number } = {}) {
    this.dir = dir
    this.#writeBufferBytes = options.writeBufferBytes ?? WRITE_BUFFER_BYTES_DEFAULT
    this.#db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.#subs = new Map(
      SUBS.map((sub) => [
        sub,
        this.#db.sublevel<string, Uint8Array>(sub, { keyEncoding: 'utf8', valueEncoding: 'view' }),
      ]),
    )
  }

  async open(): Promise<void> {
    try {
      await this.#db.open({ createIfMissing: true, writeBufferSize: this.#writeBufferBytes })
      // Sublevels open a tick after their root; `getSync` refuses one still opening.
      await Promise.all([...this.#subs.values()].map((sublevel) => sublevel.open()))
    } catch (error) {
      throw openError(error, this.dir)
    }
  }

  async close(): Promise<void> {
    await this.#db.close()
  }

  /**
   * Point reads are synchronous (`getSync`, classic-level 3): a read found in the memtable or the
   * block cache takes a few µs on the calling thread, where a round trip through libuv's thread
   * pool costs 50-100 µs of wake-ups on a small VM (profiled: `_getMany` was a tenth of a node's
   * main-thread time at a light load; docs/architecture.md, "How a write flows"). Only a large
   * `getMany` goes to the pool, so one call never holds the event loop for long.
   */
  get(sub: Sub, key: string): Promise<Uint8Array | undefined> {
    return syncCall(() => this.#sub(sub).getSync(key))
  }

  getMany(sub: Sub, keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return readMany(this.#sub(sub), keys, undefined)
  }

  iterate(sub: Sub, range: Range): AsyncIterable<[string, Uint8Array]> {
    return iterateSub(this.#sub(sub), range, undefined)
  }

  /**
   * One atomic batch. It goes to `_batch`, the private API abstract-level defines for its
   * implementations, with each key already prefixed exactly as its sublevel prefixes it
   * (`sublevel.prefix`, e.g. `!log!`) and values already bytes: the public `batch()` spends most
   * of a commit's time per operation cloning it, resolving encodings and walking sublevel
   * ancestry (measured: 34k changes/s of two puts through sublevels, 140-170k through
   * `_batch`; bench/ has the end-to-end figures). Reads still go through the sublevels.
   */
  async write(writes: readonly BackendWrite[], options: { sync: boolean }): Promise<void> {
    if (writes.length === 0) return
    if (this.#db.status !== 'open') throw new MeshError('MESHKV_ERR_CLOSED', 'the store is closed')
    const operations = writes.map((write) =>
      write.type === 'put'
        ? {
            type: 'put' as const,
            key: this.#sub(write.sub).prefix + write.key,
            value: write.value,
            keyEncoding: 'utf8',
            valueEncoding: 'view',
          }
        : { type: 'del' as const, key: this.#sub(write.sub).prefix + write.key, keyEncoding: 'utf8' },
    )
    const db = this.#db as unknown as PrivateBatch
    await storageCall(() => db._batch(operations, { sync: options.sync }))
  }

  snapshot(): BackendSnapshot {
    const snapshot = this.#db.snapshot()
    const reader: BackendReader = {
      get: (sub, key) => syncCall(() => this.#sub(sub).getSync(key, { snapshot })),
      getMany: (sub, keys) => readMany(this.#sub(sub), keys, snapshot),
      iterate: (sub, range) => iterateSub(this.#sub(sub), range, snapshot),
    }
    return { ...reader, close: () => snapshot.close() }
  }

  #sub(sub: Sub): Sublevel {
    const sublevel = this.#subs.get(sub)
    if (sublevel === undefined) throw new Error(`unknown sublevel ${sub}`)
    return sublevel
  }
}

async function* iterateSub(
  sublevel: Sublevel,
  range: Range,
  snapshot: LevelSnapshot | undefined,
): AsyncGenerator<[string, Uint8Array]> {
  const options = { ...range, limit: range.limit ?? -1, ...(snapshot === undefined ? {} : { snapshot }) }
  const iterator = sublevel.iterator(options)
  try {
    while (true) {
      const entries = await storageCall(() => iterator.nextv(256))
      if (entries.length === 0) return
      for (const entry of entries) yield entry
    }
  } finally {
    await iterator.close()
  }
}

/** Most keys a `getMany` reads on the calling thread; more go to the thread pool. */
const SYNC_READ_KEYS_MAX = 64

/** A `getMany` on the calling thread when it is small, else in the thread pool (see `get`). */
function readMany(
  sublevel: Sublevel,
  keys: readonly string[],
  snapshot: LevelSnapshot | undefined,
): Promise<(Uint8Array | undefined)[]> {
  // Without options, `getSync` takes abstract-level's fast path (no encoding lookups).
  const getSync =
    snapshot === undefined
      ? (key: string) => sublevel.getSync(key)
      : (key: string) => sublevel.getSync(key, { snapshot })
  if (keys.length <= SYNC_READ_KEYS_MAX) return syncCall(() => keys.map(getSync))
  return storageCall(() =>
    snapshot === undefined ? sublevel.getMany([...keys]) : sublevel.getMany([...keys], { snapshot }),
  )
}

function syncCall<T>(call: () => T): Promise<T> {
  try {
    return Promise.resolve(call())
  } catch (error) {
    return Promise.reject(storageError(error))
  }
}

async function storageCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    throw storageError(error)
  }
}

function storageError(error: unknown): MeshError {
  if (error instanceof MeshError) return error
  const code = (error as { code?: string }).code
  if (code === 'LEVEL_DATABASE_NOT_OPEN')
    return new MeshError('MESHKV_ERR_CLOSED', 'the store is closed', { cause: error })
  return new MeshError('MESHKV_ERR_STORAGE', `the store failed: ${(error as Error).message}`, { cause: error })
}

function openError(error: unknown, dir: string): MeshError {
  const causeCode = ((error as { cause?: { code?: string } }).cause ?? {}).code
  if (causeCode === 'LEVEL_LOCKED') {
    return new MeshError(
      'MESHKV_ERR_LOCKED',
      `the data directory ${dir} is locked: another meshkv process is using it`,
      { cause: error },
    )
  }
  return new MeshError('MESHKV_ERR_STORAGE', `cannot open the store in ${dir}: ${(error as Error).message}`, {
    cause: error,
  })
}
