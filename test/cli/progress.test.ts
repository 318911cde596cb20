/**
 * The progress bar of `kvctl export` and `kvctl import`: drawn on a terminal (keys of the total,
 * bytes, rate, time left, redrawn in place), nothing at all on a pipe or a file. The processes
 * in the other tests run with stderr on a pipe and check that it stays empty.
 */
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { Progress, formatBytes } from '../../src/cli/progress.js'

function stream(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  const chunks: string[] = []
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString('utf8'))
      done()
    },
  })
  return Object.assign(out, { isTTY, text: () => chunks.join('') })
}

describe('Progress', () => {
  it('draws keys, bytes, rate and time left on a terminal, and ends with a newline', () => {
    const tty = stream(true)
    const progress = Progress.on(tty, 'import', 1000)
    expect(progress).not.toBeNull()
    progress?.update(250, 3 * 1024 * 1024)
    progress?.end()
    const text = tty.text()
    expect(text.startsWith('\rimport [#####...............] 250/1000 keys  3.0 MiB  ')).toBe(true)
    expect(text).toMatch(/\d+ keys\/s {2}\d+:\d\d left/)
    expect(text.endsWith('\n')).toBe(true)
  })

  it('is nothing on a pipe or a file', () => {
    expect(Progress.on(stream(false), 'export')).toBeNull()
  })

  it('says sizes in binary units', () => {
    expect([formatBytes(512), formatBytes(1536), formatBytes(5 * 1024 ** 3)]).toEqual(['512 B', '1.5 KiB', '5.0 GiB'])
  })
})
