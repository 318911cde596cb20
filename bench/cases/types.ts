import type { Mode, Sizes } from '../lib/options.js'
import type { Results } from '../lib/report.js'

export interface Context {
  mode: Mode
  sizes: Sizes
  log: (message: string) => void
  /** Whether this entry was asked for (`--only`); a case may skip the parts nobody wants. */
  wants: (name: string) => boolean
}

/** One benchmark program: the entries it produces, and how to run it. */
export interface BenchCase {
  names: readonly string[]
  run(context: Context): Promise<Results>
}
