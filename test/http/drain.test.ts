/**
 * The drain of a graceful close (src/http/drain.ts), on a real socket: a connection kept alive
 * after an answer is not closed under a request the client sends on it while the app closes. The
 * request gets 503 MESHKV_ERR_NOT_READY with `Connection: close` (which a client retries on
 * another node), where the server used to close the idle connection at once and the request was
 * lost on the wire. New connections are refused meanwhile.
 */
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { describe, expect, it, vi } from 'vitest'
import { closeApp } from '../../src/http/app.js'
import { openHarness } from './helpers.js'

/** Reads from `socket` until `done` says the bytes so far are whole (or the socket ends). */
function readUntil(socket: Socket, done: (text: string) => boolean): Promise<{ text: string; ended: boolean }> {
  return new Promise((resolve) => {
    let text = ''
    const finish = (ended: boolean): void => {
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve({ text, ended })
    }
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8')
      if (done(text)) finish(false)
    }
    const onClose = (): void => finish(true)
    socket.on('data', onData)
    socket.on('close', onClose)
  })
}

/** A whole HTTP/1.1 answer with a Content-Length body. */
function whole(text: string): boolean {
  const end = text.indexOf('\r\n\r\n')
  if (end < 0) return false
  const length = /content-length: *(\d+)/i.exec(text.slice(0, end))
  return length !== null && text.length >= end + 4 + Number(length[1])
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(port, '127.0.0.1')
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
}

describe('closeApp drains kept-alive connections', () => {
  it('answers a request sent on an idle kept-alive connection while closing with 503 and Connection: close', async () => {
    const own = await openHarness()
    try {
      await own.app.listen({ port: 0, host: '127.0.0.1' })
      const port = (own.app.server.address() as { port: number }).port
      const socket = connect(port, '127.0.0.1')
      // A server that closes the connection under the request shows as no answer, below.
      socket.on('error', () => undefined)
      await new Promise((resolve) => socket.once('connect', resolve))
      const request = 'GET /livez HTTP/1.1\r\nHost: node\r\n\r\n'
      socket.write(request)
      const first = await readUntil(socket, whole)
      expect(first.text).toMatch(/^HTTP\/1\.1 200 /)
      expect(first.text.toLowerCase()).toContain('connection: keep-alive')

      const closing = closeApp(own.app)
      // The close has begun once new connections are refused; the kept-alive one is still open.
      await vi.waitFor(async () => expect(await canConnect(port)).toBe(false), { timeout: 5_000, interval: 10 })
      socket.write(request)
      const second = await readUntil(socket, whole)
      expect(second.text).toMatch(/^HTTP\/1\.1 503 /)
      expect(second.text).toContain('"code":"MESHKV_ERR_NOT_READY"')
      expect(second.text.toLowerCase()).toContain('connection: close')
      socket.destroy()
      await closing
    } finally {
      await own.close()
    }
  })
})
