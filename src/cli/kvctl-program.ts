/**
 * The kvctl commands (commander): each verb is a small function from its arguments to output on
 * stdout, through `MeshClient`. Errors are thrown; `runKvctl` turns them into one stderr line
 * and an exit code (`kvctl-io.ts`).
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { ReadConcern, WriteConcern } from '../api/index.js'
import { parseConcern } from '../api/index.js'
import type { ClientDigest } from '../client/index.js'
import { MeshClient, parseEndpoints } from '../client/index.js'
import { MeshError } from '../errors.js'
import type { Access, AccessFlags } from './kvctl-access.js'
import { addAccessOptions, resolveAccess, tokenVerbs } from './kvctl-access.js'
import { backupVerbs } from './kvctl-backup.js'
import { docVerbs } from './kvctl-docs.js'
import type { KvctlIo } from './kvctl-io.js'
import { EXIT_OK, UsageError, commanderErrorLine, errorLine, exitCodeOf, write } from './kvctl-io.js'
import { readValue } from './kvctl-input.js'
import { statusVerb } from './kvctl-status.js'
import { positiveIntegerOption } from './options.js'
import type { OutputFormat } from './kvctl-output.js'
import {
  OUTPUT_FORMATS,
  entryJson,
  jsonText,
  listItemJson,
  memberLines,
  siblingLines,
  watchJson,
  watchLine,
} from './kvctl-output.js'

export const NODES_DEFAULT = 'http://127.0.0.1:7700'
export const NODES_ENV = 'MESHKV_NODES'

interface GlobalOptions extends AccessFlags {
  node?: string
  output: OutputFormat
  w?: WriteConcern
  timeoutMs?: number
}

/** What every verb gets: the client, the output format and the streams. */
interface Context {
  client: MeshClient
  /** The write concern of every write verb (`--w`, `--timeout-ms`). */
  concern: { w?: WriteConcern; waitMs?: number }
  /** The --node URLs one by one (verify asks each node itself). */
  nodes: string[]
  /** The token and CA every client of this run uses. */
  access: Access
  format: OutputFormat
  io: KvctlIo
  out: (data: string | Uint8Array) => Promise<void>
}

/** Runs kvctl with `argv` (without `node` and the script) and resolves to the exit code. */
export async function runKvctl(argv: readonly string[], io: KvctlIo): Promise<number> {
  const program = buildProgram(io)
  try {
    await program.parseAsync([...argv], { from: 'user' })
    return EXIT_OK
  } catch (error) {
    // A reader that went away (`kvctl ls | head -1`) is not an error of kvctl's.
    if ((error as { code?: unknown }).code === 'EPIPE') return EXIT_OK
    // commander has already printed its own errors (through `outputError`).
    if (!(error instanceof CommanderError)) await write(io.stderr, errorLine(error)).catch(() => undefined)
    return exitCodeOf(error)
  }
}

export function buildProgram(io: KvctlIo): Command {
  const program = new Command('kvctl')
    .description('Talk to meshkv nodes over HTTP.')
    .version(packageVersion(), '-V, --version')
    .option('--node <urls>', `node URL, or several separated by commas (default: $${NODES_ENV}, then ${NODES_DEFAULT})`)
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('plain'))
    .option('--w <concern>', 'write concern of writes: 1 (async), 2..n, quorum or all', concernOption('w'))
    .option(
      '--timeout-ms <ms>',
      'how long a write may wait for its write concern (status --wait: for the node to be ready)',
      positiveIntegerOption,
    )
  addAccessOptions(program)
  program
    .exitOverride()
    .showSuggestionAfterError()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, writeErr) => writeErr(commanderErrorLine(text)),
    })
  // Subcommands copy these settings (exit override, output) when they are made.
  const verb = (spec: string, description: string): Command => program.command(spec).description(description)
  const context = (command: Command): Context => makeContext(command.optsWithGlobals<GlobalOptions>(), io)
  keyVerbs(verb, context)
  otherVerbs(verb, context)
  tokenVerbs(program, context)
  statusVerb(program, context)
  docVerbs(program, context, concernOption('r'))
  backupVerbs(program, context)
  return program
}

