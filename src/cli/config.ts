/**
 * The configuration of `meshkv node`, as commander options: each setting from its flag, else its
 * environment variable (`--key-bytes-max` → `MESHKV_KEY_BYTES_MAX`, through commander's `.env()`),
 * else its default. Each value is checked by its option's parser as commander reads it, so bad
 * configuration fails before anything opens, with one line that names the flag or the variable
 * (commander says which); the checks across settings follow in `resolveNodeConfig`.
 *
 * An empty variable counts as unset (`MESHKV_PORT=` is no port): `dropEmptyVariables` removes
 * those before commander reads the environment.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { Role } from '../api/index.js'
import { ROLES } from '../api/index.js'
import { MeshError } from '../errors.js'
import { positiveIntegerOption } from './options.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export const PORT_DEFAULT = 7700
export const HOST_DEFAULT = '127.0.0.1'
export const LOG_LEVEL_DEFAULT: LogLevel = 'info'
export const CLUSTER_ID_DEFAULT = 'meshkv'
const ROLE_DEFAULT: Role = 'member'

export interface NodeConfig {
  dir: string
  port: number
  host: string
  /** fsync every committed batch. */
  sync: boolean
  /** Absent: the node's default. */
  keyBytesMax?: number
  valueBytesMax?: number
  logLevel: LogLevel
  /** Peer base URLs (`http://host:port`). */
  peers: string[]
  /** The cluster secret; required when there are peers. */
  secret?: string
  clusterId: string
  /** The URL peers reach this node at. */
  advertiseUrl: string
  peerTimeoutMs?: number
  role: Role
  logRetainEntries?: number
}

/** The options as commander hands them over once each option's parser has run. */
export interface NodeOptions {
  dir?: string
  port: number
  host: string
  sync?: boolean
  keyBytesMax?: number
  valueBytesMax?: number
  logLevel: LogLevel
  peers?: string[]
  secret?: string
  clusterId: string
  advertiseUrl?: string
  peerTimeoutMs?: number
  role: Role
  logRetain?: number
}

/** A flag's environment variable: `key-bytes-max` → `MESHKV_KEY_BYTES_MAX`. */
export function envName(flag: string): string {
  return 'MESHKV_' + flag.toUpperCase().replaceAll('-', '_')
}

/** An option of `meshkv node` that falls back to its `MESHKV_*` variable (the help names it). */
function setting(flag: string, value: string, description: string): Option {
  return new Option(`--${flag} ${value}`, description).env(envName(flag))
}

/** The options of `meshkv node`. */
export function nodeOptions(): Option[] {
  return [
    setting('dir', '<dir>', 'data directory, locked while the node runs').argParser(nonEmpty),
    setting('port', '<port>', 'HTTP port').argParser(port).default(PORT_DEFAULT),
    setting('host', '<host>', 'address to listen on').argParser(hostName).default(HOST_DEFAULT),
    setting('sync', '[boolean]', 'fsync every committed batch').argParser(flag),
    setting('key-bytes-max', '<n>', 'longest key in bytes (default 1024)').argParser(positiveIntegerOption),
    setting('value-bytes-max', '<n>', 'largest value in bytes (default 1 MiB, at most 3 MiB)').argParser(
      positiveIntegerOption,
    ),
    // The choices show in the help; the parser set after them takes any case.
    setting('log-level', '<level>', 'log level').choices(LOG_LEVELS).argParser(logLevel).default(LOG_LEVEL_DEFAULT),
    setting('peers', '<urls>', 'comma-separated peer URLs to replicate with').argParser(peerUrls),
    setting('secret', '<secret>', 'cluster secret, required with peers'),
    setting('cluster-id', '<id>', 'nodes of other clusters are refused').default(CLUSTER_ID_DEFAULT),
    setting('advertise-url', '<url>', 'the URL peers reach this node at (default http://HOST:PORT)').argParser(baseUrl),
    setting('peer-timeout-ms', '<ms>', 'a peer silent this long is down (default 5000)').argParser(
      positiveIntegerOption,
    ),
    setting('role', '<role>', 'member (reads and writes) or replica (reads only)').choices(ROLES).default(ROLE_DEFAULT),
    setting(
      'log-retain',
      '<entries>',
      'log entries kept after every member holds them, for watch resume (default 1000)',
    ).argParser(entries),
  ]
}

