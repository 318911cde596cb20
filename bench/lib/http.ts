/**
 * A small keep-alive HTTP client on node:http for the benchmark driver (cheaper per request than
 * fetch), and the SSE reader used to observe replication.
 */
import { Agent, request as httpRequest } from 'node:http'
import type { IncomingMessage } from 'node:http'

export const agent = new Agent({ keepAlive: true, maxSockets: 256 })

export interface Answer {
  status: number
  headers: IncomingMessage['headers']
  body: Buffer
}

export function request(
  url: string,
  options: { method?: string; body?: Uint8Array | string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: options.method ?? 'GET', agent, headers: options.headers, timeout: options.timeoutMs ?? 30_000 },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)))
    req.on('error', reject)
    req.end(options.body)
  })
}

export async function getJson<T = Record<string, unknown>>(url: string, timeoutMs = 10_000): Promise<T> {
  const answer = await request(url, { timeoutMs })
  if (answer.status !== 200)
    throw new Error(`GET ${url} answered ${answer.status}: ${answer.body.toString().slice(0, 300)}`)
  return JSON.parse(answer.body.toString()) as T
}

export async function put(base: string, key: string, value: Uint8Array, query = ''): Promise<Answer> {
  const answer = await request(`${base}/v1/kv/${encodeURIComponent(key)}${query}`, {
    method: 'PUT',
    body: value,
    headers: { 'content-type': 'application/octet-stream' },
  })
  if (answer.status !== 200 && answer.status !== 201)
    throw new Error(`PUT ${key} answered ${answer.status}: ${answer.body.toString().slice(0, 300)}`)
  return answer
}

/**
 * Follows `GET /v1/watch` and calls `onEvent` with each event's parsed data (and the time it was
 * read). Resolves once the stream's headers arrived; `close()` ends it.
 */
export function watch(
  base: string,
  prefix: string,
  onEvent: (data: Record<string, unknown>, atMs: number) => void,
): Promise<{ close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${base}/v1/watch?prefix=${encodeURIComponent(prefix)}`,
      { headers: { accept: 'text/event-stream' } },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`watch on ${base} answered ${res.statusCode}`))
          res.resume()
          return
        }
        res.setEncoding('utf8')
        let buffered = ''
        res.on('data', (chunk: string) => {
          const atMs = performance.now()
          buffered += chunk
          let end: number
          while ((end = buffered.indexOf('\n\n')) !== -1) {
            const block = buffered.slice(0, end)
            buffered = buffered.slice(end + 2)
            for (const line of block.split('\n')) {
              if (line.startsWith('data: ')) {
                try {
                  onEvent(JSON.parse(line.slice(6)) as Record<string, unknown>, atMs)
                } catch {
                  // not an event we read
                }
              }
            }
          }
        })
        res.on('error', () => undefined)
        resolve({ close: () => req.destroy() })
      },
    )
    req.on('error', (error) => reject(error))
    req.end()
  })
}
