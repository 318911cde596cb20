/** HTTP PUT writers run from the driver: at a fixed rate (open loop), or as fast as acknowledged. */
import { put } from './http.js'
import { keyOf } from './populate.js'
import { nowMs, sleep } from './procs.js'

export interface WriterResult {
  sent: number
  acked: number
  errors: number
  seconds: number
  rate: number
  firstError?: string
}

/**
 * Writes `count` keys (`keyOf(prefix, i)`) to `base` (or to `base(i)`) at `rate` per second, open
 * loop: request i is sent at start + i/rate whatever the earlier ones did (at most
 * `maxOutstanding` unanswered, so a stalled node does not make the driver pile up sockets).
 * `onAck` gets each key when its answer arrived.
 */
export async function writeAtRate(
  base: string | ((i: number) => string),
  options: {
    prefix: string
    rate: number
    count: number
    valueBytes: number
    maxOutstanding?: number
    /** Each answer: its key, when it was read, its causal token and its entity tag. */
    onAck?: (key: string, atMs: number, token: string | undefined, etag: string | undefined) => void
    onSend?: (key: string, atMs: number) => void
  },
): Promise<WriterResult> {
  const value = Buffer.alloc(options.valueBytes, 0x64)
  const maxOutstanding = options.maxOutstanding ?? 2048
  let sent = 0
  let acked = 0
  let errors = 0
  let outstanding = 0
  let firstError: string | undefined
  const inflight: Promise<void>[] = []
  const started = nowMs()
  while (sent < options.count) {
    const due = Math.min(options.count, Math.floor(((nowMs() - started) / 1000) * options.rate) + 1)
    while (sent < due && outstanding < maxOutstanding) {
      const url = typeof base === 'string' ? base : base(sent)
      const key = keyOf(options.prefix, sent++)
      outstanding++
      options.onSend?.(key, nowMs())
      inflight.push(
        put(url, key, value).then(
          (answer) => {
            acked++
            outstanding--
            const token = answer.headers['x-causal-token']
            options.onAck?.(key, nowMs(), typeof token === 'string' ? token : undefined, answer.headers.etag)
          },
          (error: unknown) => {
            errors++
            outstanding--
            firstError ??= String(error)
          },
        ),
      )
    }
    await sleep(1)
  }
  await Promise.all(inflight)
  const seconds = (nowMs() - started) / 1000
  return { sent, acked, errors, seconds, rate: acked / seconds, ...(firstError === undefined ? {} : { firstError }) }
}

/** Writes with `inflight` requests in flight for `seconds`; the acknowledged rate. */
export async function writeClosedLoop(
  base: string,
  options: { prefix: string; inflight: number; seconds: number; valueBytes: number },
): Promise<WriterResult> {
  const value = Buffer.alloc(options.valueBytes, 0x65)
  let sent = 0
  let acked = 0
  let errors = 0
  const started = nowMs()
  const endAt = started + options.seconds * 1000
  await Promise.all(
    Array.from({ length: options.inflight }, async () => {
      while (nowMs() < endAt) {
        const key = keyOf(options.prefix, sent++)
        try {
          await put(base, key, value)
          acked++
        } catch {
          errors++
        }
      }
    }),
  )
  const seconds = (nowMs() - started) / 1000
  return { sent, acked, errors, seconds, rate: acked / seconds }
}
