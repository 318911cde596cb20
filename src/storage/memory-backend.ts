/**
 * An in-memory backend for tests and the deterministic simulator. It passes the same conformance
 * suite as LevelDB. Keep one instance across "restarts" of a node to model a disk that survives.
 *
 * Durability model (for the simulator's crashes). The data lives on a `MemoryDisk`, which keeps
 * two views: what the process sees (the OS page cache: every batch written), and what would
 * survive a power loss (every batch up to the last one written with `sync: true`; a synced
 * batch makes every batch before it durable too, as an fsync of LevelDB's write-ahead log does).
 * Batches are atomic in both views: a crash never leaves half a batch.
 * - `crash('process')` is `kill -9`: the page cache survives, so nothing written is lost.
 * - `crash('power')` is a power loss: batches written since the last synced one are lost.
 * Either way this instance is dead from then on (every call fails with `MESHKV_ERR_CLOSED`, as the
 * killed process's calls would never run), and `crash` returns a fresh instance over the same
 * disk for the restarted process. A disk may take time to write (`MemoryDisk.latency`, which the
 * simulator ties to its virtual clock): a batch lands when that wait ends, and a crash during it
 * loses the batch.
 */
import type { Backend, BackendReader, BackendSnapshot, BackendWrite, Range, Sub } from './backend.js'
import { SUBS, compareKeys } from './backend.js'
import { MeshError } from '../errors.js'

/**
 * One sublevel: a map, and its keys in byte order kept as it changes, so that a range read is a
 * binary search rather than a sort of every key.
 */
class Table {
  readonly #map: Map<string, Uint8Array>
  #sorted: string[] | null

  constructor(map = new Map<string, Uint8Array>(), sorted: string[] | null = null) {
    this.#map = map
    this.#sorted = sorted
  }

  get(key: string): Uint8Array | undefined {
    return this.#map.get(key)
  }

