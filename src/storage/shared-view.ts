/**
 * A backend snapshot shared by several readers, closed once the last of them lets go.
 *
 * The store reads through one while a received snapshot is joined (snapshot-join.ts). The join
 * writes the states a page at a time and the clock last, so the live states in the middle of a
 * join hold changes the clock does not claim yet. A read of them with the store's clock (or a
 * `Store.snapshot()` of them) would answer a state that is not its clock's. Reads during the join
 * go to a view taken just before it began instead: readers see the node as it was before the
 * join, then as it is after it, never in between.
 *
 * Every read holds the view while it runs, and a snapshot shared out holds it until it is closed,
 * so the join can end (and let go of its own hold) while they are still reading.
 */
import type { BackendReader, BackendSnapshot, Range, Sub } from './backend.js'

export class SharedView implements BackendReader {
  readonly #view: BackendSnapshot
  /** The holder that made it, plus one per read running, iteration open and snapshot shared out. */
  #holds = 1

  constructor(view: BackendSnapshot) {
    this.#view = view
  }

  get(sub: Sub, key: string): Promise<Uint8Array | undefined> {
    return this.#holding(() => this.#view.get(sub, key))
  }

  getMany(sub: Sub, keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return this.#holding(() => this.#view.getMany(sub, keys))
  }

  /** Takes its hold at once (not at the first step), so an iteration may outlast the join. */
  iterate(sub: Sub, range: Range): AsyncIterable<[string, Uint8Array]> {
    this.#holds++
    return releasing(this.#view.iterate(sub, range), () => this.release())
  }

  /** A snapshot over this view that holds it until closed. */
  share(): BackendSnapshot {
    this.#holds++
    let closed = false
    return {
      get: (sub, key) => this.get(sub, key),
      getMany: (sub, keys) => this.getMany(sub, keys),
      iterate: (sub, range) => this.iterate(sub, range),
      close: async () => {
        if (closed) return
        closed = true
        await this.release()
      },
    }
  }

  /** Lets go of one hold; the last one closes the view. */
  async release(): Promise<void> {
    this.#holds--
    if (this.#holds === 0) await this.#view.close()
  }

  async #holding<T>(read: () => Promise<T>): Promise<T> {
    this.#holds++
    try {
      return await read()
    } finally {
      await this.release()
    }
  }
}

async function* releasing(
  entries: AsyncIterable<[string, Uint8Array]>,
  release: () => Promise<void>,
): AsyncGenerator<[string, Uint8Array]> {
  try {
    yield* entries
  } finally {
    await release()
  }
}
