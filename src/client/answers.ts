/**
 * A node's answer, read into memory, and what it means: success, a problem (a `MeshError` with
 * the node's code), a missing key, a JSON body, a key's siblings.
 */
import { MeshError } from '../errors.js'
import { errorFromProblem } from './failure.js'
import type { ClientEntry } from './types.js'
import { asRecord, malformed, sibling, stringField, winningSibling } from './wire.js'

/**
 * Largest answer body read into memory, judged by the Content-Length the node sends. It bounds
 * the client's memory, not a value: one value is at most 3 MiB (the highest value limit a node
 * takes), and a key's siblings fit many times over. A listing page of up to 1000 large values can
 * pass it; such a page is refused with MESHKV_ERR_FRAME_TOO_LARGE, and a smaller `limit` reads it.
 */
export const RESPONSE_BYTES_MAX = 96 * 1024 * 1024

/** A buffered answer from one node. */
export interface Answer {
  status: number
  headers: Headers
  body: Uint8Array
  endpoint: string
}

export async function readAnswer(response: Response, endpoint: string): Promise<Answer> {
  const length = Number(response.headers.get('content-length') ?? '0')
  if (length > RESPONSE_BYTES_MAX) {
    await response.body?.cancel()
    throw new MeshError(
      'MESHKV_ERR_FRAME_TOO_LARGE',
      `the answer from ${endpoint} is ${length} bytes; the client reads at most ${RESPONSE_BYTES_MAX}`,
    )
  }
  const body = new Uint8Array(await response.arrayBuffer())
  return { status: response.status, headers: response.headers, body, endpoint }
}

function problemOf(answer: Answer): MeshError {
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder().decode(answer.body))
  } catch {
    body = undefined
  }
  return errorFromProblem(answer.status, body, answer.endpoint)
}

export function checkAnswer(answer: Answer): void {
  if (answer.status < 200 || answer.status >= 300) throw problemOf(answer)
}

export function isNotFound(answer: Answer): boolean {
  return answer.status === 404 && problemOf(answer).code === 'MESHKV_ERR_NOT_FOUND'
}

export function jsonOf(answer: Answer): Record<string, unknown> {
  checkAnswer(answer)
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder().decode(answer.body))
  } catch (error) {
    throw new MeshError('MESHKV_ERR_DECODE', `the answer from ${answer.endpoint} is not JSON`, { cause: error })
  }
  return asRecord(body, 'the answer')
}

export function siblingCountOf(header: string | null): number {
  if (header === null) return 1
  const count = Number(header)
  return Number.isSafeInteger(count) && count >= 1 ? count : 1
}

export function entryWithSiblings(key: string, answer: Answer): ClientEntry | undefined {
  const body = jsonOf(answer)
  const raw = body['siblings']
  if (!Array.isArray(raw)) throw malformed('siblings is not a list')
  const siblings = raw.map(sibling)
  const winner = winningSibling(siblings)
  if (winner === undefined || winner.value === null || winner.contentType === null) return undefined
  return {
    key,
    value: winner.value,
    contentType: winner.contentType,
    version: stringField(body, 'version'),
    siblingCount: siblings.length,
    siblings,
  }
}
