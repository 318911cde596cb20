/**
 * Embedded Yjs documents (`node.doc(name)`): a `Y.Doc` per document name, loaded from the node's
 * state and kept in sync with the cluster. Local edits (a Y.Doc 'update' whose origin is not the
 * node) are written with `applyDocUpdate`, so they replicate like any write; updates the node
 * commits (from peers, from HTTP, from this Y.Doc itself) reach the Y.Doc through the node's
 * 'change' events and are applied with the node as origin, which is how a Y.Doc's own writes
 * never echo back as new writes. Applying an update twice is a no-op in Yjs, so the echo of a
 * local edit costs a decode and nothing else.
 *
 * A local edit has no caller waiting on it, so a write the node refuses (a limit, a closed
 * node) is emitted as an 'error' event on the node (docs/consistency.md, "Documents"): the
 * Y.Doc keeps the edit, the cluster does not have it.
 */
import * as Y from 'yjs'
import { MeshError } from '../errors.js'
import type { DocRead } from './docs.js'
import type { Limits } from './options.js'
import type { WatchEvent, WriteResult } from './types.js'
import { checkDocName } from './docs.js'

/** What the sync needs of the node (the node itself: it is also the origin of applied updates). */
export interface DocHost {
  readonly limits: Limits
  applyDocUpdate(name: string, update: Uint8Array): Promise<WriteResult>
  docState(name: string): Promise<DocRead>
  on(event: 'change', listener: (event: WatchEvent) => void): unknown
  off(event: 'change', listener: (event: WatchEvent) => void): unknown
  emit(event: 'error', error: MeshError): boolean
}

export class DocSync {
  readonly #host: DocHost
  /** One Y.Doc per name, from the moment its load starts (a second caller shares the load). */
  readonly #loads = new Map<string, Promise<Y.Doc>>()
  /** The Y.Docs that take the node's updates: every doc whose load started and that is not destroyed. */
  readonly #open = new Map<string, Y.Doc>()
  /** Writes of local edits not answered yet: close waits for them, so none fails as "closed". */
  readonly #writes = new Set<Promise<void>>()
  readonly #onChange = (event: WatchEvent): void => {
    if (event.type !== 'doc') return
    const doc = this.#open.get(event.name)
    if (doc !== undefined) Y.applyUpdate(doc, event.update, this.#host)
  }

  constructor(host: DocHost) {
    this.#host = host
  }

  async doc(name: string): Promise<Y.Doc> {
    checkDocName(name, this.#host.limits)
    let load = this.#loads.get(name)
    if (load === undefined) {
      load = this.#load(name)
      this.#loads.set(name, load)
    }
    return load
  }

  /** Destroys every Y.Doc and waits for the writes of their last edits. */
  async close(): Promise<void> {
    for (const doc of [...this.#open.values()]) doc.destroy()
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes])
  }

  async #load(name: string): Promise<Y.Doc> {
    const doc = new Y.Doc()
    // Listening before the read: an update committed meanwhile is applied either way (twice is a no-op).
    if (this.#open.size === 0) this.#host.on('change', this.#onChange)
    this.#open.set(name, doc)
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin !== this.#host) this.#write(name, update)
    })
    doc.once('destroy', () => this.#release(name, doc))
    try {
      const read = await this.#host.docState(name)
      Y.applyUpdate(doc, read.update, this.#host)
    } catch (error) {
      doc.destroy()
      throw error
    }
    return doc
  }

  #write(name: string, update: Uint8Array): void {
    const write = this.#host.applyDocUpdate(name, update).then(
      () => undefined,
      (error: unknown) => {
        this.#host.emit('error', refused(name, error))
      },
    )
    this.#writes.add(write)
    void write.finally(() => this.#writes.delete(write))
  }

  #release(name: string, doc: Y.Doc): void {
    if (this.#open.get(name) !== doc) return
    this.#open.delete(name)
    this.#loads.delete(name)
    if (this.#open.size === 0) this.#host.off('change', this.#onChange)
  }
}

/** The node's refusal, naming the document (`details.doc`) since no caller is there to know it. */
function refused(name: string, error: unknown): MeshError {
  const message = `document ${JSON.stringify(name)}: a local edit was not written`
  if (!(error instanceof MeshError)) return new MeshError('MESHKV_ERR_INTERNAL', message, { cause: error })
  return new MeshError(error.code, `${message}: ${error.message}`, {
    cause: error,
    details: { ...error.details, doc: name },
  })
}
