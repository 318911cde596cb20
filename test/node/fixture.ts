/**
 * One data directory per test, and the nodes opened on it closed after it: what most test/node
 * files need. `nodeFixture('name')` registers the hooks in the calling file; `open(options)` opens a
 * `MeshNode` on the test's directory, `dir()` names it, and `closeAfter` adds other things to close.
 */
import { afterEach, beforeEach } from 'vitest'
import type { MeshNodeOptions } from '../../src/node/index.js'
import { MeshNode } from '../../src/node/index.js'
import { tempDir } from '../helpers/async.js'

export interface NodeFixture {
  /** The current test's data directory. */
  dir: () => string
  /** A node on the test's directory (closed after the test). */
  open: (options?: Partial<MeshNodeOptions>) => Promise<MeshNode>
  /** Closes `thing` after the test, before the directory goes. */
  closeAfter: (thing: { close: () => Promise<void> }) => void
}

export function nodeFixture(name: string): NodeFixture {
  let dir = ''
  let removeDir: () => Promise<void> = async () => {}
  const closing: { close: () => Promise<void> }[] = []
  beforeEach(async () => {
    ;({ dir, remove: removeDir } = await tempDir(name))
  })
  afterEach(async () => {
    for (const thing of closing.splice(0)) await thing.close()
    await removeDir()
  })
  return {
    dir: () => dir,
    open: async (options = {}) => {
      const node = await MeshNode.open({ dir, ...options })
      closing.push(node)
      return node
    },
    closeAfter: (thing) => closing.push(thing),
  }
}
