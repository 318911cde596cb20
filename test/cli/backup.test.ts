/**
 * The export file's bad cases, through the real binaries: a file cut off (between lines or inside
 * one), changed after it was written, garbage, empty or missing is refused by `kvctl import` and
 * `meshkv restore` with a stable code, and nothing is written (the target node stays empty, no
 * data directory is made). `meshkv restore` refuses a directory that is not empty and a partial
 * export; `meshkv backup` refuses a directory that holds no store. An export with `--prefix` and
 * `--types` holds only those keys. On a terminal (a pseudo-terminal from `script`), export and
 * import draw their progress bars on stderr, ending at the full count.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningChild } from './helpers.js'
import { REPO_ROOT, buildIfStale, cleanEnv, killAll, kvctl, spawnMeshkv, startMeshkv } from './helpers.js'

let root: string
let source: RunningChild & { url: string }
let target: RunningChild & { url: string }
let good: string

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-backup-cli-'))
  source = await startMeshkv(join(root, 'source'))
  target = await startMeshkv(join(root, 'target'))
  const at = ['--node', source.url]
  for (let i = 0; i < 20; i++) expect((await kvctl([...at, 'put', `app/${i}`, `value ${i}`])).code).toBe(0)
  expect((await kvctl([...at, 'put', 'other', 'not under app/'])).code).toBe(0)
  expect((await kvctl([...at, 'incr', 'app/count', '42'])).code).toBe(0)
  expect((await kvctl([...at, 'sadd', 'app/set', 'x', 'y'])).code).toBe(0)
  const exported = await kvctl([...at, 'export'])
  expect(exported.code).toBe(0)
  good = join(root, 'good.ndjson')
  await writeFile(good, exported.stdout)
}, 60_000)

afterAll(async () => {
  await killAll()
  await rm(root, { recursive: true, force: true })
})

/** kvctl import into the (empty) target; the target must still be empty afterwards. */
async function importRefused(file: string, code: string, exit = 1): Promise<void> {
  const imported = await kvctl(['--node', target.url, 'import', file])
  expect(imported.stderr).toContain(`(${code})`)
  expect(imported.code).toBe(exit)
  expect((await kvctl(['--node', target.url, 'ls'])).out, 'nothing written').toBe('')
  expect((await kvctl(['--node', target.url, 'smembers', 'app/set'])).out).toBe('')
}

async function meshkv(args: string[]): Promise<{ code: number | null; out: string; stderr: string }> {
  const exited = await spawnMeshkv(args).exited
  return { code: exited.code, out: exited.stdout.toString('utf8'), stderr: exited.stderr }
}

async function variant(name: string, make: (text: string) => string | Buffer): Promise<string> {
  const file = join(root, name)
  await writeFile(file, make(await readFile(good, 'utf8')))
  return file
}

describe('bad export files', () => {
  it('a file cut between lines or inside one is MESHKV_ERR_EXPORT_TRUNCATED, and nothing is imported', async () => {
    const lines = (text: string): string[] => text.trimEnd().split('\n')
    await importRefused(
      await variant('no-trailer', (text) => `${lines(text).slice(0, -1).join('\n')}\n`),
      'MESHKV_ERR_EXPORT_TRUNCATED',
    )
    await importRefused(
      await variant('half', (text) => `${lines(text).slice(0, 8).join('\n')}\n`),
      'MESHKV_ERR_EXPORT_TRUNCATED',
    )
    await importRefused(
      await variant('mid-line', (text) => text.slice(0, text.length / 2)),
      'MESHKV_ERR_EXPORT_TRUNCATED',
    )
    // A trailer kept but entries dropped: the counts no longer match.
    await importRefused(
      await variant('dropped', (text) => [...lines(text).slice(0, 3), ...lines(text).slice(5)].join('\n') + '\n'),
      'MESHKV_ERR_EXPORT_TRUNCATED',
    )
  })

  it('a value changed after the export fails its SHA-256', async () => {
    const edited = await variant('edited', (text) =>
      text.replace(Buffer.from('value 3').toString('base64'), Buffer.from('value X').toString('base64')),
    )
    expect(await readFile(edited, 'utf8')).not.toBe(await readFile(good, 'utf8'))
    await importRefused(edited, 'MESHKV_ERR_EXPORT_TRUNCATED')
  })

  it('garbage, an empty file and a missing one are refused with their codes', async () => {
    await importRefused(
      await variant('garbage', () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37) % 256))),
      'MESHKV_ERR_DECODE',
    )
    await importRefused(await variant('json', () => '{"hello":"world"}\n{"space":"kv"}\n'), 'MESHKV_ERR_DECODE')
    await importRefused(await variant('empty', () => ''), 'MESHKV_ERR_DECODE')
    await importRefused(join(root, 'no-such-file'), 'MESHKV_ERR_NOT_FOUND', 3)
  })

  it('meshkv restore refuses a cut-off file and makes no directory', async () => {
    const cut = await variant('restore-cut', (text) => text.slice(0, text.length - 10))
    const dir = join(root, 'restore-cut-dir')
    const restored = await meshkv(['restore', '--dir', dir, cut])
    expect(restored.stderr).toContain('(MESHKV_ERR_EXPORT_TRUNCATED)')
    expect(restored.code).toBe(1)
    expect(existsSync(dir)).toBe(false)
  })
})