type VerbMaker = (spec: string, description: string) => Command
type ContextMaker = (command: Command) => Context

/** The verbs of the key space: put, get, del, ls, watch. */
function keyVerbs(verb: VerbMaker, context: ContextMaker): void {
  verb('put <key> [value]', 'write a value: VALUE, - or piped stdin, or @file')
    .option('--content-type <type>', 'stored content type (default: text for VALUE, bytes for stdin or a file)')
    .option('--if-match <version>', 'write only if the key is at this version')
    .option('--if-none-match', 'write only if the key has no value')
    .option('--context <version>', 'the version read before: replace exactly those siblings')
    .action((key: string, value: string | undefined, options: PutOptions, command: Command) =>
      put(context(command), key, value, options),
    )
  verb('get <key>', 'read a value (raw bytes in plain output)')
    .option('--siblings', 'show every concurrent sibling')
    .option('--r <concern>', 'read concern: join the value from 1..n members, quorum or all', concernOption('r'))
    .action((key: string, options: { siblings?: boolean; r?: ReadConcern }, command: Command) =>
      get(context(command), key, options.siblings === true, options.r),
    )
  verb('del <key>', 'delete a key')
    .option('--if-match <version>', 'delete only if the key is at this version')
    .action((key: string, options: { ifMatch?: string }, command: Command) =>
      del(context(command), key, options.ifMatch),
    )
  verb('ls', 'list keys in order, following pages')
    .option('--prefix <prefix>', 'only keys starting with this')
    .option('--start <key>', 'from this key (inclusive)')
    .option('--end <key>', 'up to this key (exclusive)')
    .option('--limit <n>', 'at most this many keys (default: all)', positiveIntegerOption)
    .option('--reverse', 'in descending order')
    .action((options: ListOptions, command: Command) => list(context(command), options))
  verb('watch', 'print changes as they happen (Ctrl-C ends)')
    .option('--prefix <prefix>', 'only keys and names starting with this')
    .option('--since <cursor>', 'resume after this cursor (the first field of a line)')
    .action((options: { prefix?: string; since?: string }, command: Command) => watch(context(command), options))
}

/** The verbs of counters, sets and the cluster. */
function otherVerbs(verb: VerbMaker, context: ContextMaker): void {
  verb('incr <name> [delta]', 'add DELTA (default 1, may be negative) to a counter').action(
    (name: string, delta: string | undefined, _options: unknown, command: Command) =>
      incr(context(command), name, delta),
  )
  verb('sadd <name> <member...>', 'add members to a set').action(
    (name: string, members: string[], _options: unknown, command: Command) =>
      updateSet(context(command), name, members, 'add'),
  )
  verb('srem <name> <member...>', 'remove members from a set').action(
    (name: string, members: string[], _options: unknown, command: Command) =>
      updateSet(context(command), name, members, 'remove'),
  )
  verb('smembers <name>', 'list the members of a set').action((name: string, _options: unknown, command: Command) =>
    setMembers(context(command), name),
  )
  verb('members', 'list the members of the cluster, with their role and state').action(
    (_options: unknown, command: Command) => members(context(command)),
  )
  verb(
    'forget <nodeId>',
    'forget a dead member for good (its changes stay; it no longer holds back w=all or garbage collection)',
  )
    .option('--force', 'forget it even though the node still sees it alive')
    .action((nodeId: string, options: { force?: boolean }, command: Command) =>
      forget(context(command), nodeId, options.force === true),
    )
  verb('verify', 'compare the state digests of every --node; exit 1 when they differ').action(
    (_options: unknown, command: Command) => verify(context(command)),
  )
}

