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
  if (dir === undefined || dir.text.trim() === '') throw configError(`a data directory is required: --dir DIR or ${envName('dir')}`)
  const host = given(flags.host, 'host', env)
  if (host !== undefined && host.text.trim() === '') throw configError(`${host.source} must not be empty`)
  const keyBytesMax = optionalPositiveInteger(given(flags.keyBytesMax, 'key-bytes-max', env))
  const valueBytesMax = optionalPositiveInteger(given(flags.valueBytesMax, 'value-bytes-max', env))
  return {
    dir: dir.text,
    port: port(given(flags.port, 'port', env)),
    host: host?.text.trim() ?? HOST_DEFAULT,
    sync: flags.sync === true ? true : flag(given(undefined, 'sync', env)),
    ...(keyBytesMax === undefined ? {} : { keyBytesMax }),
    ...(valueBytesMax === undefined ? {} : { valueBytesMax }),
    logLevel: logLevel(given(flags.logLevel, 'log-level', env)),
  }
}

function port(setting: Given | undefined): number {
  if (setting === undefined) return PORT_DEFAULT
  const value = Number(setting.text)
  if (!/^[0-9]{1,5}$/.test(setting.text) || value > 65_535) throw configError(`${setting.source} must be a port number from 0 to 65535, not ${JSON.stringify(setting.text)}`)
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
  if (level === undefined) throw configError(`${setting.source} must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(setting.text)}`)
  return level
}

function configError(message: string): MeshError {
  return new MeshError('MESHKV_ERR_CONFIG', message)
}
