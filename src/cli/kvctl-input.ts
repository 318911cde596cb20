/**
 * Where `kvctl put` takes its value from (and `kvctl doc apply` its update), as etcdctl, consul and `redis-cli -x` do: the VALUE
 * argument; `-` or no VALUE with stdin piped in; `@file` for a file's bytes. Input is bounded by
 * the largest value any node can accept, so a runaway pipe cannot fill memory.
 */
import { open } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { BYTES_TYPE, TEXT_TYPE } from '../api/index.js'
import { MeshError } from '../errors.js'
import { UsageError } from './kvctl-io.js'

/**
 * The highest value limit a node can be given: `valueBytesMax` is at most 3 MiB, so that a write
 * fits one replication frame (docs/architecture.md). A longer input could never be stored, so
 * kvctl stops reading there; below it, the node checks its own, perhaps lower, limit.
 */
export const INPUT_BYTES_MAX = 3 * 1024 * 1024

export interface ValueInput {
  bytes: Uint8Array
  /** Text typed as an argument, or bytes from a pipe or a file. */
  contentType: string
}

export async function readValue(
  argument: string | undefined,
  stdin: Readable & { isTTY?: boolean },
): Promise<ValueInput> {
  if (argument === undefined || argument === '-') {
    if (argument === undefined && stdin.isTTY === true)
      throw new UsageError('no VALUE given: pass VALUE, - or @file, or pipe the value in')
    return { bytes: await readStream(stdin, 'stdin'), contentType: BYTES_TYPE }
  }
  if (argument.startsWith('@')) return { bytes: await readFileBounded(argument.slice(1)), contentType: BYTES_TYPE }
  return { bytes: Buffer.from(argument, 'utf8'), contentType: TEXT_TYPE }
}

/** A file's bytes, or stdin's for `-` (`kvctl doc apply NAME FILE`). */
export async function readFileOrStdin(path: string, stdin: Readable & { isTTY?: boolean }): Promise<Uint8Array> {
  if (path !== '-') return readFileBounded(path)
  if (stdin.isTTY === true) throw new UsageError('FILE is -, but stdin is a terminal: pipe the update in')
  return readStream(stdin, 'stdin')
}

async function readStream(stream: Readable, what: string): Promise<Uint8Array> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer)
    total += buffer.length
    if (total > INPUT_BYTES_MAX) throw tooLarge(what)
    chunks.push(buffer)
  }
  return Buffer.concat(chunks)
}

async function readFileBounded(path: string): Promise<Uint8Array> {
  if (path.length === 0) throw new UsageError('@ needs a file name (e.g. @value.bin)')
  let file
  try {
    file = await open(path, 'r')
  } catch (error) {
    const code = (error as { code?: unknown }).code
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `cannot read ${path}: ${typeof code === 'string' ? code : String(error)}`,
      { cause: error },
    )
  }
  try {
    return await readStream(file.createReadStream({ autoClose: false }), path)
  } catch (error) {
    if (error instanceof MeshError) throw error
    const code = (error as { code?: unknown }).code
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      `cannot read ${path}: ${typeof code === 'string' ? code : String(error)}`,
      { cause: error },
    )
  } finally {
    await file.close()
  }
}

function tooLarge(what: string): MeshError {
  return new MeshError('MESHKV_ERR_VALUE_TOO_LARGE', `the value from ${what} is larger than ${INPUT_BYTES_MAX} bytes`, {
    details: { limitBytes: INPUT_BYTES_MAX },
  })
}
