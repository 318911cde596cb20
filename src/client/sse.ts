/**
 * Server-sent events (`text/event-stream`) over text chunks, parsed by `eventsource-parser`. This
 * file adds what a watch needs on top: the resumable cursor and a bound on one buffered event.
 *
 * The cursor: `eventsource-parser` reports each event with the `id:` given in that event only,
 * while a stream's cursor is the last `id:` seen on any event before (WHATWG's "last event ID").
 * meshkv's node sends an `id:` with every event, but a stream that leaves it out of one event
 * still resumes from the last id it had, as browsers do.
 *
 * A chunk that ends in a lone CR holds its line back until the next character shows whether the
 * CR is half of a CRLF. The node ends lines with LF, so its events are never held back.
 */
import type { EventSourceMessage, ParseError } from 'eventsource-parser'
import { createParser } from 'eventsource-parser'
import { MeshError } from '../errors.js'

export interface SseMessage {
  /** The `id:` of this event, or the last one seen before it (the resumable cursor). */
  id: string | undefined
  /** The `event:` type; `message` when absent. */
  event: string
  data: string
}

/**
 * Bound on one buffered event, in characters (a line not yet ended and the data lines of an event
 * not yet dispatched). The largest event the node sends is a put of the largest value a node
 * takes, 3 MiB, as base64 inside JSON: about 4 Mi characters. Four times that leaves room for the
 * key and the other fields while a hostile or broken stream still cannot fill memory.
 */
export const SSE_EVENT_CHARS_MAX = 16 * 1024 * 1024

export class SseParser {
  #lastId: string | undefined
  #completed: SseMessage[] = []
  #failure: MeshError | undefined
  readonly #parser = createParser({
    maxBufferSize: SSE_EVENT_CHARS_MAX,
    onEvent: (message) => this.#completed.push(this.#message(message)),
    onError: (error) => this.#fail(error),
  })

  /** Feeds decoded text; returns the events it completed. Throws once an event is too large. */
  push(text: string): SseMessage[] {
    if (this.#failure !== undefined) throw this.#failure
    this.#parser.feed(text)
    const completed = this.#completed
    this.#completed = []
    if (this.#failure !== undefined) throw this.#failure
    return completed
  }

  /** The cursor to resume from: the last `id:` of an event this parser has dispatched. */
  get lastEventId(): string | undefined {
    return this.#lastId
  }

  #message(message: EventSourceMessage): SseMessage {
    if (message.id !== undefined) this.#lastId = message.id
    return { id: this.#lastId, event: message.event ?? 'message', data: message.data }
  }

  #fail(error: ParseError): void {
    // `retry:` and unknown fields are reported here too: this client reconnects by its own rules
    // and ignores fields it does not know, as the standard says.
    if (error.type !== 'max-buffer-size-exceeded') return
    this.#failure = new MeshError(
      'MESHKV_ERR_FRAME_TOO_LARGE',
      `a watch event is larger than ${SSE_EVENT_CHARS_MAX} characters`,
      { cause: error },
    )
  }
}
