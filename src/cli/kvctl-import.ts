/**
 * `kvctl import FILE`: writes an export into any cluster as new writes, with the write concern of
 * `--w` (docs/operations.md, "Backup and restore"). Each entry becomes the write that makes the
 * target hold its view, and doing it twice changes nothing more: a key is put with its value and
 * content type, a counter is read and moved by the difference to the exported total, a set gets
 * its members added, a document its update applied (a Yjs merge). Entries with nothing live (a
 * deleted key or document) and the cluster's reserved sets are skipped.
 *
 * Resumable. Up to `parallel` writes are in flight; the checkpoint `FILE.import-progress` names
 * the last entry all of whose predecessors are acknowledged (and the session's causal token, so a
 * resumed run reads its counters after what the interrupted one wrote), rewritten atomically
 * (a temporary file, then a rename) at most every 200 ms and at the end of a run. `--resume` goes
 * on after it; the entries done beyond it are written again, which is harmless. A run that ends
 * in full removes the checkpoint.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import type { Writable } from 'node:stream'
import type { ExportEntry, ExportType, WriteConcern } from '../api/index.js'
import { isReservedKey } from '../api/index.js'
import type { MeshClient } from '../client/index.js'
import { MeshError } from '../errors.js'
import { checkExportFile, readExportFile } from './export-file.js'
import { Progress } from './progress.js'

type ImportClient = Pick<MeshClient, 'put' | 'counter' | 'incr' | 'sadd' | 'applyDocUpdate' | 'token' | 'observeToken'>

export interface ImportRun {
  client: ImportClient
  concern: { w?: WriteConcern; waitMs?: number }
  /** Where the progress bar goes (only when it is a terminal). */
  stderr: Writable & { isTTY?: boolean }
  resume: boolean
  parallel: number
}

export interface ImportSummary {
  entries: number
  /** Entries this run skipped because an earlier run had written them (`--resume`). */
  resumedAfter: number
  written: Record<ExportType, number>
  /** Nothing live (a deleted key or document), a counter already at its total, or a reserved set. */
  skipped: number
}

interface Checkpoint {
  /** The export's SHA-256 (from its trailer): a checkpoint of another file is refused. */
  sha256: string
  /** Entries 1..done are acknowledged. */
  done: number
  token: string | null
}

const CHECKPOINT_MS = 200
/** Members per set request: a body well inside a node's 1 MiB body limit. */
const SET_BODY_BYTES = 256 * 1024

export function checkpointPath(file: string): string {
  return `${file}.import-progress`
}

export async function importFile(run: ImportRun, file: string): Promise<ImportSummary> {
  const { header, trailer } = await checked(run, file)
  const progressFile = checkpointPath(file)
  const start = run.resume ? readCheckpoint(progressFile, trailer.sha256) : null
  if (start?.token != null) run.client.observeToken(start.token)
  const summary: ImportSummary = {
    entries: header.keys,
    resumedAfter: start?.done ?? 0,
    written: { kv: 0, counter: 0, set: 0, doc: 0 },
    skipped: 0,
  }
  const progress = Progress.on(run.stderr, 'import', header.keys)
  const window = new Window(summary.resumedAfter, (done) =>
    writeCheckpoint(progressFile, { sha256: trailer.sha256, done, token: run.client.token ?? start?.token ?? null }),
  )
  let index = 0
  let read = 0
  try {
    for await (const { line, bytes } of readExportFile(file)) {
      read = bytes
      if (line.kind !== 'entry' || ++index <= summary.resumedAfter) continue
      await window.room(run.parallel)
      if (window.failure !== undefined) break
      const entry = line.entry
      window.add(index, async () => {
        const wrote = await writeEntry(run, entry)
        if (wrote) summary.written[entry.space]++
        else summary.skipped++
      })
      progress?.update(window.done, bytes)
    }
  } finally {
    // Whatever stopped the run, the writes under way end and the checkpoint says where.
    await window.drain()
    progress?.end(window.done, read)
  }
  if (window.failure !== undefined) throw stopped(window.failure, window.done, header.keys)
  rmSync(progressFile, { force: true })
  return summary
}

