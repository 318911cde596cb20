import { describe, expect, it } from 'vitest'
import { SseParser } from '../../src/client/sse.js'

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
  })

  it('dispatches nothing for an event without data', () => {
    const parser = new SseParser()
    expect(parser.push('id: 3\nevent: put\n\n')).toEqual([])
    expect(parser.lastEventId).toBe('3')
  })
})
