/**
 * The export file (`GET /v1/export`, `kvctl export`, `meshkv backup`) and its reader, shared by
 * every tool that reads one (`kvctl import`, `meshkv restore`). docs/operations.md, "Backup and
 * restore", describes the format; in short, NDJSON, one JSON object per line:
 *
 *   {"format":"meshkv-export","version":1,"node","vc","lsn","createdAt","types","prefix","full","keys"}
 *   {"space":"kv","key","value":base64|null,"contentType":string|null,"state":base64}
 *   {"space":"counter","key","value":number,"state":base64}
 *   {"space":"set","key","members":[...],"state":base64}
 *   {"space":"doc","key","update":base64|null,"state":base64}
 *   {"end":true,"keys","counts":{"kv","counter","set","doc"},"sha256"}
 *
 * Each entry carries a view for new writes (`kvctl import`: the value that wins, the counter's
 * total, the members, the document as one Yjs update; null when nothing is live) and the stored
 * CRDT state (msgpack), which `meshkv restore` joins under the header's clock. The trailer's
 * counts and its SHA-256 of every byte before it make a cut-off or edited file fail as a whole
 * (`MESHKV_ERR_EXPORT_TRUNCATED`) before anything is written; a line that is not one of these
 * shapes is `MESHKV_ERR_DECODE`. Pure: base64 through the `Buffer` global, the hash handed in.
 */
import { MeshError } from '../errors.js'

export const EXPORT_FORMAT = 'meshkv-export'
export const EXPORT_VERSION = 1
/** The media type of an export stream. */
export const EXPORT_MEDIA_TYPE = 'application/x-ndjson'

export type ExportType = 'kv' | 'counter' | 'set' | 'doc'
export const EXPORT_TYPES: readonly ExportType[] = ['kv', 'counter', 'set', 'doc']

export interface ExportHeader {
  format: typeof EXPORT_FORMAT
  version: number
  /** The node the snapshot was read on. */
  node: string
  /** Its vector clock at the snapshot: the states reflect exactly the changes it covers. */
  vc: Record<string, number>
  lsn: number
  createdAt: string
  types: ExportType[]
  prefix: string
  /** Every state of the snapshot is in the file (no prefix, every type, the reserved sets): restorable. */
  full: boolean
  /** Entries that follow. */
  keys: number
}

export type ExportEntry =
  | { space: 'kv'; key: string; value: Uint8Array | null; contentType: string | null; state: Uint8Array }
  | { space: 'counter'; key: string; value: number; state: Uint8Array }
  | { space: 'set'; key: string; members: string[]; state: Uint8Array }
  | { space: 'doc'; key: string; update: Uint8Array | null; state: Uint8Array }

export interface ExportTrailer {
  end: true
  keys: number
  counts: Record<ExportType, number>
  /** Hex SHA-256 of every byte of the file before the trailer line. */
  sha256: string
}

export type ExportLine =
  | { kind: 'header'; header: ExportHeader }
  | { kind: 'entry'; entry: ExportEntry }
  | { kind: 'end'; trailer: ExportTrailer }

/** The running SHA-256 the reader and the writer keep (node:crypto's `Hash` fits). */
export interface ExportHash {
  update(data: string): unknown
  digest(encoding: 'hex'): string
}

/** `kv,set` as `?types=` and `--types` take it: known types, in their export order (none given: all). */
export function parseExportTypes(text: string | undefined): ExportType[] {
  if (text === undefined || text === '') return [...EXPORT_TYPES]
  const types = text.split(',').map((type) => type.trim())
  for (const type of types)
    if (!EXPORT_TYPES.includes(type as ExportType))
      throw new MeshError(
        'MESHKV_ERR_INVALID_ARGUMENT',
        `types takes ${EXPORT_TYPES.join(', ')}, separated by commas; got ${JSON.stringify(type)}`,
      )
  return EXPORT_TYPES.filter((type) => types.includes(type))
}

/** Keys starting with U+0000 are the cluster's own sets (members, forgotten, tokens). */
export function isReservedKey(key: string): boolean {
  return key.startsWith('\u0000')
}

