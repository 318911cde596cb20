/**
 * The causal buffer: changes that arrived before they can be applied (an earlier change of their
 * origin, or one of their deps, is still missing). Bounded in count and in bytes (by
 * `approximateChangeBytes`): past `changesMax` changes or `bytesMax` bytes a change is refused and
 * the caller asks the sender to resend later. Pure: no I/O, no time.
 */
import type { Dot, NodeId, VectorClock } from '../clock/index.js'
import { vcCovers, vcGet, vcHasDot, vcSet } from '../clock/index.js'
import type { Change } from '../crdt/index.js'
import { approximateChangeBytes } from './peer-session.js'

export const CAUSAL_BUFFER_CHANGES_MAX_DEFAULT = 20_000
/** 64 MiB: 16 full frames of early changes. */
export const CAUSAL_BUFFER_BYTES_MAX_DEFAULT = 64 * 1024 * 1024

export type BufferResult = 'buffered' | 'duplicate' | 'full'

export class CausalBuffer {
  readonly changesMax: number
  readonly bytesMax: number
  #byOrigin = new Map<NodeId, Map<number, Change>>()
  #size = 0
  #bytes = 0

  constructor(changesMax = CAUSAL_BUFFER_CHANGES_MAX_DEFAULT, bytesMax = CAUSAL_BUFFER_BYTES_MAX_DEFAULT) {
    this.changesMax = changesMax
    this.bytesMax = bytesMax
  }

  get size(): number {
    return this.#size
  }

  /** The approximate bytes of the changes held. */
  get bytes(): number {
    return this.#bytes
  }

  /** Whether the change `dot` names is held here. */
  has(dot: Dot): boolean {
    return this.#byOrigin.get(dot.node)?.has(dot.seq) === true
  }

  /**
   * Holds `change` unless `applied` (plus what is buffered) already has it or the buffer is full.
   * A change deliverable on top of `applied` is never refused: it leaves at the next
   * `takeDeliverable`, and a full buffer may be full of changes that wait for exactly it.
   */
  add(change: Change, applied: VectorClock): BufferResult {
    if (vcHasDot(applied, change.dot)) return 'duplicate'
    const pending = this.#byOrigin.get(change.dot.node) ?? new Map<number, Change>()
    if (pending.has(change.dot.seq)) return 'duplicate'
    const bytes = approximateChangeBytes(change)
    const full = this.#size >= this.changesMax || this.#bytes + bytes > this.bytesMax
    if (full && !isDeliverable(change, applied)) return 'full'
    pending.set(change.dot.seq, change)
    this.#byOrigin.set(change.dot.node, pending)
    this.#size++
    this.#bytes += bytes
    return 'buffered'
  }

  /**
   * Removes and returns, in an order that respects causality, every change that can be applied
   * on top of `applied`: next for its origin, with all its deps covered.
   */
  takeDeliverable(applied: VectorClock): Change[] {
    const out: Change[] = []
    let vc = applied
    let progress = true
    while (progress) {
      progress = false
      for (const [origin, pending] of this.#byOrigin) {
        for (const stale of [...pending.keys()].filter((seq) => seq <= vcGet(vc, origin))) {
          this.#remove(pending, stale)
        }
        let next = pending.get(vcGet(vc, origin) + 1)
        while (next !== undefined && vcCovers(vc, next.deps)) {
          this.#remove(pending, next.dot.seq)
          out.push(next)
          vc = vcSet(vc, origin, next.dot.seq)
          progress = true
          next = pending.get(next.dot.seq + 1)
        }
        if (pending.size === 0) this.#byOrigin.delete(origin)
      }
    }
    return out
  }

  /**
   * Drops the buffered changes of `origin` past `seq` and returns how many went: a forgotten
   * member's later changes are refused, so they would otherwise wait here for ever.
   */
  dropAfter(origin: NodeId, seq: number): number {
    const pending = this.#byOrigin.get(origin)
    if (pending === undefined) return 0
    let dropped = 0
    for (const buffered of [...pending.keys()]) {
      if (buffered <= seq) continue
      this.#remove(pending, buffered)
      dropped++
    }
    if (pending.size === 0) this.#byOrigin.delete(origin)
    return dropped
  }

  /** The seqs of `origin`'s changes held here, ascending (stale ones included until the next take). */
  pending(origin: NodeId): number[] {
    return [...(this.#byOrigin.get(origin)?.keys() ?? [])].sort((a, b) => a - b)
  }

  clear(): void {
    this.#byOrigin.clear()
    this.#size = 0
    this.#bytes = 0
  }

  #remove(pending: Map<number, Change>, seq: number): void {
    const change = pending.get(seq)
    if (change === undefined) return
    pending.delete(seq)
    this.#size--
    this.#bytes -= approximateChangeBytes(change)
  }
}

/** Next for its origin, with every dep applied. */
function isDeliverable(change: Change, applied: VectorClock): boolean {
  return vcGet(applied, change.dot.node) === change.dot.seq - 1 && vcCovers(applied, change.deps)
}