  set(key: string, value: Uint8Array): void {
    if (!this.#map.has(key) && this.#sorted !== null) this.#sorted.splice(lowerBound(this.#sorted, key), 0, key)
    this.#map.set(key, value)
  }

  delete(key: string): void {
    if (!this.#map.delete(key) || this.#sorted === null) return
    this.#sorted.splice(lowerBound(this.#sorted, key), 1)
  }

  clone(): Table {
    return new Table(new Map(this.#map), this.#sorted === null ? null : [...this.#sorted])
  }

  /** The keys in byte order. */
  sortedKeys(): string[] {
    if (this.#sorted === null) this.#sorted = [...this.#map.keys()].sort(compareKeys)
    return this.#sorted
  }
}

/** The first index whose key is not below `key`. */
function lowerBound(keys: readonly string[], key: string): number {
  let low = 0
  let high = keys.length
  while (low < high) {
    const mid = (low + high) >>> 1
    if (compareKeys(keys[mid] as string, key) < 0) low = mid + 1
    else high = mid
  }
  return low
}

type Tables = Map<Sub, Table>

function emptyTables(): Tables {
  return new Map(SUBS.map((sub) => [sub, new Table()]))
}

function cloneTables(tables: Tables): Tables {
  return new Map([...tables].map(([sub, table]) => [sub, table.clone()]))
}

function applyBatch(tables: Tables, writes: readonly BackendWrite[]): void {
  for (const write of writes) {
    const table = readTable(tables, write.sub)
    if (write.type === 'put') table.set(write.key, write.value)
    else table.delete(write.key)
  }
}

/** The medium under one or more successive `MemoryBackend` instances (one per process run). */
export class MemoryDisk {
  /** What a running process reads: every batch written (the page cache). */
  tables: Tables = emptyTables()
  /** What survives a power loss: every batch up to the last synced one. */
  durable: Tables = emptyTables()
  /** Batches written after the last synced one, oldest first. */
  unsynced: (readonly BackendWrite[])[] = []
  /** The instance that has it open, if any. */
  owner: MemoryBackend | null = null
  batches = 0
  syncs = 0
  /** How long a write takes before it lands (none: at once). */
  latency: ((sync: boolean) => Promise<void>) | null = null

  write(writes: readonly BackendWrite[], sync: boolean): void {
    applyBatch(this.tables, writes)
    this.batches++
    if (!sync) {
      this.unsynced.push([...writes])
      return
    }
    this.syncs++
    for (const batch of this.unsynced) applyBatch(this.durable, batch)
    this.unsynced = []
    applyBatch(this.durable, writes)
  }

  /**
   * A copy of this disk as a file copy, backup or VM snapshot taken now would hold it (what a
   * running process reads, synced or not): put back later, it is an older copy of the node's data
   * directory (the operator faults of docs/testing.md). The copy is closed and owned by no one.
   */
  copy(): MemoryDisk {
    const copy = new MemoryDisk()
    copy.tables = cloneTables(this.tables)
    copy.durable = cloneTables(this.tables)
    return copy
  }

  /** The page cache is lost: the process will see only what was synced. */
  losePower(): void {
    this.unsynced = []
    this.tables = cloneTables(this.durable)
  }
}

export class MemoryBackend implements Backend {
  readonly kind = 'memory'
  readonly disk: MemoryDisk
  #open = false
  #dead = false

  constructor(disk: MemoryDisk = new MemoryDisk()) {
    this.disk = disk
  }

  async open(): Promise<void> {
    if (this.#dead)
      throw new MeshError('MESHKV_ERR_CLOSED', 'this memory store crashed; open the instance crash() returned')
    if (this.disk.owner !== null && this.disk.owner !== this)
      throw new MeshError('MESHKV_ERR_LOCKED', 'this memory store is already open')
    if (this.#open) throw new MeshError('MESHKV_ERR_LOCKED', 'this memory store is already open')
    this.disk.owner = this
    this.#open = true
  }

  async close(): Promise<void> {
    this.#open = false
    if (this.disk.owner === this) this.disk.owner = null
  }

  /**
   * The process dies (`process`: kill -9, the page cache survives; `power`: writes since the last
   * synced batch are lost). This instance fails every call from now on; the returned one, over the
   * same disk, is what the restarted process opens.
   */
  crash(kind: 'process' | 'power'): MemoryBackend {
    this.#open = false
    this.#dead = true
    if (this.disk.owner === this) this.disk.owner = null
    if (kind === 'power') this.disk.losePower()
    return new MemoryBackend(this.disk)
  }

  async get(sub: Sub, key: string): Promise<Uint8Array | undefined> {
    this.#checkOpen()
    return readTable(this.disk.tables, sub).get(key)
  }

  async getMany(sub: Sub, keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    this.#checkOpen()
    const table = readTable(this.disk.tables, sub)
    return keys.map((key) => table.get(key))
  }

  iterate(sub: Sub, range: Range): AsyncIterable<[string, Uint8Array]> {
    this.#checkOpen()
    return iterateTable(readTable(this.disk.tables, sub), range, () => this.#checkOpen())
  }

  async write(writes: readonly BackendWrite[], options: { sync: boolean } = { sync: false }): Promise<void> {
    this.#checkOpen()
    if (this.disk.latency !== null) {
      await this.disk.latency(options.sync)
      // The process died while the write was on its way: it never landed.
      this.#checkOpen()
    }
    this.disk.write(writes, options.sync)
  }

  snapshot(): BackendSnapshot {
    this.#checkOpen()
    const frozen = cloneTables(this.disk.tables)
    const reader: BackendReader = {
      get: async (sub, key) => readTable(frozen, sub).get(key),
      getMany: async (sub, keys) => keys.map((key) => readTable(frozen, sub).get(key)),
      iterate: (sub, range) => iterateTable(readTable(frozen, sub), range),
    }
    return { ...reader, close: async () => {} }
  }

  #checkOpen(): void {
    if (!this.#open) throw new MeshError('MESHKV_ERR_CLOSED', 'the memory store is not open')
  }
}

function readTable(tables: Tables, sub: Sub): Table {
  const table = tables.get(sub)
  if (table === undefined) throw new Error(`unknown sublevel ${sub}`)
  return table
}

async function* iterateTable(table: Table, range: Range, check?: () => void): AsyncGenerator<[string, Uint8Array]> {
  // The keys in range, as of now (a write during the iteration neither adds nor moves any).
  const keys = table.sortedKeys()
  let from = 0
  let to = keys.length
  if (range.gte !== undefined) from = lowerBound(keys, range.gte)
  if (range.gt !== undefined) {
    let at = lowerBound(keys, range.gt)
    if (at < keys.length && keys[at] === range.gt) at++
    from = Math.max(from, at)
  }
  if (range.lt !== undefined) to = Math.min(to, lowerBound(keys, range.lt))
  if (range.lte !== undefined) {
    let at = lowerBound(keys, range.lte)
    if (at < keys.length && keys[at] === range.lte) at++
    to = Math.min(to, at)
  }
  const limit = range.limit ?? Infinity
  if (to - from > limit) {
    if (range.reverse === true) from = to - limit
    else to = from + limit
  }
  const inRangeKeys = from < to ? keys.slice(from, to) : []
  if (range.reverse === true) inRangeKeys.reverse()
  let count = 0
  for (const key of inRangeKeys) {
    if (count >= limit) return
    check?.()
    const value = table.get(key)
    if (value === undefined) continue
    count++
    yield [key, value]
  }
}
