/**
 * `kvctl export` and `kvctl import` (docs/operations.md, "Backup and restore"). Export writes one
 * node's consistent export (`GET /v1/export`) to stdout exactly as the node sent it, checking
 * every line on the way: a stream cut off midway ends in `MESHKV_ERR_EXPORT_TRUNCATED` and exit 1,
 * so `kvctl export > FILE && ...` never goes on with half a file. Import is kvctl-import.ts. Both
 * draw a progress bar on stderr when it is a terminal, and nothing else there otherwise.
 */
import { createHash } from 'node:crypto'
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import type { ExportType, WriteConcern } from '../api/index.js'
import { EXPORT_TYPES, ExportReader, parseExportTypes } from '../api/index.js'
import type { MeshClient } from '../client/index.js'
import type { KvctlIo } from './kvctl-io.js'
import type { ImportSummary } from './kvctl-import.js'
import { importFile } from './kvctl-import.js'
import type { OutputFormat } from './kvctl-output.js'
import { jsonText } from './kvctl-output.js'
import { positiveIntegerOption } from './options.js'
import { Progress } from './progress.js'

/** What the backup verbs need from kvctl's context. */
export interface BackupContext {
  client: Pick<MeshClient, 'export' | 'put' | 'counter' | 'incr' | 'sadd' | 'applyDocUpdate' | 'token' | 'observeToken'>
  concern: { w?: WriteConcern; waitMs?: number }
  format: OutputFormat
  io: Pick<KvctlIo, 'stderr'>
  out: (data: string | Uint8Array) => Promise<void>
}

/** Writes in flight at once during an import, unless `--parallel` says otherwise. */
const PARALLEL_DEFAULT = 8

/** `kvctl export` and `kvctl import`, under `program`. */
export function backupVerbs(program: Command, context: (command: Command) => BackupContext): void {
  program
    .command('export')
    .description("write a consistent export of one node (every key's value, counter, set and document) to stdout")
    .option('--prefix <prefix>', 'only keys and names starting with this')
    .option('--types <types>', `only these types, separated by commas: ${EXPORT_TYPES.join(',')}`, typesOption)
    .action((options: { prefix?: string; types?: ExportType[] }, command: Command) =>
      exportTo(context(command), options),
    )
  program
    .command('import <file>')
    .description('write an export into the cluster as new writes (with --w); --resume goes on after an interruption')
    .option('--resume', 'go on from FILE.import-progress, where an interrupted import stopped')
    .option('--parallel <n>', `writes in flight at once (default ${PARALLEL_DEFAULT})`, positiveIntegerOption)
    .action((file: string, options: { resume?: boolean; parallel?: number }, command: Command) =>
      importFrom(context(command), file, options),
    )
}

async function exportTo(context: BackupContext, options: { prefix?: string; types?: ExportType[] }): Promise<void> {
  const reader = new ExportReader(createHash('sha256'))
  const stderr = context.io.stderr as KvctlIo['stderr'] & { isTTY?: boolean }
  const progress = Progress.on(stderr, 'export')
  let bytes = 0
  try {
    for await (const text of context.client.export(options)) {
      const line = reader.line(text)
      if (line.kind === 'header' && progress !== null) progress.total = line.header.keys
      const data = `${text}\n`
      bytes += Buffer.byteLength(data)
      await context.out(data)
      progress?.update(reader.entries, bytes)
    }
  } finally {
    progress?.end()
  }
  reader.finish()
}

async function importFrom(
  context: BackupContext,
  file: string,
  options: { resume?: boolean; parallel?: number },
): Promise<void> {
  const summary = await importFile(
    {
      client: context.client,
      concern: context.concern,
      stderr: context.io.stderr as KvctlIo['stderr'] & { isTTY?: boolean },
      resume: options.resume === true,
      parallel: options.parallel ?? PARALLEL_DEFAULT,
    },
    file,
  )
  await context.out(context.format === 'plain' ? summaryLine(summary) : jsonText(context.format, summary))
}

function summaryLine(summary: ImportSummary): string {
  const written = EXPORT_TYPES.map((type) => `${type} ${summary.written[type]}`).join(', ')
  const resumed = summary.resumedAfter > 0 ? `, resumed after entry ${summary.resumedAfter}` : ''
  return `imported ${summary.entries} entries (written: ${written}; unchanged or nothing live: ${summary.skipped}${resumed})\n`
}

function typesOption(text: string): ExportType[] {
  try {
    return parseExportTypes(text)
  } catch (error) {
    throw new InvalidArgumentError(error instanceof Error ? error.message : String(error))
  }
}
