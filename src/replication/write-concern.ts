/**
 * Write concern, replication's side: waiting until enough members hold a change. How a concern is
 * parsed and how many members it asks for is src/api/concern.ts (one rule for the node, HTTP, the
 * client and kvctl); this file only counts holders as acknowledgements arrive.
 */
import type { Dot } from '../clock/index.js'

interface HolderWaiter {
  readonly dot: Dot
  readonly required: number
  readonly resolve: () => void
}

/** Callers waiting for a change to reach a number of holders; `check()` runs after each ack. */
export class HolderWaiters {
  readonly #waiters = new Set<HolderWaiter>()

  /** `holders(dot)` counts the members (this node included) that hold `dot`. */
  constructor(private readonly holders: (dot: Dot) => number) {}

  /** Resolves once `required` members hold `dot`. `cancel` drops the wait (the caller's timeout). */
  wait(dot: Dot, required: number): { promise: Promise<void>; cancel: () => void } {
    let waiter: HolderWaiter | undefined
    const promise = new Promise<void>((resolve) => {
      if (this.holders(dot) >= required) {
        resolve()
        return
      }
      waiter = { dot, required, resolve }
      this.#waiters.add(waiter)
    })
    return { promise, cancel: () => (waiter === undefined ? undefined : void this.#waiters.delete(waiter)) }
  }

  /** Resolves every waiter whose change now has enough holders. */
  check(): void {
    for (const waiter of this.#waiters) {
      if (this.holders(waiter.dot) >= waiter.required) {
        this.#waiters.delete(waiter)
        waiter.resolve()
      }
    }
  }

  /** On close: every waiter is let go (the caller's own timeout or close path answers it). */
  releaseAll(): void {
    for (const waiter of this.#waiters) waiter.resolve()
    this.#waiters.clear()
  }
}
