/**
 * The client's side of `GET /v1/export` (src/http/export.ts): the request, and the stream read
 * back as lines of the export format (api/export-format.ts), kept apart from `MeshClient` so it
 * stays a list of calls. Opening fails over like any read; once open, the stream stays on the
 * node that answered (one snapshot of one node). A stream cut midway fails with
 * `MESHKV_ERR_EXPORT_TRUNCATED`, or, cut between two lines, ends without its trailer, which the
 * reader catches (`ExportReader.finish`): a cut-off export is never taken for a whole one.
 */
import { EXPORT_TYPES } from '../api/index.js'
import { MeshError } from '../errors.js'
import type { RequestSpec } from './transport.js'
import type { ClientExportOptions } from './types.js'

export function exportSpec(options: ClientExportOptions): RequestSpec {
  const types = options.types
  if (types !== undefined && (!Array.isArray(types) || !types.every((type) => EXPORT_TYPES.includes(type))))
    throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `types is a list of ${EXPORT_TYPES.join(', ')}`)
  return {
    method: 'GET',
    path: '/v1/export',
    query: { prefix: options.prefix, types: types?.join(',') },
    idempotent: true,
    signal: options.signal,
  }
}

/**
 * The lines of an export stream, without their newlines. A stream that breaks, or ends inside a
 * line, is `MESHKV_ERR_EXPORT_TRUNCATED`; one that ends cleanly before the trailer just ends.
 */
export async function* streamLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  const reader = stream.getReader()
  let pending = ''
  try {
    for (;;) {
      const chunk = await reader.read().catch((error: unknown) => {
        throw cutOff(`the connection ended: ${error instanceof Error ? error.message : String(error)}`, error)
      })
      if (chunk.done) break
      pending += decoder.decode(chunk.value, { stream: true })
      let at = pending.indexOf('\n')
      while (at >= 0) {
        yield pending.slice(0, at)
        pending = pending.slice(at + 1)
        at = pending.indexOf('\n')
      }
    }
    pending += decoder.decode()
    if (pending !== '') throw cutOff('it ends in the middle of a line')
  } finally {
    // Ends the request when the caller stops early (break, return, throw).
    await reader.cancel().catch(() => undefined)
  }
}

function cutOff(why: string, cause?: unknown): MeshError {
  return new MeshError('MESHKV_ERR_EXPORT_TRUNCATED', `the export stream was cut off: ${why}`, { cause })
}
