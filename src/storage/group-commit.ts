/**
 * The group-commit queue. Commits queue up while a batch is being written, and the next batch
 * takes them all (up to a limit), so many concurrent writers share one disk write. Work that
 * must see no commit in flight (garbage collection, joining a snapshot) queues as a task and
 * runs alone, between groups, in the order it was asked for.
 *
 * The queue knows nothing of what a commit is: it hands groups to `runGroup`, which settles each
 * item itself.
 */

/** Work that runs alone, between two groups. */
interface Task {
  readonly run: () => Promise<void>
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
}

type Queued<Item> = { readonly task: Task } | { readonly item: Item }

export class GroupQueue<Item> {
  readonly #runGroup: (items: Item[]) => Promise<void>
  readonly #groupMax: number
  #queue: Queued<Item>[] = []
  #flushing: Promise<void> | null = null

  /** `runGroup` must settle every item it is given and must not throw. */
  constructor(runGroup: (items: Item[]) => Promise<void>, groupMax: number) {
    this.#runGroup = runGroup
    this.#groupMax = groupMax
  }

  /** Queues a commit for the next group. */
  push(item: Item): void {
    this.#queue.push({ item })
    this.#start()
  }

  /** Runs `run` once every commit queued before it is done, and before any queued after it. */
  exclusive(run: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ task: { run, resolve, reject } })
      this.#start()
    })
  }

  /** Resolves once nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.#flushing !== null) await this.#flushing
  }

  #start(): void {
    if (this.#flushing === null) this.#flushing = this.#flush()
  }

  async #flush(): Promise<void> {
    // Let the calls of this tick join the first group.
    await new Promise<void>((resolve) => setImmediate(resolve))
    while (this.#queue.length > 0) {
      const first = this.#queue[0] as Queued<Item>
      if ('task' in first) {
        this.#queue.shift()
        await first.task.run().then(first.task.resolve, first.task.reject)
        continue
      }
      let end = this.#queue.findIndex((queued) => 'task' in queued)
      if (end === -1) end = this.#queue.length
      const group = this.#queue.splice(0, Math.min(end, this.#groupMax)) as { item: Item }[]
      await this.#runGroup(group.map((queued) => queued.item))
    }
    this.#flushing = null
  }
}
