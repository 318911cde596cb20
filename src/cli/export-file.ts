/**
 * Reading an export file (api/export-format.ts) for `kvctl import` and `meshkv restore`: line by
 * line, each line checked by `ExportReader` (with the SHA-256 its trailer names), and the end of
 * the file checked for the trailer. Both tools read a file through twice: once to check all of
 * it, so a cut-off or damaged file is refused before anything is written, then to write.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { ExportHeader, ExportLine, ExportTrailer } from '../api/index.js'
import { ExportReader } from '../api/index.js'
import { MeshError } from '../errors.js'

export interface ReadLine {
  line: ExportLine
  /** Bytes of the file read so far, this line and its newline included. */
  bytes: number
}

/** Every line of the export in `path`, checked; throws at the end if the trailer never came. */
export async function* readExportFile(path: string): AsyncGenerator<ReadLine> {
  const size = await fileSize(path)
  const reader = new ExportReader(createHash('sha256'))
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity })
  let bytes = 0
  try {
    for await (const text of lines) {
      bytes += Buffer.byteLength(text) + 1
      // Past the size: the file's last line, without a newline.
      yield { line: reader.line(text, bytes <= size), bytes: Math.min(bytes, size) }
    }
  } finally {
    lines.close()
  }
  reader.finish()
}

/**
 * Reads the whole export in `path` and checks it: its header and trailer, and its size in bytes.
 * `progress` hears the entries and bytes read so far, and the header's count of entries.
 */
export async function checkExportFile(
  path: string,
  progress?: (entries: number, bytes: number, total: number) => void,
): Promise<{ header: ExportHeader; trailer: ExportTrailer; bytes: number }> {
  let header: ExportHeader | undefined
  let trailer: ExportTrailer | undefined
  let bytes = 0
  let entries = 0
  for await (const read of readExportFile(path)) {
    bytes = read.bytes
    if (read.line.kind === 'header') header = read.line.header
    if (read.line.kind === 'entry') entries++
    if (read.line.kind === 'end') trailer = read.line.trailer
    progress?.(entries, bytes, header?.keys ?? 0)
  }
  // readExportFile ends only after a header and a trailer, or throws.
  if (header === undefined || trailer === undefined) throw new MeshError('MESHKV_ERR_INTERNAL', 'no trailer read')
  return { header, trailer, bytes }
}

/** The size of the file, or `MESHKV_ERR_NOT_FOUND` when there is none to read. */
export async function fileSize(path: string): Promise<number> {
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new MeshError('MESHKV_ERR_INVALID_ARGUMENT', `${path} is not a file`)
    return info.size
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT')
      throw new MeshError('MESHKV_ERR_NOT_FOUND', `there is no file ${path}`, { cause: error })
    throw error
  }
}
