/**
 * Where a node's time went, from a V8 CPU profile (`node --cpu-prof`, sampled every 1 ms by
 * default, which costs the node about as much as one more timer): each sample is put in the first
 * category found walking up from the function it was taken in, and only samples inside a window
 * of the run count (the window's ends are read from `process.hrtime`, the monotonic clock V8 stamps
 * samples with, so a node's startup and the bench's later checks stay out).
 *
 * - `decode_ms`: MessagePack and the codec (msgpackr, src/codec): decoding frames and changes,
 *   encoding states;
 * - `merge_ms`: the merges and the commit group's bookkeeping (src/crdt, src/clock, commit-group,
 *   the causal buffer);
 * - `leveldb_ms`: LevelDB calls made on the main thread (classic-level, abstract-level, the backend);
 * - `waiting_ms`: the process was idle (waiting for the network, the disk's thread pool, a timer);
 * - `gc_ms`: the garbage collector; `other_ms`: everything else (transport, ws, Node itself).
 */
import type { Profile, ProfileNode } from '../tools/cpuprofile-top.js'

export type ProfileStages = Record<
  'decode_ms' | 'merge_ms' | 'leveldb_ms' | 'waiting_ms' | 'gc_ms' | 'other_ms' | 'window_ms',
  number
> & { samples: number }

const CATEGORIES: readonly [keyof ProfileStages, (frame: ProfileNode['callFrame']) => boolean][] = [
  ['waiting_ms', (frame) => frame.functionName === '(idle)'],
  ['gc_ms', (frame) => frame.functionName === '(garbage collector)'],
  ['decode_ms', (frame) => /msgpackr|\/codec\//.test(frame.url)],
  ['leveldb_ms', (frame) => /classic-level|abstract-level|level-backend/.test(frame.url)],
  ['merge_ms', (frame) => /\/crdt\/|\/clock\/|commit-group|causal-buffer/.test(frame.url)],
]

/** The monotonic time now, in µs, on the clock V8 stamps profile samples with. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

export function profileStages(profile: Profile & { startTime: number }, fromUs: number, toUs: number): ProfileStages {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes)
    for (const child of (node as { children?: number[] }).children ?? []) parent.set(child, node.id)
  const category = new Map<number, keyof ProfileStages>()
  const categoryOf = (id: number): keyof ProfileStages => {
    const known = category.get(id)
    if (known !== undefined) return known
    let found: keyof ProfileStages = 'other_ms'
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame
      const match = frame === undefined ? undefined : CATEGORIES.find(([, test]) => test(frame))
      if (match !== undefined) {
        found = match[0]
        break
      }
    }
    category.set(id, found)
    return found
  }
  const stages: ProfileStages = {
    decode_ms: 0,
    merge_ms: 0,
    leveldb_ms: 0,
    waiting_ms: 0,
    gc_ms: 0,
    other_ms: 0,
    window_ms: (toUs - fromUs) / 1000,
    samples: 0,
  }
  let at = profile.startTime
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0
    at += delta
    if (at < fromUs || at > toUs) return
    stages[categoryOf(id)] += delta / 1000
    stages.samples++
  })
  for (const key of Object.keys(stages) as (keyof ProfileStages)[])
    if (key !== 'samples') stages[key] = Math.round(stages[key] * 10) / 10
  return stages
}