function makeContext(options: GlobalOptions, io: KvctlIo): Context {
  const nodes = options.node ?? nonEmpty(io.env[NODES_ENV]) ?? NODES_DEFAULT
  const access = resolveAccess(options, io.env)
  let client: MeshClient
  try {
    client = new MeshClient({ nodes, ...access })
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error), { cause: error })
  }
  const concern = {
    ...(options.w === undefined ? {} : { w: options.w }),
    ...(options.timeoutMs === undefined ? {} : { waitMs: options.timeoutMs }),
  }
  return {
    client,
    concern,
    nodes: parseEndpoints(nodes),
    access,
    format: options.output,
    io,
    out: (data) => write(io.stdout, data),
  }
}

interface PutOptions {
  contentType?: string
  ifMatch?: string
  ifNoneMatch?: boolean
  context?: string
}

async function put(context: Context, key: string, argument: string | undefined, options: PutOptions): Promise<void> {
  const input = await readValue(argument, context.io.stdin)
  const result = await context.client.put(key, input.bytes, {
    contentType: options.contentType ?? input.contentType,
    ifMatch: options.ifMatch,
    ifNoneMatch: options.ifNoneMatch === true,
    context: options.context,
    ...context.concern,
  })
  if (context.format === 'plain') await context.out(`${result.version}\n`)
  else await context.out(jsonText(context.format, result))
}

async function get(context: Context, key: string, siblings: boolean, r: ReadConcern | undefined): Promise<void> {
  const entry = await context.client.get(key, { siblings, ...(r === undefined ? {} : { r }) })
  if (entry === undefined) throw new MeshError('MESHKV_ERR_NOT_FOUND', `key ${JSON.stringify(key)} does not exist`)
  if (context.format !== 'plain') return context.out(jsonText(context.format, entryJson(entry)))
  if (siblings) return context.out(siblingLines(entry))
  await context.out(entry.value)
  // A person at a terminal gets the prompt on its own line; a pipe gets the bytes exactly.
  if (context.io.stdout.isTTY === true) await context.out('\n')
}

async function del(context: Context, key: string, ifMatch: string | undefined): Promise<void> {
  const deleted = await context.client.del(key, { ifMatch, ...context.concern })
  if (!deleted) throw new MeshError('MESHKV_ERR_NOT_FOUND', `key ${JSON.stringify(key)} does not exist`)
  if (context.format !== 'plain') await context.out(jsonText(context.format, { key, deleted: true }))
}

interface ListOptions {
  prefix?: string
  start?: string
  end?: string
  limit?: number
  reverse?: boolean
}

async function list(context: Context, options: ListOptions): Promise<void> {
  const items = context.client.scan({
    prefix: options.prefix,
    start: options.start,
    end: options.end,
    limit: options.limit,
    reverse: options.reverse === true,
  })
  // `json` streams one array, so a long listing never sits in memory.
  let count = 0
  if (context.format === 'json') await context.out('[')
  for await (const item of items) {
    if (context.format === 'plain') await context.out(`${item.key}\n`)
    else if (context.format === 'ndjson') await context.out(jsonText('ndjson', listItemJson(item)))
    else await context.out((count === 0 ? '\n' : ',\n') + indent(JSON.stringify(listItemJson(item), null, 2)))
    count++
  }
  if (context.format === 'json') await context.out(count === 0 ? ']\n' : '\n]\n')
}

async function watch(context: Context, options: { prefix?: string; since?: string }): Promise<void> {
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    for await (const event of context.client.watch({
      prefix: options.prefix,
      since: options.since,
      signal: controller.signal,
    })) {
      await context.out(context.format === 'plain' ? watchLine(event) : jsonText('ndjson', watchJson(event)))
    }
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}

async function incr(context: Context, name: string, deltaText: string | undefined): Promise<void> {
  const delta = deltaText === undefined ? 1 : integer(deltaText, 'DELTA')
  if (delta === 0) throw new UsageError('DELTA must not be 0')
  const value = await context.client.incr(name, delta, context.concern)
  await context.out(context.format === 'plain' ? `${value}\n` : jsonText(context.format, { name, value }))
}

