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
import { readFileSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import { isIPv4 } from 'node:net'
import { createSecureContext } from 'node:tls'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { Role, TlsMaterial } from '../api/index.js'
import { ROLES, ROOT_TOKEN_BYTES_MIN } from '../api/index.js'
import { MeshError } from '../errors.js'
import { checkSecret } from '../node/options.js'
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
  /** The root token (`--root-token-file` or `MESHKV_ROOT_TOKEN`); absent: no client auth. */
  rootToken?: string
  /** Serve HTTPS/WSS and dial peers over TLS with this material (read from the PEM files). */
  tls?: TlsMaterial
  connectionsMax?: number
  /** Serve every interface without a root token (protected mode off); the node warns at start. */
  insecureNoAuth: boolean
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
  secretFile?: string
  rootTokenFile?: string
  tlsCert?: string
  tlsKey?: string
  tlsCa?: string
  maxConnections?: number
  insecureNoAuth?: boolean
}

/** The root token's variable: the token itself, never a flag (a flag would show in `ps`). */
export const ROOT_TOKEN_VARIABLE = 'MESHKV_ROOT_TOKEN'

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
    setting('secret', '<secret>', 'cluster secret, required with peers (a flag shows in ps: prefer --secret-file)'),
    setting('secret-file', '<file>', 'read the cluster secret from the first line of FILE').argParser(nonEmpty),
    setting(
      'root-token-file',
      '<file>',
      `read the root token from the first line of FILE (or ${ROOT_TOKEN_VARIABLE})`,
    ).argParser(nonEmpty),
    setting(
      'insecure-no-auth',
      '[boolean]',
      'serve a non-loopback host without a root token: anyone who reaches the port may do anything',
    ).argParser(flag),
    setting('tls-cert', '<file>', 'PEM certificate: serve HTTPS and WSS, dial peers over TLS').argParser(nonEmpty),
    setting('tls-key', '<file>', 'PEM private key of --tls-cert').argParser(nonEmpty),
    setting('tls-ca', '<file>', 'PEM CA: peers must present a certificate it signed (mutual TLS)').argParser(nonEmpty),
    setting('max-connections', '<n>', 'open client connections at once (default 1024)').argParser(
      positiveIntegerOption,
    ),
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

/**
 * The checks across settings, and the settings that follow from others (the advertised URL).
 * Reads the files the settings name (secret, root token, TLS), and the root token from `env`.
 */
export function resolveNodeConfig(options: NodeOptions, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  if (options.dir === undefined) throw configError(`a data directory is required: --dir DIR or ${envName('dir')}`)
  const tls = tlsOf(options)
  const advertiseUrl = options.advertiseUrl ?? defaultAdvertiseUrl(options.host, options.port, tls !== undefined)
  // One peer list for every node (a StatefulSet's pods share one template): the node's own URL in
  // it is dropped, since a configured peer counts as a member (write concerns) even before it answers.
  const peers = (options.peers ?? []).filter((url) => url !== advertiseUrl)
  const secret = secretOf(options)
  if (peers.length > 0 && secret === undefined) {
    throw configError(`a node started with peers needs the cluster secret: --secret or ${envName('secret')}`)
  }
  if (secret !== undefined) checkSecret(secret)
  const rootToken = readRootToken(options, env)
  const insecureNoAuth = options.insecureNoAuth === true
  checkProtectedMode(options.host, rootToken, insecureNoAuth)
  return {
    dir: options.dir,
    port: options.port,
    host: options.host,
    sync: options.sync === true,
    ...(options.keyBytesMax === undefined ? {} : { keyBytesMax: options.keyBytesMax }),
    ...(options.valueBytesMax === undefined ? {} : { valueBytesMax: options.valueBytesMax }),
    logLevel: options.logLevel,
    peers,
    ...(secret === undefined ? {} : { secret }),
    clusterId: options.clusterId,
    advertiseUrl,
    ...(options.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: options.peerTimeoutMs }),
    role: options.role,
    ...(options.logRetain === undefined ? {} : { logRetainEntries: options.logRetain }),
    ...(rootToken === undefined ? {} : { rootToken }),
    ...(tls === undefined ? {} : { tls }),
    ...(options.maxConnections === undefined ? {} : { connectionsMax: options.maxConnections }),
    insecureNoAuth,
  }
}

