/** The driver's side of a worker spoken to in JSON lines over stdin/stdout (bench/workers/embedded-node.ts). */
import type { Proc } from './procs.js'

export class WorkerRpc {
  #nextId = 1
  readonly #pending = new Map<
    number,
    { resolve: (value: Record<string, unknown>) => void; reject: (error: Error) => void }
  >()

  constructor(readonly proc: Proc) {
    proc.onLine((line) => {
      if (!line.startsWith('{')) return
      let message: Record<string, unknown>
      try {
        message = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      const id = message['id']
      if (typeof id !== 'number') return
      const waiter = this.#pending.get(id)
      if (waiter === undefined) return
      this.#pending.delete(id)
      if (typeof message['error'] === 'string') waiter.reject(new Error(`${proc.name}: ${message['error']}`))
      else waiter.resolve(message)
    })
    void proc.exited.then(() => {
      for (const waiter of this.#pending.values())
        waiter.reject(new Error(`${proc.name} ended; stderr:\n${proc.stderr}`))
      this.#pending.clear()
    })
  }

  call<T = Record<string, unknown>>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      if (!this.proc.running) {
        reject(new Error(`${this.proc.name} is not running`))
        return
      }
      this.#pending.set(id, { resolve: resolve as (value: Record<string, unknown>) => void, reject })
      this.proc.child.stdin.write(`${JSON.stringify({ id, cmd, ...args })}\n`)
    })
  }
}
