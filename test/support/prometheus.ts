/**
 * A reader of the Prometheus text exposition format (version 0.0.4), for tests that scrape
 * `/metrics`: every sample with its labels, and each metric family's declared type. Strict: a line
 * it cannot read fails the test, so a malformed exposition never passes unnoticed.
 */

export interface PromSample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  samples: PromSample[]
  /** Metric family name → its `# TYPE` (counter, gauge, histogram, summary, untyped). */
  types: Map<string, string>
  /** The samples of `name` whose labels include every one of `labels`. */
  find(name: string, labels?: Record<string, string>): PromSample[]
  /** The value of the one sample of `name` with `labels`; throws when there is none or several. */
  value(name: string, labels?: Record<string, string>): number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y

export function parseExposition(text: string): Exposition {
  const samples: PromSample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line)
      if (type !== null) types.set(type[1] as string, type[2] as string)
      else if (!line.startsWith('# HELP ')) throw new Error(`an unreadable comment line: ${line}`)
      continue
    }
    const match = SAMPLE.exec(line)
    if (match === null) throw new Error(`an unreadable sample line: ${line}`)
    samples.push({
      name: match[1] as string,
      labels: parseLabels(match[2] ?? '', line),
      value: parseValue(match[3] as string),
    })
  }
  const find = (name: string, labels: Record<string, string> = {}): PromSample[] =>
    samples.filter(
      (sample) =>
        sample.name === name && Object.entries(labels).every(([label, value]) => sample.labels[label] === value),
    )
  return {
    samples,
    types,
    find,
    value(name, labels = {}) {
      const found = find(name, labels)
      if (found.length !== 1)
        throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}, expected one`)
      return (found[0] as PromSample).value
    },
  }
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {}
  LABEL.lastIndex = 0
  while (LABEL.lastIndex < text.length) {
    const start = LABEL.lastIndex
    const match = LABEL.exec(text)
    if (match === null || match.index !== start) throw new Error(`unreadable labels in: ${line}`)
    labels[match[1] as string] = (match[2] as string).replace(/\\(.)/g, (_, char: string) =>
      char === 'n' ? '\n' : char,
    )
  }
  return labels
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  const value = Number(text)
  // Prometheus reads NaN in any case (Go's ParseFloat); prom-client writes `Nan` (event loop stats before a sample).
  if (Number.isNaN(value) && text.toLowerCase() !== 'nan') throw new Error(`not a sample value: ${text}`)
  return value
}
