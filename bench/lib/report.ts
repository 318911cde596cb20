/**
 * Results: `bench/results/latest.json` is an object keyed by benchmark name, each entry
 * `{ value, unit, baseline, ratio }` plus extras (latency entries: p50_ms, p99_ms, max_ms), and
 * `_meta` (machine, Node version, command, date). The same figures print as a table.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg, platform, release, totalmem } from 'node:os'
import { dirname } from 'node:path'

export interface Entry {
  value: number
  unit: string
  baseline: number | null
  ratio: number | null
  [extra: string]: unknown
}

export type Results = Record<string, Entry>

export interface Meta {
  cpus: number
  cpuModel: string
  memoryGB: number
  os: string
  node: string
  command: string
  mode: string
  date: string
  /** 1-minute load average when the run began and ended: other work on the machine skews figures. */
  loadAvgStart: number
  loadAvgEnd?: number
  durationS?: number
  failures?: Record<string, string>
}

export function machineMeta(command: string, mode: string): Meta {
  const list = cpus()
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    memoryGB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
    command,
    mode,
    date: new Date().toISOString(),
    loadAvgStart: round(loadavg()[0] ?? 0, 2),
  }
}

/** An entry whose ratio is value/baseline (or `ratio` when given); null baselines give null ratios. */
export function entry(
  value: number,
  unit: string,
  baseline: number | null,
  extras: Record<string, unknown> = {},
  ratio?: number | null,
): Entry {
  const computed = ratio !== undefined ? ratio : baseline === null || baseline === 0 ? null : value / baseline
  return {
    value: round(value),
    unit,
    baseline: baseline === null ? null : round(baseline),
    ratio: computed === null || !Number.isFinite(computed) ? null : round(computed, 3),
    ...extras,
  }
}

export function round(value: number, digits?: number): number {
  if (!Number.isFinite(value)) return value
  const places = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 3)
  const factor = 10 ** places
  return Math.round(value * factor) / factor
}

function fmt(value: unknown): string {
  if (value === null || value === undefined) return '—'
  if (typeof value === 'number')
    return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString('en-US') : String(value)
  return String(value)
}

export function formatTable(results: Results, meta: Meta): string {
  const lines: string[] = []
  lines.push(`machine: ${meta.cpus} × ${meta.cpuModel}, ${meta.memoryGB} GB RAM, ${meta.os}`)
  lines.push(
    `node ${meta.node} · command: ${meta.command} · ${meta.date} · load average ${meta.loadAvgStart} → ${meta.loadAvgEnd ?? '?'}`,
  )
  lines.push('')
  const header = ['benchmark', 'value', 'unit', 'baseline', 'ratio', 'p50 ms', 'p99 ms', 'max ms']
  const rows = Object.entries(results).map(([name, e]) => [
    name,
    fmt(e.value),
    e.unit,
    fmt(e.baseline),
    fmt(e.ratio),
    fmt(e['p50_ms']),
    fmt(e['p99_ms']),
    fmt(e['max_ms']),
  ])
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] as string).length)))
  const line = (cells: string[]): string =>
    `| ${cells.map((cell, i) => (i === 0 || i === 2 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join(' | ')} |`
  lines.push(line(header))
  lines.push(
    `|${widths.map((w, i) => (i === 0 || i === 2 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
  )
  for (const row of rows) lines.push(line(row))
  return lines.join('\n')
}

export async function writeResults(file: string, results: Results, meta: Meta): Promise<void> {
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, `${JSON.stringify({ _meta: meta, ...results }, null, 2)}\n`)
}
