/**
 * A server-sent events parser (the WHATWG `text/event-stream` rules) over text chunks. Lines end
 * in LF, CRLF or CR; `field: value` lines build an event, `:` lines are comments (heartbeats),
 * and a blank line dispatches the event when it has data. Pure: the caller feeds decoded text.
 */
import { MeshError } from '../errors.js'

export interface SseMessage {
  /** The `id:` of this event, or the last one seen before it (the resumable cursor). */
  id: string | undefined
  /** The `event:` type; `message` when absent. */
  event: string
  data: string
}

/** Bound on one buffered event (a 64 MiB value, base64 inside JSON, fits). */
export const SSE_EVENT_CHARS_MAX = 96 * 1024 * 1024

export class SseParser {
  #buffer = ''
  #data: string[] = []
  #dataChars = 0
  #event = ''
  #lastId: string | undefined
  /** A chunk that ended in CR: an LF at the start of the next chunk belongs to that line end. */
  #pendingCr = false

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): SseMessage[] {
    let chunk = text
    if (this.#pendingCr && chunk.startsWith('\n')) chunk = chunk.slice(1)
    this.#pendingCr = false
    this.#buffer += chunk
    const messages: SseMessage[] = []
    const lineEnd = /\r\n|\r|\n/g
    let start = 0
    for (let match = lineEnd.exec(this.#buffer); match !== null; match = lineEnd.exec(this.#buffer)) {
      // A CR at the very end may be the first half of a CRLF split across chunks.
      if (match[0] === '\r' && match.index === this.#buffer.length - 1) this.#pendingCr = true
      const message = this.#line(this.#buffer.slice(start, match.index))
      if (message !== undefined) messages.push(message)
      start = lineEnd.lastIndex
    }
    this.#buffer = this.#buffer.slice(start)
    if (this.#buffer.length + this.#dataChars > SSE_EVENT_CHARS_MAX) {
      throw new MeshError(
        'MESHKV_ERR_FRAME_TOO_LARGE',
        `a watch event is larger than ${SSE_EVENT_CHARS_MAX} characters`,
      )
    }
    return messages
  }

  get lastEventId(): string | undefined {
    return this.#lastId
  }

  #line(line: string): SseMessage | undefined {
    if (line === '') return this.#dispatch()
    if (line.startsWith(':')) return undefined
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'data':
        this.#data.push(value)
        this.#dataChars += value.length + 1
        break
      case 'event':
        this.#event = value
        break
      case 'id':
        if (!value.includes('\0')) this.#lastId = value
        break
      default:
        // `retry` and unknown fields: this client reconnects by its own rules.
        break
    }
    return undefined
  }

  #dispatch(): SseMessage | undefined {
    const data = this.#data
    const event = this.#event
    this.#data = []
    this.#dataChars = 0
    this.#event = ''
    if (data.length === 0) return undefined
    return { id: this.#lastId, event: event === '' ? 'message' : event, data: data.join('\n') }
  }
}
