/**
 * `meshkv backup` and `meshkv restore` (docs/operations.md, "Backup and restore"): the export of
 * a stopped node's data directory to a file, and an empty data directory filled from one. The
 * work is the node's (node/backup.ts); this file is the command line around it. A backup is
 * written to `FILE.partial` and renamed to FILE once complete, so a FILE is never half a backup.
 */
import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Command } from 'commander'
import type { ExportEntry } from '../api/index.js'
import { backupDirectory, restoreDirectory } from '../node/index.js'
import { checkExportFile, readExportFile } from './export-file.js'

/** `meshkv backup` and `meshkv restore`, under `program`. */
export function backupCommands(program: Command): void {
  program
    .command('backup')
    .description("write a full export of a stopped node's data directory (meshkv restore reads it)")
    .requiredOption('--dir <dir>', "the node's data directory; the node must be stopped")
    .requiredOption('--out <file>', 'the file to write, or - for stdout')
    .action((flags: { dir: string; out: string }) => backup(flags.dir, flags.out))
  program
    .command('restore <file>')
    .description('fill an empty data directory from a backup; a node started on it joins its cluster as a new member')
    .requiredOption('--dir <dir>', 'the data directory to fill: it must be empty or missing')
    .action((file: string, flags: { dir: string }) => restore(file, flags.dir))
}

async function backup(dir: string, out: string): Promise<void> {
  const lines = Readable.from(backupDirectory(dir))
  if (out === '-') {
    // A reader that went away (`meshkv backup --out - | head`) is not an error of the backup's.
    process.stdout.on('error', () => undefined)
    return pipeline(lines, process.stdout, { end: false }).catch((error: unknown) => {
      if ((error as { code?: unknown }).code !== 'EPIPE') throw error
    })
  }
  const partial = `${out}.partial`
  try {
    await pipeline(lines, createWriteStream(partial))
  } catch (error) {
    await rm(partial, { force: true })
    throw error
  }
  await rename(partial, out)
}

async function restore(file: string, dir: string): Promise<void> {
  // The whole file is checked first: a cut-off or damaged backup fills nothing.
  const { header } = await checkExportFile(file)
  const restored = await restoreDirectory(dir, header, entriesOf(file))
  process.stdout.write(
    `restored ${restored.keys} keys into ${dir} as new node ${restored.nodeId}, from a backup of node ` +
      `${header.node} taken at ${header.createdAt}.\n` +
      `Start it with the cluster's secret and --peers; it catches up on what the cluster wrote since. ` +
      `If node ${header.node} is gone for good, forget it through a member: kvctl forget ${header.node} --force\n`,
  )
}

async function* entriesOf(file: string): AsyncGenerator<ExportEntry> {
  for await (const { line } of readExportFile(file)) if (line.kind === 'entry') yield line.entry
}
