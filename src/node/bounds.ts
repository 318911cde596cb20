/**
 * What a client can make a node hold, bounded (docs/architecture.md, "Limits a client meets"):
 * the settings with their defaults, and `Parking`, the count of callers parked on one kind of
 * wait (causal and quorum reads; writes waiting for their write concern). A caller over the cap
 * is refused at once with a retryable 503 `MESHKV_ERR_BUSY` rather than queued: a queue would be
 * one more thing a client could grow.
 */
import { positiveIntegerSetting } from '../api/numbers.js'
import { MeshError } from '../errors.js'
import type { MeshNodeOptions } from './types.js'

export const PARKED_READS_MAX_DEFAULT = 1000
export const PARKED_WRITES_MAX_DEFAULT = 1000
export const LIST_PAGE_BYTES_MAX_DEFAULT = 8 * 1024 * 1024

export interface Bounds {
  parkedReadsMax: number
  parkedWritesMax: number
  listPageBytesMax: number
}

export function checkBounds(options: MeshNodeOptions): Bounds {
  return {
    parkedReadsMax: positiveIntegerSetting('parkedReadsMax', options.parkedReadsMax, PARKED_READS_MAX_DEFAULT),
    parkedWritesMax: positiveIntegerSetting('parkedWritesMax', options.parkedWritesMax, PARKED_WRITES_MAX_DEFAULT),
    listPageBytesMax: positiveIntegerSetting('listPageBytesMax', options.listPageBytesMax, LIST_PAGE_BYTES_MAX_DEFAULT),
  }
}

/** One kind of parked wait, as `status()` reports it. */
export interface ParkingStatus {
  /** Callers parked now. */
  open: number
  max: number
  /** Callers refused with `MESHKV_ERR_BUSY` since the node started. */
  refused: number
}

export class Parking {
  #open = 0
  #refused = 0

  constructor(
    readonly what: 'reads' | 'writes',
    readonly max: number,
  ) {}

  get status(): ParkingStatus {
    return { open: this.#open, max: this.max, refused: this.#refused }
  }

  /** Takes a place, or throws `MESHKV_ERR_BUSY` when all are taken. The release may be called more than once. */
  take(): () => void {
    if (this.#open >= this.max) {
      this.#refused++
      throw new MeshError(
        'MESHKV_ERR_BUSY',
        `this node already has ${this.max} ${this.what} waiting (the most it parks at once); retry later`,
        { details: { resource: this.what, max: this.max } },
      )
    }
    this.#open++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#open--
    }
  }

  /** Runs `work` holding a place (refused with `MESHKV_ERR_BUSY` before it starts when full). */
  async hold<T>(work: () => Promise<T>): Promise<T> {
    const release = this.take()
    try {
      return await work()
    } finally {
      release()
    }
  }
}
