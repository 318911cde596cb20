/** Option parsers both CLIs use: commander turns their refusal into its one-line usage error. */
import { InvalidArgumentError } from 'commander'
import { parsePositiveInteger } from '../api/index.js'

/** A positive integer written in decimal (`--limit 10`, `MESHKV_PEER_TIMEOUT_MS=2000`). */
export function positiveIntegerOption(text: string): number {
  const value = parsePositiveInteger(text)
  if (value === undefined) throw new InvalidArgumentError('It must be a positive integer.')
  return value
}