/** Removes the empty `MESHKV_*` variables, which count as unset, before commander reads them. */
export function dropEmptyVariables(env: NodeJS.ProcessEnv): void {
  for (const name of Object.keys(env)) if (name.startsWith('MESHKV_') && env[name] === '') delete env[name]
}

/** The checks across settings, and the settings that follow from others (the advertised URL). */
export function resolveNodeConfig(options: NodeOptions): NodeConfig {
  if (options.dir === undefined) throw configError(`a data directory is required: --dir DIR or ${envName('dir')}`)
  const peers = options.peers ?? []
  if (peers.length > 0 && options.secret === undefined) {
    throw configError(`a node started with peers needs the cluster secret: --secret or ${envName('secret')}`)
  }
  return {
    dir: options.dir,
    port: options.port,
    host: options.host,
    sync: options.sync === true,
    ...(options.keyBytesMax === undefined ? {} : { keyBytesMax: options.keyBytesMax }),
    ...(options.valueBytesMax === undefined ? {} : { valueBytesMax: options.valueBytesMax }),
    logLevel: options.logLevel,
    peers,
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    clusterId: options.clusterId,
    advertiseUrl: options.advertiseUrl ?? defaultAdvertiseUrl(options.host, options.port),
    ...(options.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: options.peerTimeoutMs }),
    role: options.role,
    ...(options.logRetain === undefined ? {} : { logRetainEntries: options.logRetain }),
  }
}

/**
 * The configuration from `argv` (the flags after `node`) and `process.env`, as `meshkv node`
 * reads it, without printing or exiting: a bad setting throws `MESHKV_ERR_CONFIG` with
 * commander's line. For tests and tools; `meshkv.ts` builds the same options into its program.
 */
export function parseNodeConfig(argv: readonly string[]): NodeConfig {
  dropEmptyVariables(process.env)
  const command = new Command('node').exitOverride().configureOutput({ writeErr: () => undefined })
  for (const option of nodeOptions()) command.addOption(option)
  try {
    command.parse([...argv], { from: 'user' })
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error
    throw configError(error.message.replace(/^error:\s*/, ''))
  }
  return resolveNodeConfig(command.opts<NodeOptions>())
}

/** Peers reach a node at its own address; a node listening on every interface names loopback. */
function defaultAdvertiseUrl(host: string, portNumber: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${portNumber}`
}

function nonEmpty(text: string): string {
  if (text.trim() === '') throw new InvalidArgumentError('It must not be empty.')
  return text
}

function hostName(text: string): string {
  return nonEmpty(text).trim()
}

function port(text: string): number {
  const value = Number(text)
  if (!/^[0-9]{1,5}$/.test(text) || value > 65_535)
    throw new InvalidArgumentError('It must be a port number from 0 to 65535.')
  return value
}

/** `--log-retain`: a count of entries, where 0 keeps none. */
function entries(text: string): number {
  return text === '0' ? 0 : positiveIntegerOption(text)
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on'])
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off'])

/** `--sync` alone, or `--sync`/`MESHKV_SYNC` with a word that says true or false. */
function flag(text: string): boolean {
  const word = text.trim().toLowerCase()
  if (TRUE_WORDS.has(word)) return true
  if (FALSE_WORDS.has(word)) return false
  throw new InvalidArgumentError('It must be true or false.')
}

/** A log level in any case (`DEBUG` is `debug`), which commander's `.choices` would refuse. */
function logLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((candidate) => candidate === text.trim().toLowerCase())
  if (level === undefined) throw new InvalidArgumentError(`It must be one of ${LOG_LEVELS.join(', ')}.`)
  return level
}

/** `--peers http://a:7700,http://b:7700`: each an http(s) base URL. */
function peerUrls(text: string): string[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map(baseUrl)
}

function baseUrl(text: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new InvalidArgumentError(`It must hold http(s) URLs such as http://127.0.0.1:7701.`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgumentError(`${JSON.stringify(text)} is not an http(s) URL.`)
  return url.origin
}

function configError(message: string): MeshError {
  return new MeshError('MESHKV_ERR_CONFIG', message)
}
