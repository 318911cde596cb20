/**
 * `kvctl doc get|apply|rm`: Yjs documents (`/v1/docs`, docs/consistency.md "Documents"). A
 * document's state is binary (one Yjs update), so plain `get` writes the bytes as they are, for
 * a file or a pipe into another Yjs tool; `-o json` asks the node for the JSON form instead.
 */
import type { Command } from 'commander'
import type { ReadConcern, WriteConcern } from '../api/index.js'
import type { ClientDocTypeKind, MeshClient } from '../client/index.js'
import { MeshError } from '../errors.js'
import type { KvctlIo } from './kvctl-io.js'
import { UsageError } from './kvctl-io.js'
import { readFileOrStdin } from './kvctl-input.js'
import type { OutputFormat } from './kvctl-output.js'
import { jsonText } from './kvctl-output.js'

/** What the doc verbs need from kvctl's context. */
export interface DocContext {
  client: Pick<MeshClient, 'getDoc' | 'getDocJson' | 'applyDocUpdate' | 'deleteDoc'>
  concern: { w?: WriteConcern; waitMs?: number }
  format: OutputFormat
  io: Pick<KvctlIo, 'stdin'>
  out: (data: string | Uint8Array) => Promise<void>
}

const KINDS: readonly string[] = ['text', 'map', 'array', 'xml'] satisfies ClientDocTypeKind[]

/** `kvctl doc get|apply|rm`, under `program`. */
export function docVerbs(
  program: Command,
  context: (command: Command) => DocContext,
  concernOption: (text: string) => ReadConcern,
): void {
  const doc = program.command('doc').description('read, update and delete Yjs documents')
  doc
    .command('get <name>')
    .description('write the document as one Yjs update (binary) to stdout; -o json: its types as JSON')
    .option('--types <kinds>', 'with -o json: the kinds of top-level types, e.g. body:text,meta:map')
    .option('--r <concern>', 'read concern: join the document from 1..n members, quorum or all', concernOption)
    .action((name: string, options: { types?: string; r?: ReadConcern }, command: Command) =>
      getDoc(context(command), name, options),
    )
  doc
    .command('apply <name> <file>')
    .description('apply a Yjs update (v1) from FILE, or - for stdin')
    .action((name: string, file: string, _options: unknown, command: Command) => applyDoc(context(command), name, file))
  doc
    .command('rm <name>')
    .description("delete the document's content (an update written concurrently elsewhere stays)")
    .action((name: string, _options: unknown, command: Command) => removeDoc(context(command), name))
}

async function getDoc(context: DocContext, name: string, options: { types?: string; r?: ReadConcern }): Promise<void> {
  const read = options.r === undefined ? {} : { r: options.r }
  if (context.format === 'plain') {
    if (options.types !== undefined) throw new UsageError('--types goes with -o json or -o ndjson')
    const update = await context.client.getDoc(name, read)
    if (update === undefined) throw notFound(name)
    return context.out(update)
  }
  const types = options.types === undefined ? {} : { types: typeHints(options.types) }
  const json = await context.client.getDocJson(name, { ...read, ...types })
  if (json === undefined) throw notFound(name)
  await context.out(jsonText(context.format, json))
}

async function applyDoc(context: DocContext, name: string, file: string): Promise<void> {
  const update = await readFileOrStdin(file, context.io.stdin)
  if (update.length === 0) throw new UsageError(`${file === '-' ? 'stdin' : file} is empty: no update to apply`)
  const result = await context.client.applyDocUpdate(name, update, context.concern)
  if (context.format === 'plain') await context.out(result.changed ? 'applied\n' : 'unchanged\n')
  else await context.out(jsonText(context.format, result))
}

async function removeDoc(context: DocContext, name: string): Promise<void> {
  const result = await context.client.deleteDoc(name, context.concern)
  if (!result.changed) throw notFound(name)
  if (context.format !== 'plain') await context.out(jsonText(context.format, { ...result, deleted: true }))
}

/** `body:text,meta:map` as the client's record, checked here so a typo is a usage error. */
function typeHints(text: string): Record<string, ClientDocTypeKind> {
  const hints: Record<string, ClientDocTypeKind> = {}
  for (const part of text.split(',')) {
    const at = part.lastIndexOf(':')
    const kind = part.slice(at + 1)
    if (at <= 0 || !KINDS.includes(kind))
      throw new UsageError(
        `--types takes name:kind pairs, kind one of ${KINDS.join(', ')}; got ${JSON.stringify(part)}`,
      )
    hints[part.slice(0, at)] = kind as ClientDocTypeKind
  }
  return hints
}

function notFound(name: string): MeshError {
  return new MeshError('MESHKV_ERR_NOT_FOUND', `document ${JSON.stringify(name)} does not exist`)
}
