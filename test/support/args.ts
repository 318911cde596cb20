/**
 * Command lines of the runners (bench/run.ts, test/sim/run.ts, test/chaos/run.ts), parsed by
 * node:util `parseArgs` in strict mode: an unknown flag or a missing value is an error, `--flag
 * value` and `--flag=value` both work.
 */
import { parseArgs } from 'node:util'
import type { ParseArgsConfig } from 'node:util'

type Flags = NonNullable<ParseArgsConfig['options']>
type Values<O extends Flags> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>['values']

/** The flags' values; throws (with parseArgs' message) on an unknown flag or a missing value. */
export function parseFlags<const O extends Flags>(argv: readonly string[], options: O): Values<O> {
  return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values
}

/** A flag's value as a non-negative safe integer; undefined when the flag was not given. */
export function countFlag(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const value = Number(text)
  if (text.trim() === '' || !Number.isSafeInteger(value) || value < 0)
    throw new Error(`--${name} takes a non-negative integer, not ${JSON.stringify(text)}`)
  return value
}