/** An entry as one line (without its newline). */
export function exportEntryLine(entry: ExportEntry): string {
  const base = { space: entry.space, key: entry.key }
  const state = base64(entry.state)
  switch (entry.space) {
    case 'kv':
      return JSON.stringify({ ...base, value: nullable(entry.value), contentType: entry.contentType, state })
    case 'counter':
      return JSON.stringify({ ...base, value: entry.value, state })
    case 'set':
      return JSON.stringify({ ...base, members: entry.members, state })
    case 'doc':
      return JSON.stringify({ ...base, update: nullable(entry.update), state })
  }
}

/**
 * Checks an export line by line: the header first, entries of the header's types and prefix,
 * the trailer last with matching counts and digest. `finish()` at the end of the input throws
 * if no trailer came.
 */
export class ExportReader {
  readonly #hash: ExportHash
  #header: ExportHeader | null = null
  #trailer: ExportTrailer | null = null
  #lines = 0
  readonly counts: Record<ExportType, number> = { kv: 0, counter: 0, set: 0, doc: 0 }

  constructor(hash: ExportHash) {
    this.#hash = hash
  }

  get header(): ExportHeader | null {
    return this.#header
  }

  /** Entries read so far. */
  get entries(): number {
    return this.#lines === 0 ? 0 : this.#lines - 1 - (this.#trailer === null ? 0 : 1)
  }

