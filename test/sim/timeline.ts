/**
 * The virtual timeline: a priority queue of events by (time, insertion order). Nothing here reads
 * a real clock or sets a timer; time moves only when the simulator takes the next event.
 */

export interface TimedEvent {
  readonly atMs: number
  readonly seq: number
  readonly label: string
  readonly run: () => void
  cancelled: boolean
}

export class Timeline {
  nowMs: number
  #heap: TimedEvent[] = []
  #seq = 0

  constructor(startMs: number) {
    this.nowMs = startMs
  }

  get size(): number {
    return this.#heap.length
  }

  /** Schedules `run` at `atMs` (never before now). Returns the event, which `cancel` can drop. */
  at(atMs: number, label: string, run: () => void): TimedEvent {
    const event: TimedEvent = {
      atMs: Math.max(this.nowMs, Math.round(atMs)),
      seq: this.#seq++,
      label,
      run,
      cancelled: false,
    }
    this.#heap.push(event)
    this.#up(this.#heap.length - 1)
    return event
  }

  after(delayMs: number, label: string, run: () => void): TimedEvent {
    return this.at(this.nowMs + delayMs, label, run)
  }

  cancel(event: TimedEvent | null | undefined): void {
    if (event !== null && event !== undefined) event.cancelled = true
  }

  /** The time of the next live event, or undefined. */
  peekMs(): number | undefined {
    this.#dropCancelled()
    return this.#heap[0]?.atMs
  }

  /** Removes and returns the next live event, moving time to it. */
  next(): TimedEvent | undefined {
    this.#dropCancelled()
    const top = this.#heap[0]
    if (top === undefined) return undefined
    const last = this.#heap.pop() as TimedEvent
    if (this.#heap.length > 0) {
      this.#heap[0] = last
      this.#down(0)
    }
    this.nowMs = top.atMs
    return top
  }

  #dropCancelled(): void {
    while (this.#heap.length > 0 && (this.#heap[0] as TimedEvent).cancelled) {
      const last = this.#heap.pop() as TimedEvent
      if (this.#heap.length > 0) {
        this.#heap[0] = last
        this.#down(0)
      }
    }
  }

  #less(a: TimedEvent, b: TimedEvent): boolean {
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)
  }

  #up(index: number): void {
    const heap = this.#heap
    let i = index
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.#less(heap[i] as TimedEvent, heap[parent] as TimedEvent)) break
      ;[heap[i], heap[parent]] = [heap[parent] as TimedEvent, heap[i] as TimedEvent]
      i = parent
    }
  }

  #down(index: number): void {
    const heap = this.#heap
    let i = index
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let smallest = i
      if (left < heap.length && this.#less(heap[left] as TimedEvent, heap[smallest] as TimedEvent)) smallest = left
      if (right < heap.length && this.#less(heap[right] as TimedEvent, heap[smallest] as TimedEvent)) smallest = right
      if (smallest === i) return
      ;[heap[i], heap[smallest]] = [heap[smallest] as TimedEvent, heap[i] as TimedEvent]
      i = smallest
    }
  }
}
