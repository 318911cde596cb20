/**
 * Two live processes with one node id (a cloned data directory), as a third node sees them: it
 * holds a link to the id from one process (instance i1) and the other (i2) dials it. A restarted
 * process looks the same at first (its old link may still be held, half-open), so the transport
 * refuses i2 while i1's link is alive and replaces i1's link once it is proven dead, as for any
 * newcomer. What tells the two apart is time: a dead process is never heard after it died, so
 * once i1 answers pings well after i2 first dialed (`settleMs`, two ping intervals), both are
 * alive. Then both instances are refused with 4009 for the rest of this transport's life (each
 * must restart, which gives it a new instance); a third instance is a fresh start.
 *
 * The watch only keeps state; the transport (core.ts) closes and refuses links.
 */
import type { NodeId } from '../clock/index.js'

/** Instances remembered per node id as found in conflict (oldest dropped past it). */
const CONFLICTED_PER_NODE_MAX = 16

/** Whether two links of one node id come from two processes (older nodes send no instance). */
export function isOtherProcess(held: string | null, candidate: string | null): boolean {
  return held !== null && candidate !== null && held !== candidate
}

export class CloneWatch {
  /** Per node id: the newcomer instance refused while the held link was alive, and since when. */
  readonly #suspects = new Map<NodeId, { instance: string; sinceMs: number }>()
  readonly #conflicted = new Map<NodeId, string[]>()

  constructor(private readonly settleMs: number) {}

  /** This instance of the node was found to be one of two live processes. */
  isConflicted(nodeId: NodeId, instance: string | null): boolean {
    return instance !== null && (this.#conflicted.get(nodeId)?.includes(instance) ?? false)
  }

  /**
   * A newcomer instance of `nodeId` while another instance's link is alive: true when both are
   * proven live (the held one was heard more than `settleMs` after the newcomer first showed up);
   * else the newcomer is noted and refused as a duplicate for now.
   */
  bothAlive(nodeId: NodeId, candidate: string, heldHeardAt: number, nowMs: number): boolean {
    const suspect = this.#suspects.get(nodeId)
    if (suspect === undefined || suspect.instance !== candidate) {
      this.#suspects.set(nodeId, { instance: candidate, sinceMs: nowMs })
      return false
    }
    return heldHeardAt - suspect.sinceMs > this.settleMs
  }

  /** The held link was proven dead and replaced: a restart, not a clone. */
  replaced(nodeId: NodeId): void {
    this.#suspects.delete(nodeId)
  }

  /** Both instances are refused from now on. */
  mark(nodeId: NodeId, instances: readonly string[]): void {
    this.#suspects.delete(nodeId)
    const known = this.#conflicted.get(nodeId) ?? []
    for (const instance of instances) if (!known.includes(instance)) known.push(instance)
    this.#conflicted.set(nodeId, known.slice(-CONFLICTED_PER_NODE_MAX))
  }
}