  /**
   * Checks the next line. `terminated` is false for a last line without its newline: every line
   * of an export ends in one, so if that line does not parse, the file was cut inside it.
   */
  line(text: string, terminated = true): ExportLine {
    this.#lines++
    const where = `line ${this.#lines}`
    if (this.#trailer !== null) throw decodeError(`${where} follows the trailer`)
    let json: Record<string, unknown>
    try {
      json = parseObject(text, where)
    } catch (error) {
      if (terminated || this.#header === null) throw error
      throw new MeshError('MESHKV_ERR_EXPORT_TRUNCATED', `the export ends in the middle of ${where}: it was cut off`)
    }
    if (this.#header === null) {
      this.#header = checkHeader(json, where)
      this.#hash.update(`${text}\n`)
      return { kind: 'header', header: this.#header }
    }
    if (json['end'] === true) {
      this.#trailer = checkTrailer(json, where, this.#header, this.counts, this.#hash.digest('hex'))
      return { kind: 'end', trailer: this.#trailer }
    }
    const entry = checkEntry(json, where, this.#header)
    this.counts[entry.space]++
    this.#hash.update(`${text}\n`)
    return { kind: 'entry', entry }
  }

  /** At the end of the input: the file must have ended with its trailer. */
  finish(): { header: ExportHeader; trailer: ExportTrailer } {
    if (this.#header === null) throw decodeError('the file is empty: it is not a meshkv export')
    if (this.#trailer === null)
      throw new MeshError(
        'MESHKV_ERR_EXPORT_TRUNCATED',
        `the export ends after ${this.entries} of its ${this.#header.keys} entries, without its trailer: it was cut off`,
      )
    return { header: this.#header, trailer: this.#trailer }
  }
}

function checkHeader(json: Record<string, unknown>, where: string): ExportHeader {
  if (json['format'] !== EXPORT_FORMAT) throw decodeError(`${where}: this is not a meshkv export (no format header)`)
  if (json['version'] !== EXPORT_VERSION)
    throw decodeError(`${where}: export version ${String(json['version'])}; this meshkv reads ${EXPORT_VERSION}`)
  const types = json['types']
  if (!Array.isArray(types) || !types.every((type) => EXPORT_TYPES.includes(type as ExportType)))
    throw decodeError(`${where}: types must be a list of ${EXPORT_TYPES.join(', ')}`)
  const vc = json['vc']
  if (!isClock(vc)) throw decodeError(`${where}: vc is not a vector clock`)
  return {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    node: stringOf(json, 'node', where),
    vc,
    lsn: countOf(json, 'lsn', where),
    createdAt: stringOf(json, 'createdAt', where),
    types: types as ExportType[],
    prefix: stringOf(json, 'prefix', where),
    full: json['full'] === true,
    keys: countOf(json, 'keys', where),
  }
}

function checkEntry(json: Record<string, unknown>, where: string, header: ExportHeader): ExportEntry {
  const space = json['space']
  const key = stringOf(json, 'key', where)
  if (!header.types.includes(space as ExportType))
    throw decodeError(`${where}: space ${JSON.stringify(space)} is not one of the export's types`)
  if (!key.startsWith(header.prefix) && !(header.full && isReservedKey(key)))
    throw decodeError(`${where}: key ${JSON.stringify(key)} is outside the export's prefix`)
  const state = bytesOf(json, 'state', where)
  switch (space as ExportType) {
    case 'kv': {
      const value = json['value'] === null ? null : bytesOf(json, 'value', where)
      const contentType = json['contentType'] === null ? null : stringOf(json, 'contentType', where)
      if ((value === null) !== (contentType === null))
        throw decodeError(`${where}: a kv entry has a value and a content type, or neither`)
      return { space: 'kv', key, value, contentType, state }
    }
    case 'counter': {
      const value = json['value']
      if (!Number.isSafeInteger(value)) throw decodeError(`${where}: a counter's value is an integer`)
      return { space: 'counter', key, value: value as number, state }
    }
    case 'set': {
      const members = json['members']
      if (!Array.isArray(members) || !members.every((member) => typeof member === 'string'))
        throw decodeError(`${where}: a set's members are a list of strings`)
      return { space: 'set', key, members: members as string[], state }
    }
    case 'doc':
      return { space: 'doc', key, update: json['update'] === null ? null : bytesOf(json, 'update', where), state }
  }
}

function checkTrailer(
  json: Record<string, unknown>,
  where: string,
  header: ExportHeader,
  counts: Record<ExportType, number>,
  sha256: string,
): ExportTrailer {
  const keys = countOf(json, 'keys', where)
  const given = json['counts'] as Record<string, unknown> | undefined
  const read = EXPORT_TYPES.reduce((sum, type) => sum + counts[type], 0)
  const countsMatch =
    typeof given === 'object' && given !== null && EXPORT_TYPES.every((type) => given[type] === counts[type])
  if (keys !== header.keys || keys !== read || !countsMatch)
    throw new MeshError(
      'MESHKV_ERR_EXPORT_TRUNCATED',
      `${where}: the trailer counts ${keys} entries, the header ${header.keys}, and the file holds ${read}: lines are missing`,
    )
  if (json['sha256'] !== sha256)
    throw new MeshError(
      'MESHKV_ERR_EXPORT_TRUNCATED',
      `${where}: the file's SHA-256 is not the one its trailer names: it was changed after it was written`,
    )
  return { end: true, keys, counts: { ...counts }, sha256 }
}

function parseObject(text: string, where: string): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw decodeError(`${where} is not JSON: this is not a meshkv export, or it is damaged`, error)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw decodeError(`${where} is not a JSON object`)
  return json as Record<string, unknown>
}

function stringOf(json: Record<string, unknown>, name: string, where: string): string {
  const value = json[name]
  if (typeof value !== 'string') throw decodeError(`${where}: ${name} is not a string`)
  return value
}

function countOf(json: Record<string, unknown>, name: string, where: string): number {
  const value = json[name]
  if (!Number.isSafeInteger(value) || (value as number) < 0)
    throw decodeError(`${where}: ${name} is not a whole number`)
  return value as number
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

function bytesOf(json: Record<string, unknown>, name: string, where: string): Uint8Array {
  const value = json[name]
  if (typeof value !== 'string' || !BASE64.test(value)) throw decodeError(`${where}: ${name} is not base64`)
  return new Uint8Array(Buffer.from(value, 'base64'))
}

function isClock(value: unknown): value is Record<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  return Object.entries(value).every(
    ([node, seq]) => /^[0-9a-f]{16}$/.test(node) && Number.isSafeInteger(seq) && (seq as number) >= 1,
  )
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

function nullable(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : base64(bytes)
}

function decodeError(message: string, cause?: unknown): MeshError {
  return new MeshError('MESHKV_ERR_DECODE', message, cause === undefined ? {} : { cause })
}
