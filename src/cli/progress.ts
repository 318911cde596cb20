/**
 * A one-line progress bar on stderr for long runs (`kvctl export`, `kvctl import`): keys done of
 * the total, bytes, rate and time left, redrawn in place at most ten times a second. Only a
 * terminal gets it; a pipe or a file gets nothing, so logs and scripts stay clean.
 */
import type { Writable } from 'node:stream'

const REDRAW_MS = 100
const BAR_WIDTH = 20

export class Progress {
  readonly #stream: Writable
  readonly #label: string
  readonly #startedMs = Date.now()
  #total: number
  #keys = 0
  #bytes = 0
  #drawnMs = 0
  #shown = false

  /** A bar on `stream` if it is a terminal; otherwise every call does nothing. */
  static on(stream: Writable & { isTTY?: boolean }, label: string, total = 0): Progress | null {
    return stream.isTTY === true ? new Progress(stream, label, total) : null
  }

  private constructor(stream: Writable, label: string, total: number) {
    this.#stream = stream
    this.#label = label
    this.#total = total
  }

  set total(total: number) {
    this.#total = total
  }

  update(keys: number, bytes: number): void {
    this.#keys = keys
    this.#bytes = bytes
    const now = Date.now()
    if (now - this.#drawnMs < REDRAW_MS) return
    this.#drawnMs = now
    this.#draw(now)
  }

  /** The last figures (given, or the last ones updated), then a newline so the prompt starts on its own line. */
  end(keys = this.#keys, bytes = this.#bytes): void {
    this.#keys = keys
    this.#bytes = bytes
    this.#draw(Date.now())
    if (this.#shown) this.#stream.write('\n')
  }

  #draw(now: number): void {
    const seconds = Math.max((now - this.#startedMs) / 1000, 0.001)
    const rate = this.#keys / seconds
    const share = this.#total > 0 ? Math.min(this.#keys / this.#total, 1) : 0
    const filled = Math.round(share * BAR_WIDTH)
    const left = rate > 0 && this.#total > this.#keys ? (this.#total - this.#keys) / rate : 0
    const line =
      `${this.#label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ` +
      `${this.#keys}/${this.#total} keys  ${formatBytes(this.#bytes)}  ` +
      `${Math.round(rate)} keys/s  ${formatDuration(left)} left`
    this.#stream.write(`\r${line}\u001b[K`)
    this.#shown = true
  }
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}

function formatDuration(seconds: number): string {
  const whole = Math.ceil(seconds)
  const minutes = Math.floor(whole / 60)
  return `${minutes}:${String(whole % 60).padStart(2, '0')}`
}
