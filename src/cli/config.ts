/**
 * The configuration of `meshkv node`: each setting from its flag, else its environment variable
 * (`--key-bytes-max` → `MESHKV_KEY_BYTES_MAX`), else its default. Every value is checked here, so
 * bad configuration fails before anything opens, with one line that names the flag or variable.
 * Pure: the caller passes the parsed flags and the environment.
 */
import { MeshError } from '../errors.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export const PORT_DEFAULT = 7700
export const HOST_DEFAULT = '127.0.0.1'
export const LOG_LEVEL_DEFAULT: LogLevel = 'info'

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
  role: 'member' | 'replica'
  logRetainEntries?: number
}

/** The flags as commander hands them over: strings, and `true` for a bare boolean flag. */
export interface NodeFlags {
  dir?: string
  port?: string
  host?: string
  sync?: boolean
  keyBytesMax?: string
  valueBytesMax?: string
  logLevel?: string
  peers?: string
  secret?: string
  clusterId?: string
  advertiseUrl?: string
  peerTimeoutMs?: string
  role?: string
  logRetain?: string
}

type Environment = Readonly<Record<string, string | undefined>>

/** A flag's environment variable: `key-bytes-max` → `MESHKV_KEY_BYTES_MAX`. */
export function envName(flag: string): string {
  return 'MESHKV_' + flag.toUpperCase().replaceAll('-', '_')
}

/** A setting as given, with where it came from (for the error message). */
interface Given {
  text: string
  source: string
}

function given(flagValue: string | undefined, flag: string, env: Environment): Given | undefined {
  if (flagValue !== undefined) return { text: flagValue, source: `--${flag}` }
  const name = envName(flag)
  const fromEnv = env[name]
  if (fromEnv === undefined || fromEnv === '') return undefined
  return { text: fromEnv, source: name }
}

export function resolveNodeConfig(flags: NodeFlags, env: Environment): NodeConfig {
  const dir = given(flags.dir, 'dir', env)
  if (dir === undefined || dir.text.trim() === '')
    throw configError(`a data directory is required: --dir DIR or ${envName('dir')}`)
  const host = given(flags.host, 'host', env)
  if (host !== undefined && host.text.trim() === '') throw configError(`${host.source} must not be empty`)
  const keyBytesMax = optionalPositiveInteger(given(flags.keyBytesMax, 'key-bytes-max', env))
  const valueBytesMax = optionalPositiveInteger(given(flags.valueBytesMax, 'value-bytes-max', env))
  const peerTimeoutMs = optionalPositiveInteger(given(flags.peerTimeoutMs, 'peer-timeout-ms', env))
  const portNumber = port(given(flags.port, 'port', env))
  const hostName = host?.text.trim() ?? HOST_DEFAULT
  const peers = peerUrls(given(flags.peers, 'peers', env))
  const secret = given(flags.secret, 'secret', env)
  if (peers.length > 0 && secret === undefined) {
    throw configError(`a node started with peers needs the cluster secret: --secret or ${envName('secret')}`)
  }
  const advertise = given(flags.advertiseUrl, 'advertise-url', env)
  const role = given(flags.role, 'role', env)
  const logRetainText = given(flags.logRetain, 'log-retain', env)
  const logRetainEntries =
    logRetainText === undefined ? undefined : logRetainText.text === '0' ? 0 : optionalPositiveInteger(logRetainText)
  if (role !== undefined && role.text !== 'member' && role.text !== 'replica')
    throw configError(`${role.source} must be member or replica, got ${JSON.stringify(role.text)}`)
  return {
    role: (role?.text ?? 'member') as 'member' | 'replica',
    ...(logRetainEntries === undefined ? {} : { logRetainEntries }),
    peers,
    ...(secret === undefined ? {} : { secret: secret.text }),
    clusterId: given(flags.clusterId, 'cluster-id', env)?.text ?? CLUSTER_ID_DEFAULT,
    advertiseUrl: advertise === undefined ? defaultAdvertiseUrl(hostName, portNumber) : baseUrl(advertise),
    ...(peerTimeoutMs === undefined ? {} : { peerTimeoutMs }),
    dir: dir.text,
    port: portNumber,
    host: hostName,
    sync: flags.sync === true ? true : flag(given(undefined, 'sync', env)),
    ...(keyBytesMax === undefined ? {} : { keyBytesMax }),
    ...(valueBytesMax === undefined ? {} : { valueBytesMax }),
    logLevel: logLevel(given(flags.logLevel, 'log-level', env)),
  }
}

export const CLUSTER_ID_DEFAULT = 'meshkv'

/** `--peers http://a:7700,http://b:7700`: each an http(s) base URL. */
function peerUrls(setting: Given | undefined): string[] {
  if (setting === undefined) return []
  return setting.text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => baseUrl({ text: part, source: setting.source }))
}

function baseUrl(setting: Given): string {
  let url: URL
  try {
    url = new URL(setting.text)
  } catch {
    throw configError(
      `${setting.source} must hold http(s) URLs such as http://127.0.0.1:7701, not ${JSON.stringify(setting.text)}`,
    )
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw configError(`${setting.source}: ${JSON.stringify(setting.text)} is not an http(s) URL`)
  return url.origin
}

/** Peers reach a node at its own address; a node listening on every interface names loopback. */
function defaultAdvertiseUrl(host: string, portNumber: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${portNumber}`
}

function port(setting: Given | undefined): number {
  if (setting === undefined) return PORT_DEFAULT
  const value = Number(setting.text)
  if (!/^[0-9]{1,5}$/.test(setting.text) || value > 65_535)
    throw configError(`${setting.source} must be a port number from 0 to 65535, not ${JSON.stringify(setting.text)}`)
  return value
}

function optionalPositiveInteger(setting: Given | undefined): number | undefined {
  if (setting === undefined) return undefined
  const value = Number(setting.text)
  if (!/^[0-9]{1,16}$/.test(setting.text) || !Number.isSafeInteger(value) || value < 1) {
    throw configError(`${setting.source} must be a positive integer, not ${JSON.stringify(setting.text)}`)
  }
  return value
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on'])
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off'])

function flag(setting: Given | undefined): boolean {
  if (setting === undefined) return false
  const word = setting.text.trim().toLowerCase()
  if (TRUE_WORDS.has(word)) return true
  if (FALSE_WORDS.has(word)) return false
  throw configError(`${setting.source} must be true or false, not ${JSON.stringify(setting.text)}`)
}

function logLevel(setting: Given | undefined): LogLevel {
  if (setting === undefined) return LOG_LEVEL_DEFAULT
  const level = LOG_LEVELS.find((candidate) => candidate === setting.text.trim().toLowerCase())
  if (level === undefined)
    throw configError(`${setting.source} must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(setting.text)}`)
  return level
}

function configError(message: string): MeshError {
  return new MeshError('MESHKV_ERR_CONFIG', message)
}
