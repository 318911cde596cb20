/**
 * Writing an export (api/export-format.ts) from one store snapshot: the same consistent view the
 * snapshot sender streams to a new peer (`Store.snapshot()`, its raw states), so every entry
 * reflects exactly the header's vector clock. A live node exports through `MeshNode.export`
 * (`GET /v1/export`); a stopped node's directory through `backupDirectory` (backup.ts).
 *
 * The states are walked twice: once to count them (the header says how many follow, so a reader
 * can show progress and a cut-off file is told apart from a short one), once to write them.
 */
import { createHash } from 'node:crypto'
import type { ExportEntry, ExportHeader, ExportType } from '../api/index.js'
import { EXPORT_FORMAT, EXPORT_TYPES, EXPORT_VERSION, exportEntryLine, isReservedKey } from '../api/index.js'
import { decodeState } from '../codec/index.js'
import type { Space } from '../crdt/index.js'
import { counterValue, docHasContent, lwwSibling, setMembers } from '../crdt/index.js'
import type { StoreSnapshot } from '../storage/index.js'
import { listRange } from './list.js'

export interface ExportOptions {
  /** Only keys and names starting with this (default: all). */
  prefix?: string
  /** Only these types (default: all four). */
  types?: readonly ExportType[]
  /**
   * Include the cluster's reserved sets (members, forgotten members, tokens by their hashes).
   * Only a full export (no prefix, every type) with them can be restored (`meshkv restore`).
   */
  reserved?: boolean
}

/** The export of `snapshot` as lines, each ending in a newline: header, entries, trailer. */
export async function* exportLines(
  snapshot: StoreSnapshot,
  source: { node: string; createdAt: string },
  options: ExportOptions = {},
): AsyncGenerator<string> {
  const prefix = options.prefix ?? ''
  const types = options.types ?? EXPORT_TYPES
  const reserved = options.reserved === true && prefix === ''
  const range = listRange({ prefix })
  const wanted = (key: string): boolean => reserved || !isReservedKey(key)
  let keys = 0
  for (const space of types) for await (const [key] of snapshot.iterateRaw(space, range)) if (wanted(key)) keys++
  const header: ExportHeader = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    node: source.node,
    vc: snapshot.vc,
    lsn: snapshot.lsn,
    createdAt: source.createdAt,
    types: [...types],
    prefix,
    full: reserved && types.length === EXPORT_TYPES.length,
    keys,
  }
  const hash = createHash('sha256')
  const counts: Record<ExportType, number> = { kv: 0, counter: 0, set: 0, doc: 0 }
  const emit = (line: string): string => {
    hash.update(line)
    return line
  }
  yield emit(`${JSON.stringify(header)}\n`)
  for (const space of types) {
    for await (const [key, bytes] of snapshot.iterateRaw(space, range)) {
      if (!wanted(key)) continue
      counts[space]++
      yield emit(`${exportEntryLine(entryOf(space, key, bytes))}\n`)
    }
  }
  // A state written between the two walks cannot appear: both read the one snapshot.
  yield `${JSON.stringify({ end: true, keys, counts, sha256: hash.digest('hex') })}\n`
}

/** One stored state as an entry: its view for new writes, and the state itself. */
function entryOf(space: Space, key: string, state: Uint8Array): ExportEntry {
  switch (space) {
    case 'kv': {
      const winner = lwwSibling(decodeState('kv', state))
      const live = winner !== undefined && winner.value !== null && winner.contentType !== null
      return {
        space,
        key,
        value: live ? winner.value : null,
        contentType: live ? winner.contentType : null,
        state,
      }
    }
    case 'counter':
      return { space, key, value: counterValue(decodeState('counter', state)), state }
    case 'set':
      return { space, key, members: setMembers(decodeState('set', state)), state }
    case 'doc': {
      const doc = decodeState('doc', state)
      return { space, key, update: docHasContent(doc) ? doc.update : null, state }
    }
  }
}