/** `--secret`/`MESHKV_SECRET` or `--secret-file`/`MESHKV_SECRET_FILE`; both is a usage error. */
function secretOf(options: NodeOptions): string | undefined {
  if (options.secretFile === undefined) return options.secret
  if (options.secret !== undefined)
    throw configError(`give the cluster secret once: --secret or --secret-file, not both`)
  return firstLineOf(options.secretFile, '--secret-file')
}

/**
 * Protected mode: a node without a root token serves clients on loopback only, where nobody from
 * another machine reaches it. Anything else needs a root token, or `--insecure-no-auth` said out loud.
 */
export function checkProtectedMode(host: string, rootToken: string | undefined, insecureNoAuth: boolean): void {
  if (rootToken !== undefined || insecureNoAuth || isLoopbackHost(host)) return
  throw configError(
    `host ${host} is reachable from other machines, so it needs a root token: ` +
      `--root-token-file FILE or ${ROOT_TOKEN_VARIABLE} (or --insecure-no-auth to serve it open)`,
  )
}

/** 127.0.0.0/8, ::1 (IPv4-mapped too) and `localhost`: addresses no other machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (bare === 'localhost' || bare === '::1' || bare === '0:0:0:0:0:0:0:1') return true
  const v4 = bare.startsWith('::ffff:') ? bare.slice('::ffff:'.length) : bare
  return isIPv4(v4) && v4.startsWith('127.')
}

/** `--root-token-file`/`MESHKV_ROOT_TOKEN_FILE` or `MESHKV_ROOT_TOKEN`; both is a usage error. */
export function readRootToken(options: { rootTokenFile?: string }, env: NodeJS.ProcessEnv): string | undefined {
  const fromEnv = env[ROOT_TOKEN_VARIABLE] === '' ? undefined : env[ROOT_TOKEN_VARIABLE]
  if (options.rootTokenFile !== undefined && fromEnv !== undefined)
    throw configError(`give the root token once: --root-token-file or ${ROOT_TOKEN_VARIABLE}, not both`)
  const token = options.rootTokenFile === undefined ? fromEnv : firstLineOf(options.rootTokenFile, '--root-token-file')
  if (token !== undefined && Buffer.byteLength(token) < ROOT_TOKEN_BYTES_MIN)
    throw configError(`the root token must be at least ${ROOT_TOKEN_BYTES_MIN} bytes long`)
  return token
}

/** `--tls-cert` and `--tls-key` together, `--tls-ca` only with both; each file read as PEM text. */
function tlsOf(options: NodeOptions): TlsMaterial | undefined {
  const { tlsCert, tlsKey, tlsCa } = options
  if (tlsCert === undefined && tlsKey === undefined) {
    if (tlsCa !== undefined) throw configError('--tls-ca needs --tls-cert and --tls-key')
    return undefined
  }
  if (tlsCert === undefined || tlsKey === undefined) throw configError('--tls-cert and --tls-key go together')
  const material = {
    cert: fileText(tlsCert, '--tls-cert'),
    key: fileText(tlsKey, '--tls-key'),
    ...(tlsCa === undefined ? {} : { ca: fileText(tlsCa, '--tls-ca') }),
  }
  checkTls(material)
  return material
}

/**
 * Bad PEM is a configuration error found here, not an OpenSSL error at listen. A CA file without
 * a certificate would pass OpenSSL silently and then refuse every peer, so it is checked too.
 */
function checkTls(material: { cert: string; key: string; ca?: string }): void {
  try {
    createSecureContext(material)
  } catch (error) {
    const code = (error as { code?: unknown }).code
    throw configError(
      `--tls-cert and --tls-key must be a PEM certificate and its private key (${typeof code === 'string' ? code : 'unreadable'})`,
    )
  }
  if (material.ca === undefined) return
  try {
    new X509Certificate(material.ca)
  } catch {
    throw configError('--tls-ca must hold PEM certificates')
  }
}

function fileText(file: string, flagName: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (error) {
    const code = (error as { code?: unknown }).code
    throw configError(`cannot read ${flagName} ${file} (${typeof code === 'string' ? code : 'unreadable'})`)
  }
}

/** The first line of a file, trimmed: a secret or token kept in a file, with or without its newline. */
function firstLineOf(file: string, flagName: string): string {
  const line = (fileText(file, flagName).split(/\r?\n/)[0] ?? '').trim()
  if (line === '') throw configError(`${flagName} ${file} is empty`)
  return line
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
function defaultAdvertiseUrl(host: string, portNumber: number, tls: boolean): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return `${tls ? 'https' : 'http'}://${reachable.includes(':') ? `[${reachable}]` : reachable}:${portNumber}`
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
