/**
 * Prints the functions with the most self time in a V8 `.cpuprofile` (from `node --cpu-prof`):
 *
 *   node --cpu-prof --cpu-prof-dir .tmp/prof --import tsx bench/tools/profile-embedded-put.ts
 *   node --import tsx bench/tools/cpuprofile-top.ts .tmp/prof/<file>.cpuprofile [count]
 */
import { readFile } from 'node:fs/promises'
import { relative } from 'node:path'
import { REPO_ROOT } from '../lib/procs.js'

export interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

export interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export function topSelfTime(
  profile: Profile,
  count: number,
): { name: string; where: string; ms: number; percent: number }[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<string, { name: string; where: string; us: number }>()
  let total = 0
  profile.samples.forEach((id, index) => {
    const node = byId.get(id)
    const delta = profile.timeDeltas[index] ?? 0
    if (node === undefined) return
    total += delta
    const frame = node.callFrame
    const url = frame.url.startsWith('file://') ? relative(REPO_ROOT, new URL(frame.url).pathname) : frame.url
    const where = url === '' ? '' : `${url}:${frame.lineNumber + 1}`
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
    const key = `${name} ${where}`
    const slot = self.get(key) ?? { name, where, us: 0 }
    slot.us += delta
    self.set(key, slot)
  })
  return [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((slot) => ({
      name: slot.name,
      where: slot.where,
      ms: Math.round(slot.us / 100) / 10,
      percent: Math.round((slot.us / total) * 1000) / 10,
    }))
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  const file = process.argv[2]
  if (file === undefined) throw new Error('usage: cpuprofile-top.ts FILE.cpuprofile [count]')
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile
  for (const row of topSelfTime(profile, Number(process.argv[3] ?? 15))) {
    process.stdout.write(
      `${row.percent.toFixed(1).padStart(5)}%  ${row.ms.toFixed(1).padStart(8)} ms  ${row.name}  ${row.where}\n`,
    )
  }
}
