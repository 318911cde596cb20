/**
 * The group-commit queue. Commits queue up while a batch is being written, and the next group
 * takes them all (up to a limit), so many concurrent writers share one disk write. Work that
 * must see no commit in flight (garbage collection, joining a snapshot) queues as a task and
 * runs alone, between groups, in the order it was asked for.
 *
 * Groups are pipelined one deep: group N+1 is staged (its states read and merged, its batch
 * built) while group N's batch is being written, and its batch is written once N's is done. Only
 * the write waits: on a node that is busy the main thread would otherwise sit idle while LevelDB
 * writes a batch on its thread pool. Staging a group on one still in flight is the caller's part
 * (what N+1 reads must include what N writes, and a failed N must fail N+1: commit-group.ts).
 *
 * The queue knows nothing of what a commit is: it hands groups to `stage`, which returns the
 * group's write; the write settles each item itself.
 */

/** Work that runs alone, between two groups. */
interface Task {
  readonly run: () => Promise<void>
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
}

type Queued<Item> = { readonly task: Task } | { readonly item: Item }

/**
 * Stages one group and returns its write. `previous` resolves once the group before it is
 * written and settled (staging may wait for it when it cannot be staged on a group in flight).
 * Neither may throw: every item is settled by one of them.
 */
export type StageGroup<Item> = (items: Item[], previous: Promise<void>) => Promise<() => Promise<void>>

export class GroupQueue<Item> {
  readonly #stage: StageGroup<Item>
  readonly #groupMax: number
  #queue: Queued<Item>[] = []
  #flushing: Promise<void> | null = null
  /** Wakes a flush that waits, with a write in flight, for more to stage. */
  #pushed: (() => void) | null = null

  constructor(stage: StageGroup<Item>, groupMax: number) {
    this.#stage = stage
    this.#groupMax = groupMax
  }

  /** Queues a commit for the next group. */
  push(item: Item): void {
    this.#queue.push({ item })
    this.#start()
    this.#wake()
  }

  /** Runs `run` once every commit queued before it is done, and before any queued after it. */
  exclusive(run: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ task: { run, resolve, reject } })
      this.#start()
      this.#wake()
    })
  }

  /** Resolves once nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.#flushing !== null) await this.#flushing
  }

  #start(): void {
    if (this.#flushing === null) this.#flushing = this.#flush()
  }

  #wake(): void {
    const pushed = this.#pushed
    this.#pushed = null
    pushed?.()
  }

  /** True once `writing` is done, false when something was queued first. */
  #writtenOrPushed(writing: Promise<void>): Promise<boolean> {
    const pushed = new Promise<boolean>((resolve) => (this.#pushed = () => resolve(false)))
    return Promise.race([writing.then(() => true), pushed])
  }

  async #flush(): Promise<void> {
    // Let the calls of this tick join the first group.
    await new Promise<void>((resolve) => setImmediate(resolve))
    let writing: Promise<void> | null = null
    for (;;) {
      const first = this.#queue[0]
      if (first === undefined) {
        if (writing === null) break
        // What is queued while a batch is written is staged at once (all a tick's pushes: this
        // resumes after them), not when the write is done.
        if (await this.#writtenOrPushed(writing)) writing = null
        continue
      }
      if ('task' in first) {
        // A task runs with no write in flight.
        if (writing !== null) {
          await writing
          writing = null
        }
        this.#queue.shift()
        await first.task.run().then(first.task.resolve, first.task.reject)
        continue
      }
      let end = this.#queue.findIndex((queued) => 'task' in queued)
      if (end === -1) end = this.#queue.length
      const group = this.#queue.splice(0, Math.min(end, this.#groupMax)) as { item: Item }[]
      const write = await this.#stage(
        group.map((queued) => queued.item),
        writing ?? Promise.resolve(),
      )
      if (writing !== null) await writing
      writing = write()
    }
    this.#flushing = null
  }
}
