/**
 * kvctl's way into a cluster that checks who calls: the access token (`--token`, `--token-file`,
 * `MESHKV_TOKEN`) and the cluster's private CA (`--cacert`, `MESHKV_CACERT`), and the `token`
 * verbs that make, list and revoke tokens.
 *
 * The token is a secret: it never appears in kvctl's output or errors, except once, on stdout,
 * from `token create`. A flag on the command line can be seen by other users of the machine
 * (`ps`), so a file or the environment is the better place for it.
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { Option } from 'commander'
import type { AccessRole, MeshClient } from '../client/index.js'
import { ACCESS_ROLES } from '../api/index.js'
import { UsageError } from './kvctl-io.js'
import type { OutputFormat } from './kvctl-output.js'
import { jsonText, tokenTable } from './kvctl-output.js'

export const TOKEN_ENV = 'MESHKV_TOKEN'
export const CACERT_ENV = 'MESHKV_CACERT'

export interface AccessFlags {
  token?: string
  tokenFile?: string
  cacert?: string
}

/** What the client gets from the flags and the environment. */
export interface Access {
  token?: string
  ca?: string
}

/** Adds the global flags of access to kvctl's program. */
export function addAccessOptions(program: Command): Command {
  return program
    .option('--token <token>', `access token; --token wins over --token-file, which wins over $${TOKEN_ENV}`)
    .option('--token-file <file>', 'read the access token from the first line of this file')
    .option('--cacert <file>', `trust this CA (PEM) for https nodes (default: $${CACERT_ENV})`)
}

/**
 * The token and CA the flags and the environment give. The token: `--token` wins over
 * `--token-file`, which wins over `MESHKV_TOKEN`. A token file or CA file that cannot be read, or
 * a token file without a token, is a usage error.
 */
export function resolveAccess(flags: AccessFlags, env: Readonly<Record<string, string | undefined>>): Access {
  const token = flags.token ?? (flags.tokenFile === undefined ? undefined : tokenFromFile(flags.tokenFile))
  const envToken = env[TOKEN_ENV]?.trim()
  const cacertFile = flags.cacert ?? nonEmpty(env[CACERT_ENV])
  const access: Access = {}
  const chosen = token ?? (envToken === '' ? undefined : envToken)
  if (chosen !== undefined) access.token = chosen
  if (cacertFile !== undefined) access.ca = readText(cacertFile, 'the CA file (--cacert)')
  return access
}

function tokenFromFile(file: string): string {
  const token = readText(file, 'the token file (--token-file)').split(/\r?\n/, 1)[0]?.trim() ?? ''
  if (token === '')
    throw new UsageError(`the token file ${JSON.stringify(file)} is empty (the token is its first line)`)
  return token
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (error) {
    const code = (error as { code?: unknown }).code
    throw new UsageError(`cannot read ${what} ${JSON.stringify(file)} (${String(code ?? error)})`, { cause: error })
  }
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text.trim() === '' ? undefined : text
}

/** What the token verbs need from kvctl's context. */
export interface TokenContext {
  client: Pick<MeshClient, 'createToken' | 'listTokens' | 'revokeToken'>
  format: OutputFormat
  out: (data: string) => Promise<void>
}

/** `kvctl token create|ls|revoke`, under `program`. */
export function tokenVerbs(program: Command, context: (command: Command) => TokenContext): void {
  const token = program.command('token').description('make, list and revoke access tokens (admin)')
  token
    .command('create')
    .description('make a token; prints it (the only time it is shown)')
    .addOption(new Option('--role <role>', 'what the token may do').choices(ACCESS_ROLES).makeOptionMandatory())
    .option('--prefix <prefix>', 'only keys (and counter and set names) starting with this')
    .option('--name <name>', 'a label for people')
    .action((options: { role: AccessRole; prefix?: string; name?: string }, command: Command) =>
      createToken(context(command), options),
    )
  token
    .command('ls')
    .description('list tokens (never their secrets)')
    .action((_options: unknown, command: Command) => listTokens(context(command)))
  token
    .command('revoke <id>')
    .description('revoke a token by its id (as token ls shows it)')
    .action((id: string, _options: unknown, command: Command) => revokeToken(context(command), id))
}

async function createToken(
  context: TokenContext,
  options: { role: AccessRole; prefix?: string; name?: string },
): Promise<void> {
  const created = await context.client.createToken({
    role: options.role,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.name === undefined ? {} : { name: options.name }),
  })
  await context.out(context.format === 'plain' ? `${created.token}\n` : jsonText(context.format, created))
}

async function listTokens(context: TokenContext): Promise<void> {
  const tokens = await context.client.listTokens()
  await context.out(context.format === 'plain' ? tokenTable(tokens) : jsonText(context.format, { tokens }))
}

async function revokeToken(context: TokenContext, id: string): Promise<void> {
  await context.client.revokeToken(id)
  await context.out(context.format === 'plain' ? `revoked ${id}\n` : jsonText(context.format, { revoked: id }))
}
