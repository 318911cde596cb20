import { describe, expect, it } from 'vitest'
import { SSE_EVENT_CHARS_MAX, SseParser } from '../../src/client/sse.js'
import type { MeshError } from '../../src/errors.js'

describe('SseParser', () => {
  it('parses events with ids, types and multi-line data, skipping comments', () => {
    const parser = new SseParser()
    const text = ': heartbeat\n\nid: 7\nevent: put\ndata: {"a":\ndata: 1}\n\ndata: plain\n\n'
    expect(parser.push(text)).toEqual([
      { id: '7', event: 'put', data: '{"a":\n1}' },
      { id: '7', event: 'message', data: 'plain' },
    ])
    expect(parser.lastEventId).toBe('7')
  })

  it('gives the same events however the text is split, with LF, CRLF or CR line ends', () => {
    for (const end of ['\n', '\r\n', '\r']) {
      const text = [
        'id: 1',
        'event: del',
        'data: {"key":"k"}',
        '',
        ': hb',
        '',
        'id: 2',
        'event: counter',
        'data:x',
        '',
        // A CR at the very end may be half of a CRLF: the parser waits for the next character.
        ': tail',
        '',
      ].join(end)
      const whole = new SseParser().push(text)
      expect(whole).toEqual([
        { id: '1', event: 'del', data: '{"key":"k"}' },
        { id: '2', event: 'counter', data: 'x' },
      ])
      for (let cut = 1; cut < text.length; cut++) {
        const parser = new SseParser()
        expect([...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))]).toEqual(whole)
      }
    }
    const parser = new SseParser()
    expect(parser.push('data: a\r\r')).toEqual([])
    expect(parser.push('\n')).toEqual([{ id: undefined, event: 'message', data: 'a' }])
  })

  it('dispatches nothing for an event without data, and its id does not move the cursor', () => {
    const parser = new SseParser()
    expect(parser.push('id: 2\ndata: a\n\n')).toEqual([{ id: '2', event: 'message', data: 'a' }])
    expect(parser.push('id: 3\nevent: put\n\n')).toEqual([])
    expect(parser.lastEventId).toBe('2')
  })

  it('joins a data line split across chunks, even inside a multi-byte character', () => {
    const parser = new SseParser()
    const bytes = new TextEncoder().encode('id: 9\nevent: put\ndata: {"value":"héllo"}\n\n')
    const decoder = new TextDecoder()
    // Cut inside the two bytes of é: the decoder holds the first byte back until the second comes.
    const cut = bytes.indexOf(0xc3) + 1
    expect(parser.push(decoder.decode(bytes.subarray(0, cut), { stream: true }))).toEqual([])
    expect(parser.push(decoder.decode(bytes.subarray(cut), { stream: true }))).toEqual([
      { id: '9', event: 'put', data: '{"value":"héllo"}' },
    ])
  })

  it('passes over heartbeat comments between and inside events', () => {
    const parser = new SseParser()
    expect(parser.push(': heartbeat\n\n')).toEqual([])
    expect(parser.push('id: 4\n: heartbeat\ndata: x\n\n: heartbeat\n\n')).toEqual([
      { id: '4', event: 'message', data: 'x' },
    ])
    expect(parser.lastEventId).toBe('4')
  })

  it('keeps the last id as the cursor of later events that carry none', () => {
    const parser = new SseParser()
    expect(parser.push('id: 5.0\nevent: put\ndata: 1\n\nevent: del\ndata: 2\n\n')).toEqual([
      { id: '5.0', event: 'put', data: '1' },
      { id: '5.0', event: 'del', data: '2' },
    ])
    // An id holding NUL is ignored, as the standard says: the cursor stays where it was.
    expect(parser.push('id: 6\u0000\ndata: 3\n\n')).toEqual([{ id: '5.0', event: 'message', data: '3' }])
    expect(parser.lastEventId).toBe('5.0')
  })

  it('refuses an event larger than its bound with MESHKV_ERR_FRAME_TOO_LARGE, then stays failed', () => {
    const parser = new SseParser()
    const line = 'data: ' + 'x'.repeat(1024 * 1024) + '\n'
    let code: string | undefined
    try {
      for (let sent = 0; sent <= SSE_EVENT_CHARS_MAX; sent += line.length) parser.push(line)
    } catch (error) {
      code = (error as MeshError).code
    }
    expect(code).toBe('MESHKV_ERR_FRAME_TOO_LARGE')
    expect(() => parser.push('data: y\n\n')).toThrow(expect.objectContaining({ code: 'MESHKV_ERR_FRAME_TOO_LARGE' }))
  })
})