/** The whole file checked before anything is written (a bar on a terminal: `check`). */
async function checked(run: ImportRun, file: string): ReturnType<typeof checkExportFile> {
  const checking = Progress.on(run.stderr, 'check ')
  try {
    return await checkExportFile(file, (entries, bytes, total) => {
      if (checking === null) return
      checking.total = total
      checking.update(entries, bytes)
    })
  } finally {
    checking?.end()
  }
}

/** Makes the target hold the entry's view; false when there was nothing to write. */
async function writeEntry(run: ImportRun, entry: ExportEntry): Promise<boolean> {
  const { client, concern } = run
  if (isReservedKey(entry.key)) return false
  switch (entry.space) {
    case 'kv':
      if (entry.value === null || entry.contentType === null) return false
      await client.put(entry.key, entry.value, { contentType: entry.contentType, ...concern })
      return true
    case 'counter': {
      const delta = entry.value - (await client.counter(entry.key))
      if (delta === 0) return false
      await client.incr(entry.key, delta, concern)
      return true
    }
    case 'set':
      for (const members of memberChunks(entry.members)) await client.sadd(entry.key, members, concern)
      return entry.members.length > 0
    case 'doc':
      if (entry.update === null) return false
      await client.applyDocUpdate(entry.key, entry.update, concern)
      return true
  }
}

function* memberChunks(members: readonly string[]): Generator<string[]> {
  let chunk: string[] = []
  let bytes = 0
  for (const member of members) {
    const size = Buffer.byteLength(member) + 8
    if (chunk.length > 0 && bytes + size > SET_BODY_BYTES) {
      yield chunk
      chunk = []
      bytes = 0
    }
    chunk.push(member)
    bytes += size
  }
  if (chunk.length > 0) yield chunk
}

/**
 * The writes in flight, and the frontier: the last entry all of whose predecessors are done.
 * `save` is told the frontier as it moves (at most every 200 ms) and once at the end.
 */
class Window {
  readonly #inFlight = new Set<Promise<void>>()
  readonly #finished = new Set<number>()
  readonly #save: (done: number) => void
  #savedMs = 0
  done: number
  failure: unknown = undefined

  constructor(done: number, save: (done: number) => void) {
    this.done = done
    this.#save = save
  }

  async room(parallel: number): Promise<void> {
    while (this.#inFlight.size >= parallel) await Promise.race(this.#inFlight)
  }

  add(index: number, write: () => Promise<void>): void {
    const running: Promise<void> = write().then(
      () => this.#finish(index),
      (error: unknown) => {
        this.failure ??= error
      },
    )
    const tracked = running.finally(() => this.#inFlight.delete(tracked))
    this.#inFlight.add(tracked)
  }

  async drain(): Promise<void> {
    await Promise.all(this.#inFlight)
    this.#save(this.done)
  }

  #finish(index: number): void {
    this.#finished.add(index)
    while (this.#finished.delete(this.done + 1)) this.done++
    const now = Date.now()
    if (now - this.#savedMs < CHECKPOINT_MS) return
    this.#savedMs = now
    this.#save(this.done)
  }
}

function readCheckpoint(path: string, sha256: string): Checkpoint | null {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    // No checkpoint: nothing was acknowledged yet, start from the first entry.
    return null
  }
  const checkpoint = JSON.parse(text) as Partial<Checkpoint>
  if (typeof checkpoint.done !== 'number' || !Number.isSafeInteger(checkpoint.done) || checkpoint.done < 0)
    throw new MeshError('MESHKV_ERR_DECODE', `${path} is not an import checkpoint`)
  if (checkpoint.sha256 !== sha256)
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `${path} belongs to another export file (its SHA-256 differs): remove it, or import without --resume`,
    )
  return { sha256, done: checkpoint.done, token: typeof checkpoint.token === 'string' ? checkpoint.token : null }
}

function writeCheckpoint(path: string, checkpoint: Checkpoint): void {
  const temporary = `${path}.tmp`
  writeFileSync(temporary, `${JSON.stringify(checkpoint)}\n`)
  renameSync(temporary, path)
}

/** The first failed write, said with where the import stopped and how to go on. */
function stopped(error: unknown, done: number, total: number): unknown {
  if (!(error instanceof MeshError)) return error
  return new MeshError(
    error.code,
    `${error.message}; the import stopped after ${done} of ${total} entries: run it again with --resume to go on`,
    { cause: error, ...(error.details === undefined ? {} : { details: error.details }) },
  )
}
