/**
 * Reading an open watch stream: server-sent events parsed, their data as JSON, an `event: error`
 * as the `MeshError` it carries, and a stream that ends as `MESHKV_ERR_UNREACHABLE` (a watch
 * never ends on its own).
 */
import { MeshError } from '../errors.js'
import { errorFromProblem } from './failure.js'
import { SseParser } from './sse.js'
import type { ClientWatchEvent } from './types.js'

/** The events of an open watch stream, until it ends, fails or `signal` aborts. */
export async function* readEvents(
  stream: ReadableStream<Uint8Array>,
  endpoint: string,
  signal: AbortSignal | undefined,
): AsyncGenerator<ClientWatchEvent> {
  const parser = new SseParser()
  const decoder = new TextDecoder()
  const reader = stream.getReader()
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>
      try {
        chunk = await reader.read()
      } catch (error) {
        if (signal?.aborted === true) return
        throw streamEnded(endpoint, parser.lastEventId, error)
      }
      if (chunk.done) throw streamEnded(endpoint, parser.lastEventId, undefined)
      for (const message of parser.push(decoder.decode(chunk.value, { stream: true }))) {
        const data = parseData(message.data)
        if (message.event === 'error') throw errorFromProblem(statusOfProblem(data), data, endpoint)
        yield { id: message.id, event: message.event, data, endpoint }
      }
    }
  } finally {
    // Ends the request when the caller stops early (break, return, throw).
    await reader.cancel().catch(() => undefined)
  }
}

function statusOfProblem(data: unknown): number {
  const status = typeof data === 'object' && data !== null ? (data as { status?: unknown }).status : undefined
  return typeof status === 'number' ? status : 500
}

function parseData(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function streamEnded(endpoint: string, lastEventId: string | undefined, cause: unknown): MeshError {
  return new MeshError('MESHKV_ERR_UNREACHABLE', `the watch stream from ${endpoint} ended`, {
    cause,
    details: { endpoint, ...(lastEventId === undefined ? {} : { lastEventId }) },
  })
}
