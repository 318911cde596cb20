/**
 * How kvctl shows results. `plain` is for people and shell pipelines: bare values, one key or
 * member per line, no colour. `json` is one JSON document (a listing is one array), `ndjson` one
 * compact JSON object per line (streams are always one object per line). Values in JSON appear
 * as the node shows them: JSON values parsed, text as a string, other bytes as `valueBase64`.
 */
import { isJsonType, isTextType } from '../api/index.js'
import type {
  ClientEntry,
  TokenInfo,
  ClientListItem,
  ClientMember,
  ClientSibling,
  ClientStatus,
  ClientWatchEvent,
} from '../client/index.js'

export const OUTPUT_FORMATS = ['plain', 'json', 'ndjson'] as const
export type OutputFormat = (typeof OUTPUT_FORMATS)[number]

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

function utf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes)
  } catch {
    return undefined
  }
}

export function valueFields(value: Uint8Array, contentType: string): { value: unknown } | { valueBase64: string } {
  const text = isJsonType(contentType) || isTextType(contentType) ? utf8(value) : undefined
  if (text !== undefined && isJsonType(contentType)) {
    try {
      return { value: JSON.parse(text) }
    } catch {
      // Stored under a JSON type but not JSON: shown as the text it is.
    }
  }
  if (text !== undefined) return { value: text }
  return { valueBase64: Buffer.from(value).toString('base64') }
}

/** A value shown on one plain line: its text when it is UTF-8, else `base64:<...>`. */
function plainValue(value: Uint8Array): string {
  const text = utf8(value)
  return text !== undefined && !/[\r\n]/.test(text) ? text : `base64:${Buffer.from(value).toString('base64')}`
}

/** One JSON document: pretty for `json`, compact for `ndjson`; always ends in a newline. */
export function jsonText(format: OutputFormat, data: unknown): string {
  return (format === 'json' ? JSON.stringify(data, null, 2) : JSON.stringify(data)) + '\n'
}

export function entryJson(entry: ClientEntry): Record<string, unknown> {
  const base = {
    key: entry.key,
    contentType: entry.contentType,
    version: entry.version,
    siblings: entry.siblingCount,
    ...valueFields(entry.value, entry.contentType),
  }
  if (entry.siblings === undefined) return base
  return { ...base, siblings: entry.siblings.map(siblingJson) }
}

function siblingJson(sibling: ClientSibling): Record<string, unknown> {
  const { value, ...rest } = sibling
  if (value === null || sibling.contentType === null) return rest
  return { ...rest, ...valueFields(value, sibling.contentType) }
}

/** Plain `get --siblings`: one line per sibling, `<node>\t<content type or (deleted)>\t<value>`. */
export function siblingLines(entry: ClientEntry): string {
  return (entry.siblings ?? [])
    .map((sibling) => {
      const node = String(sibling['node'] ?? '')
      if (sibling.value === null) return `${node}\t(deleted)\t\n`
      return `${node}\t${sibling.contentType ?? ''}\t${plainValue(sibling.value)}\n`
    })
    .join('')
}

export function listItemJson(item: ClientListItem): Record<string, unknown> {
  return {
    key: item.key,
    contentType: item.contentType,
    version: item.version,
    siblings: item.siblingCount,
    ...valueFields(item.value, item.contentType),
  }
}

/** Plain `watch`: `<cursor> <event> <key or name> [value, delta, member or bytes=<update size>]`. */
export function watchLine(event: ClientWatchEvent): string {
  const data = typeof event.data === 'object' && event.data !== null ? (event.data as Record<string, unknown>) : {}
  const subject = String(data['key'] ?? data['name'] ?? '')
  let detail = ''
  if (event.event === 'put') {
    if (typeof data['valueBase64'] === 'string') detail = `base64:${data['valueBase64']}`
    else if (typeof data['value'] === 'string') detail = plainValue(Buffer.from(data['value'], 'utf8'))
    else detail = JSON.stringify(data['value'])
  } else if (event.event === 'counter') detail = String(data['delta'] ?? '')
  else if (event.event === 'set.add' || event.event === 'set.remove') detail = String(data['member'] ?? '')
  // An update is binary and may be large: its size says that something changed, and how much.
  else if (event.event === 'doc' && typeof data['update'] === 'string')
    detail = `bytes=${Buffer.from(data['update'], 'base64').length}`
  return [event.id ?? '-', event.event, subject, detail].filter((part) => part !== '').join(' ') + '\n'
}

export function watchJson(event: ClientWatchEvent): Record<string, unknown> {
  const data = typeof event.data === 'object' && event.data !== null ? event.data : { data: event.data }
  return { id: event.id, event: event.event, ...data }
}

/** `kvctl members`: one row per member. */
export function memberLines(members: readonly ClientMember[]): string {
  return table([
    ['NODE', 'ROLE', 'STATE', 'URL'],
    ...members.map((member) => [
      member.nodeId + (member.self ? ' *' : ''),
      member.role,
      member.state,
      member.url ?? '-',
    ]),
  ])
}

/** `kvctl token ls`: one row per token, never its secret. */
export function tokenTable(tokens: readonly TokenInfo[]): string {
  return table([
    ['ID', 'ROLE', 'PREFIX', 'NAME', 'CREATED'],
    ...tokens.map((token) => [token.id, token.role, token.prefix ?? '-', token.name ?? '-', token.createdAt]),
  ])
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows
    .map(
      (row) =>
        row
          .map((cell, column) => cell.padEnd(widths[column]!))
          .join('  ')
          .trimEnd() + '\n',
    )
    .join('')
}

export function statusLines(status: ClientStatus): string {
  const lines = [
    ['node', status.endpoint],
    ['nodeId', status.nodeId],
    ['ready', String(status.ready)],
    ['version', status.version],
    ['lsn', String(status.lsn)],
    ['uptimeMs', String(status.uptimeMs)],
    ['storage', status.storage],
    ['token', status.token],
    ['members', String(status.members ?? 1)],
  ]
  // Why a node that is not ready takes no writes, in its own words (a restore, a clone, a restart).
  if (status.seqGuard !== undefined && status.seqGuard.state !== 'writable')
    lines.push(['writes', `${status.seqGuard.state}: ${status.seqGuard.reason ?? ''}`])
  const head = lines.map(([name, value]) => `${name}: ${value}\n`).join('')
  const peers = status.peers ?? []
  if (peers.length === 0) return head
  const rows = [['PEER', 'URL', 'STATE', 'LAG_CHANGES', 'LAG_MS', 'LAST_SEEN_MS']]
  for (const peer of peers) {
    rows.push([
      peer.nodeId ?? '-',
      peer.url ?? '-',
      peer.state,
      String(peer.lagChanges),
      String(peer.lagMs),
      peer.lastSeenMs === null ? '-' : String(peer.lastSeenMs),
    ])
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return (
    head +
    'peers:\n' +
    rows
      .map(
        (row) =>
          '  ' +
          row
            .map((cell, column) => cell.padEnd(widths[column]!))
            .join('  ')
            .trimEnd() +
          '\n',
      )
      .join('')
  )
}
