/**
 * kvctl's streams and exit codes. Data goes to stdout, messages and errors to stderr as one line
 * (`kvctl: <message> (<CODE>)`); the exit code says what happened, as etcdctl and consul do:
 * 0 ok · 1 error · 2 usage · 3 not found · 4 precondition failed · 5 unreachable.
 */
import type { Readable, Writable } from 'node:stream'
import { CommanderError } from 'commander'
import { MeshError } from '../errors.js'

export const EXIT_OK = 0
export const EXIT_ERROR = 1
export const EXIT_USAGE = 2
export const EXIT_NOT_FOUND = 3
export const EXIT_PRECONDITION_FAILED = 4
export const EXIT_UNREACHABLE = 5

export interface KvctlIo {
  stdin: Readable & { isTTY?: boolean }
  stdout: Writable & { isTTY?: boolean }
  stderr: Writable
  env: Readonly<Record<string, string | undefined>>
}

/** A mistake in how kvctl was called (a bad option value, a missing input): exit 2. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'UsageError'
  }
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE
  if (error instanceof UsageError) return EXIT_USAGE
  if (!(error instanceof MeshError)) return EXIT_ERROR
  switch (error.code) {
    case 'MESHKV_ERR_NOT_FOUND':
      return EXIT_NOT_FOUND
    case 'MESHKV_ERR_PRECONDITION_FAILED':
      return EXIT_PRECONDITION_FAILED
    case 'MESHKV_ERR_UNREACHABLE':
      return EXIT_UNREACHABLE
    default:
      return EXIT_ERROR
  }
}

/** The one line an error becomes on stderr. */
export function errorLine(error: unknown): string {
  if (error instanceof MeshError) return `kvctl: ${oneLine(error.message)} (${error.code})\n`
  if (error instanceof UsageError) return `kvctl: ${oneLine(error.message)} (see kvctl --help)\n`
  const message = error instanceof Error ? error.message : String(error)
  return `kvctl: ${oneLine(message)}\n`
}

/** commander's own error text (`error: unknown command 'x'\n(Did you mean y?)`) as one kvctl line. */
export function commanderErrorLine(text: string): string {
  return `kvctl: ${oneLine(text.replace(/^error:\s*/, ''))} (see kvctl --help)\n`
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

/** Writes and resolves once the stream has taken the data (so an exit after it loses nothing). */
export function write(stream: Writable, data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(data, (error) => (error === null || error === undefined ? resolve() : reject(error)))
  })
}
