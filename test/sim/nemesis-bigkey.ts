/**
 * The simulator's `bigKey` nemesis (issue 12): while a brand-new node joins, clients write values
 * of about 1 MiB to one key from several members, each put keeping every sibling it finds (an
 * empty context), so the key's state grows past a replication frame (4 MiB, `FRAME_BYTES_MAX`)
 * towards the register's per-key limit (8 MiB, `REGISTER_BYTES_MAX`). Some puts land before the
 * join, so the joiner's snapshot carries a state larger than a frame (sent in parts); some land
 * while it joins. A put that would take the key past its limit on the node that takes it is
 * refused (409 `MESHKV_ERR_STATE_TOO_LARGE`): a failure, and the checkers make sure its value is
 * nowhere. Concurrent puts on nodes that have not seen each other's may still pass the limit on
 * merge, which the limit allows. The run's usual checks then say the rest: the joiner became
 * ready, every digest is equal, no acknowledged put was lost.
 *
 * Memory and time stay bounded: only some seeds with a join draw it (from the seed, not the
 * PRNG, so other runs draw as before), and a run makes `BIG_PUTS` such writes.
 *
 * A big value's bytes are its name, a `|`, then filler up to `BIG_VALUE_BYTES`; `valueName` reads
 * that name back (and any other value as UTF-8), so histories and final states stay small, and a
 * value that lost or changed a byte on the way reads as a value no client wrote.
 */
import type { Timeline } from './timeline.js'

/** The key the nemesis grows; no other client op touches it. */
export const BIG_KEY = 'big'
/** Bytes of each big value: just under the node's default value limit (1 MiB, `VALUE_BYTES_MAX_DEFAULT`). */
export const BIG_VALUE_BYTES = 1024 * 1024 - 1024
/** Big puts a run makes: more than the 8 MiB register limit takes, so the last ones are refused. */
export const BIG_PUTS = 11

const FILLER = 0x78 // 'x'
const SEPARATOR = 0x7c // '|'
const FILLER_BYTES = new Uint8Array(BIG_VALUE_BYTES).fill(FILLER)

/** Whether a run with a join draws the nemesis: about one in sixteen seeds, from the seed alone. */
export function drawBigKey(seed: number): boolean {
  return Math.imul(seed ^ 0x5bd1e995, 2654435761) >>> 28 === 5
}

/** The bytes of the big value named `name`. */
export function bigValue(name: string): Uint8Array {
  const bytes = new Uint8Array(BIG_VALUE_BYTES).fill(FILLER)
  const head = Buffer.from(`${name}|`, 'utf8')
  bytes.set(head, 0)
  return bytes
}

/** A value as the checkers see it: a big value by its name (if every byte is as written), else its UTF-8 text. */
export function valueName(bytes: Uint8Array): string {
  if (bytes.length < 4096) return Buffer.from(bytes).toString('utf8')
  const end = bytes.subarray(0, 64).indexOf(SEPARATOR)
  const name = Buffer.from(bytes.subarray(0, Math.max(end, 0))).toString('utf8')
  const whole =
    end > 0 &&
    bytes.length === BIG_VALUE_BYTES &&
    Buffer.compare(bytes.subarray(end + 1), FILLER_BYTES.subarray(end + 1)) === 0
  return whole ? name : `corrupt value of ${bytes.length} bytes (${JSON.stringify(name.slice(0, 32))})`
}

/** What the nemesis needs of the run. */
export interface BigKeyHost {
  readonly timeline: Timeline
  readonly random: () => number
  /** Members the run started with that are up now (where a client may write). */
  writers(): number[]
  /** A client's put of `value` (its bytes `bytes`) to `BIG_KEY` on `node`, keeping every sibling. */
  put(node: number, value: string, bytes: Uint8Array): void
}

/**
 * Schedules the big puts around the join at `joinDelayMs` (from now): about half in the two
 * seconds before it, the rest over the two seconds after, each on a member picked at random.
 */
export function scheduleBigPuts(host: BigKeyHost, joinDelayMs: number): void {
  for (let index = 0; index < BIG_PUTS; index++) {
    const before = index < BIG_PUTS / 2
    const offset = Math.floor(host.random() * 2000)
    const delay = before ? Math.max(50, joinDelayMs - offset) : joinDelayMs + offset
    host.timeline.after(delay, `big put ${index}`, () => {
      const writers = host.writers()
      if (writers.length === 0) return
      const node = writers[Math.floor(host.random() * writers.length)] as number
      const name = `big.${index}`
      host.put(node, name, bigValue(name))
    })
  }
}