async function updateSet(context: Context, name: string, members: string[], change: 'add' | 'remove'): Promise<void> {
  const after =
    change === 'add'
      ? await context.client.sadd(name, members, context.concern)
      : await context.client.srem(name, members, context.concern)
  await showMembers(context, name, after)
}

async function setMembers(context: Context, name: string): Promise<void> {
  await showMembers(context, name, await context.client.smembers(name))
}

async function showMembers(context: Context, name: string, members: readonly string[]): Promise<void> {
  if (context.format === 'plain') await context.out(members.map((member) => `${member}\n`).join(''))
  else await context.out(jsonText(context.format, { name, members }))
}

async function members(context: Context): Promise<void> {
  const list = await context.client.members()
  await context.out(context.format === 'plain' ? memberLines(list) : jsonText(context.format, { members: list }))
}

async function forget(context: Context, nodeId: string, force: boolean): Promise<void> {
  const list = await context.client.forget(nodeId, { force })
  await context.out(
    context.format === 'plain'
      ? `forgot ${nodeId}\n${memberLines(list)}`
      : jsonText(context.format, { forgotten: nodeId, members: list }),
  )
}

/**
 * Asks every node for its digest (one by one, no failover) and compares them. Prints one line per
 * node; exits 1 when digests differ, 5 when a node cannot be reached.
 */
async function verify(context: Context): Promise<void> {
  const answers: VerifyAnswer[] = await Promise.all(
    context.nodes.map(async (node): Promise<VerifyAnswer> => {
      try {
        return { node, digest: await new MeshClient({ nodes: node, ...context.access }).digest(), error: undefined }
      } catch (error) {
        return { node, digest: undefined, error }
      }
    }),
  )
  const digests = new Set(answers.map((answer) => answer.digest?.digest))
  const same = digests.size === 1 && !digests.has(undefined)
  if (context.format === 'plain') {
    const lines = answers.map(({ node, digest, error }) =>
      digest !== undefined
        ? `${node}  ${digest.digest}  keys=${digest.keys}\n`
        : `${node}  unreachable: ${errorMessage(error)}\n`,
    )
    await context.out(lines.join('') + (same ? `equal on ${answers.length} nodes\n` : 'DIFFERENT\n'))
  } else {
    const nodes = answers.map(({ node, digest, error }) =>
      digest !== undefined
        ? { node, digest: digest.digest, keys: digest.keys, vc: digest.vc }
        : { node, error: errorMessage(error) },
    )
    await context.out(jsonText(context.format, { equal: same, nodes }))
  }
  const unreachable = answers.find((answer) => answer.digest === undefined)
  if (unreachable !== undefined) throw unreachable.error
  if (!same) throw new MeshError('MESHKV_ERR_INTERNAL', 'the nodes hold different states (digests differ)')
}

type VerifyAnswer =
  { node: string; digest: ClientDigest; error: undefined } | { node: string; digest: undefined; error: unknown }

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** A `--w`/`--r` parser: the one concern parser, its refusal as commander's usage error. */
function concernOption(name: 'w' | 'r'): (text: string) => WriteConcern {
  return (text) => {
    try {
      return parseConcern(text, name)
    } catch {
      throw new InvalidArgumentError('It must be 1, 2, ..., quorum or all.')
    }
  }
}

function integer(text: string, name: string): number {
  const value = Number(text)
  if (!/^-?[0-9]+$/.test(text) || !Number.isSafeInteger(value))
    throw new UsageError(`${name} must be an integer, not ${JSON.stringify(text)}`)
  return value
}

function indent(text: string): string {
  return text.replace(/^/gm, '  ')
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text.trim() === '' ? undefined : text
}

/** The package's version, from package.json two levels up (the same from src/cli and dist/cli). */
function packageVersion(): string {
  try {
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8')
    const version = (JSON.parse(text) as { version?: unknown }).version
    return typeof version === 'string' ? version : 'unknown'
  } catch {
    return 'unknown'
  }
}
