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
class Task {
  constructor(
    readonly run: () => Promise<void>,
    readonly resolve: () => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

/**
 * Stages one group and returns its write. `previous` resolves once the group before it is
 * written and settled (staging may wait for it when it cannot be staged on a group in flight).
 * Neither may throw: every item is settled by one of them.
 */
export type StageGroup<Item> = (items: Item[], previous: Promise<void>) => Promise<() => Promise<void>>

export class GroupQueue<Item> {
  readonly #stage: StageGroup<Item>
  readonly #groupMax: number
  /**
   * Items and tasks in order from `#head` (what is before it was taken). A catch-up queues
   * hundreds of thousands of changes at once: groups are taken by moving `#head`, not by shifting
   * the array, and the taken part is cut off once it is most of the array.
   */
  #queue: (Item | Task)[] = []
  #head = 0
  /** Tasks in the queue: while there are none, a group is the next `#groupMax` entries. */
  #tasks = 0
  #flushing: Promise<void> | null = null
  /** Wakes a flush that waits, with a write in flight, for more to stage. */
  #pushed: (() => void) | null = null

  constructor(stage: StageGroup<Item>, groupMax: number) {
    this.#stage = stage
    this.#groupMax = groupMax
  }

  /** Queues a commit for the next group. */
  push(item: Item): void {
    this.#queue.push(item)
    this.#start()
    this.#wake()
  }

  /** Runs `run` once every commit queued before it is done, and before any queued after it. */
  exclusive(run: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push(new Task(run, resolve, reject))
      this.#tasks++
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

  /** The next group: the items up to the next task, at most `#groupMax`. */
  #takeGroup(): Item[] {
    const queue = this.#queue
    const from = this.#head
    let end = Math.min(queue.length, from + this.#groupMax)
    if (this.#tasks > 0)
      for (let index = from; index < end; index++)
        if (queue[index] instanceof Task) {
          end = index
          break
        }
    const group = queue.slice(from, end) as Item[]
    this.#head = end
    if (end > 4096 && end * 2 > queue.length) {
      queue.splice(0, end)
      this.#head = 0
    }
    return group
  }

  async #flush(): Promise<void> {
    // Let the calls of this tick join the first group.
    await new Promise<void>((resolve) => setImmediate(resolve))
    let writing: Promise<void> | null = null
    for (;;) {
      if (this.#head === this.#queue.length) {
        this.#queue = []
        this.#head = 0
        if (writing === null) break
        // What is queued while a batch is written is staged at once (all a tick's pushes: this
        // resumes after them), not when the write is done.
        if (await this.#writtenOrPushed(writing)) writing = null
        continue
      }
      const first = this.#queue[this.#head]
      if (first instanceof Task) {
        // A task runs with no write in flight.
        if (writing !== null) {
          await writing
          writing = null
        }
        this.#head++
        this.#tasks--
        await first.run().then(first.resolve, first.reject)
        continue
      }
      const write = await this.#stage(this.#takeGroup(), writing ?? Promise.resolve())
      if (writing !== null) await writing
      writing = write()
    }
    this.#flushing = null
  }
}