describe('restore and backup refusals', () => {
  it('restore refuses a directory that is not empty, and leaves it as it was', async () => {
    const dir = join(root, 'occupied')
    await mkdir(dir)
    await writeFile(join(dir, 'keep-me'), 'precious')
    const restored = await meshkv(['restore', '--dir', dir, good])
    expect(restored.stderr).toContain('(MESHKV_ERR_DIR_NOT_EMPTY)')
    expect(restored.code).toBe(1)
    expect(await readdir(dir)).toEqual(['keep-me'])
    expect(await readFile(join(dir, 'keep-me'), 'utf8')).toBe('precious')
  })

  it('restore refuses a partial export: its clock would claim states the file lacks', async () => {
    const partial = join(root, 'partial.ndjson')
    const exported = await kvctl(['--node', source.url, 'export', '--prefix', 'app/'])
    expect(exported.code).toBe(0)
    await writeFile(partial, exported.stdout)
    const dir = join(root, 'from-partial')
    const restored = await meshkv(['restore', '--dir', dir, partial])
    expect(restored.stderr).toContain('(MESHKV_ERR_INVALID_ARGUMENT)')
    expect(restored.code).toBe(1)
    expect(existsSync(dir)).toBe(false)
  })

  it('backup refuses a directory that holds no store, and writes no file', async () => {
    const out = join(root, 'nothing.backup')
    const backup = await meshkv(['backup', '--dir', join(root, 'not-a-node'), '--out', out])
    expect(backup.stderr).toContain('(MESHKV_ERR_NOT_FOUND)')
    expect(backup.code).toBe(1)
    expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false)
  })
})

describe('export filters', () => {
  it('--prefix and --types keep only those keys; an unknown type is a usage error', async () => {
    const exported = await kvctl(['--node', source.url, 'export', '--prefix', 'app/', '--types', 'counter,set'])
    expect(exported.code).toBe(0)
    const lines = exported.out
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines[0]).toMatchObject({ prefix: 'app/', types: ['counter', 'set'], full: false, keys: 2 })
    expect(lines.slice(1, -1).map((line) => [line['space'], line['key']])).toEqual([
      ['counter', 'app/count'],
      ['set', 'app/set'],
    ])
    expect(lines[1]).toMatchObject({ value: 42 })
    expect(lines[2]).toMatchObject({ members: ['x', 'y'] })
    const bad = await kvctl(['--node', source.url, 'export', '--types', 'kv,tables'])
    expect(bad.code).toBe(2)
  })
})

describe('on a terminal', () => {
  // `script` gives kvctl a pseudo-terminal for stderr (stdout goes to a file in the shell command).
  const onTerminal = (command: string): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile('script', ['-qec', command, '/dev/null'], { cwd: REPO_ROOT, env: cleanEnv() }, (error, stdout) =>
        error === null ? resolve(stdout) : reject(error),
      )
    })
  const kvctlCommand = (args: string): string => `${process.execPath} ${join(REPO_ROOT, 'bin', 'kvctl.js')} ${args}`

  it('export and import draw a progress bar: keys of the total, bytes, rate, time left', async () => {
    const file = join(root, 'tty.ndjson')
    const exported = await onTerminal(`${kvctlCommand(`--node ${source.url} export --prefix app/`)} > ${file}`)
    expect(exported).toMatch(/export \[#+\] 22\/22 keys {2}[\d.]+ (B|KiB) {2}\d+ keys\/s {2}0:00 left/)
    // Into the source itself: it already holds every entry, so nothing changes.
    const imported = await onTerminal(kvctlCommand(`--node ${source.url} import ${file}`))
    expect(imported).toMatch(/check {2}\[#+\] 22\/22 keys/)
    expect(imported).toMatch(/import \[#+\] 22\/22 keys/)
    expect(imported).toContain('imported 22 entries')
  })
})
