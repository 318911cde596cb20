/**
 * An in-memory backend for tests and the deterministic simulator. It passes the same conformance
 * suite as LevelDB. Keep one instance across "restarts" of a node to model a disk that survives.
 */
import type { Backend, BackendReader, BackendSnapshot, BackendWrite, Range, Sub } from './backend.js'
import { SUBS, compareKeys, inRange } from './backend.js'
import { MeshError } from '../errors.js'

type Tables = Map<Sub, Map<string, Uint8Array>>

export class MemoryBackend implements Backend {
  readonly kind = 'memory'
  #tables: Tables = new Map(SUBS.map((sub) => [sub, new Map()]))
  #open = false
  #locked = false

  async open(): Promise<void> {
    if (this.#locked) throw new MeshError('MESHKV_ERR_LOCKED', 'this memory store is already open')
    this.#locked = true
    this.#open = true
  }

  async close(): Promise<void> {
    this.#open = false
    this.#locked = false
  }

  async get(sub: Sub, key: string): Promise<Uint8Array | undefined> {
    this.#checkOpen()
    return readTable(this.#tables, sub).get(key)
  }

  async getMany(sub: Sub, keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    this.#checkOpen()
    const table = readTable(this.#tables, sub)
    return keys.map((key) => table.get(key))
  }

  iterate(sub: Sub, range: Range): AsyncIterable<[string, Uint8Array]> {
    this.#checkOpen()
    return iterateTable(readTable(this.#tables, sub), range)
  }

  async write(writes: readonly BackendWrite[]): Promise<void> {
    this.#checkOpen()
    for (const write of writes) {
      const table = readTable(this.#tables, write.sub)
      if (write.type === 'put') table.set(write.key, write.value)
      else table.delete(write.key)
    }
  }

  snapshot(): BackendSnapshot {
    this.#checkOpen()
    const frozen: Tables = new Map([...this.#tables].map(([sub, table]) => [sub, new Map(table)]))
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

function readTable(tables: Tables, sub: Sub): Map<string, Uint8Array> {
  const table = tables.get(sub)
  if (table === undefined) throw new Error(`unknown sublevel ${sub}`)
  return table
}

async function* iterateTable(table: Map<string, Uint8Array>, range: Range): AsyncGenerator<[string, Uint8Array]> {
  const keys = [...table.keys()].filter((key) => inRange(key, range)).sort(compareKeys)
  if (range.reverse === true) keys.reverse()
  const limit = range.limit ?? Infinity
  let count = 0
  for (const key of keys) {
    if (count >= limit) return
    const value = table.get(key)
    if (value === undefined) continue
    count++
    yield [key, value]
  }
}
