/**
 * A document's top-level shared types as JSON, for people and scripts (`?format=json`).
 *
 * A Yjs update names each top-level type but not its kind: a client decides that by calling
 * `getText`, `getMap`, ... So the kind is read from the content, by a documented convention:
 * a type with live keys and no live list content is a Map; list content of strings, formats or
 * embeds is Text; of XML elements or XML text an XmlFragment (rendered as its XML string); any
 * other list content is an Array. A caller that knows better names the kinds (`hints`, from
 * `?types=body:text,meta:map`): a hinted type is always rendered, as the empty value of its kind
 * when it has no content. A type with no live content and no hint is left out.
 */
import * as Y from 'yjs'
import { MeshError } from '../errors.js'
import type { DocState } from './doc.js'
import { loadDoc } from './doc.js'

export type DocTypeKind = 'text' | 'map' | 'array' | 'xml'
export const DOC_TYPE_KINDS: readonly DocTypeKind[] = ['text', 'map', 'array', 'xml']

const CONSTRUCTORS = {
  text: Y.Text,
  map: Y.Map,
  array: Y.Array,
  xml: Y.XmlFragment,
} as const

/** Parses `name:kind,name:kind` (`MESHKV_ERR_INVALID_ARGUMENT` for anything else). */
export function parseTypeHints(text: string): Map<string, DocTypeKind> {
  const hints = new Map<string, DocTypeKind>()
  for (const part of text.split(',')) {
    const at = part.lastIndexOf(':')
    const name = part.slice(0, at)
    const kind = part.slice(at + 1) as DocTypeKind
    if (at <= 0 || !DOC_TYPE_KINDS.includes(kind))
      throw new MeshError(
        'MESHKV_ERR_INVALID_ARGUMENT',
        `types: expected name:kind pairs (kind one of ${DOC_TYPE_KINDS.join(', ')}); got ${JSON.stringify(part)}`,
      )
    hints.set(name, kind)
  }
  return hints
}

export function docJson(state: DocState, hints: ReadonlyMap<string, DocTypeKind> = new Map()): Record<string, unknown> {
  const doc = loadDoc(state.update)
  try {
    const kinds = new Map<string, DocTypeKind>()
    for (const [name, type] of doc.share) {
      const kind = inferKind(type)
      if (kind !== null) kinds.set(name, kind)
    }
    for (const [name, kind] of hints) kinds.set(name, kind)
    const out: Record<string, unknown> = {}
    for (const name of [...kinds.keys()].sort()) {
      const type = doc.get(name, CONSTRUCTORS[kinds.get(name) as DocTypeKind] as never) as Y.AbstractType<never>
      out[name] = type.toJSON()
    }
    return out
  } finally {
    doc.destroy()
  }
}

/** The kind a top-level type's live content shows, or null when it has none. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- doc.share holds AbstractType<YEvent<any>>
function inferKind(type: Y.AbstractType<Y.YEvent<any>>): DocTypeKind | null {
  for (let item = type._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue
    const content = item.content
    if (content instanceof Y.ContentString || content instanceof Y.ContentEmbed) return 'text'
    if (content instanceof Y.ContentType)
      return content.type instanceof Y.XmlElement || content.type instanceof Y.XmlText ? 'xml' : 'array'
    return 'array'
  }
  for (const item of type._map.values()) if (!item.deleted) return 'map'
  // Formatting marks alone (not countable) still say Text.
  for (let item = type._start; item !== null; item = item.right)
    if (!item.deleted && item.content instanceof Y.ContentFormat) return 'text'
  return null
}
