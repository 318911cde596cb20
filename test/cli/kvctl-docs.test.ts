/**
 * `kvctl doc get|apply|rm` and the `doc` line of `kvctl watch`, as real binaries against a real
 * meshkv process: an update applied from a file and from stdin, read back as the exact Yjs state
 * (plain) or JSON (`-o json`, `--types`), a delete and the exit codes of a missing document, a
 * damaged update and a missing file.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { RunningChild } from './helpers.js'
import { buildIfStale, killAll, kvctl, spawnKvctl, startMeshkv } from './helpers.js'
import { docEdit } from '../helpers/ydoc.js'

let root: string
let server: RunningChild & { url: string; port: number }

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-cli-docs-'))
  server = await startMeshkv(join(root, 'main'))
})

afterAll(async () => {
  await killAll()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

function kv(args: readonly string[], input?: string | Uint8Array) {
  return kvctl(['--node', server.url, ...args], { input })
}

const ERROR_CODE = /\((MESHKV_ERR_[A-Z_]+)\)\n$/

describe('kvctl doc', () => {
  it('applies updates from a file and from stdin, and reads the state back as bytes or JSON', async () => {
    const file = join(root, 'first.update')
    await writeFile(file, docEdit(1, 'hello', 'notes'))
    const applied = await kv(['doc', 'apply', 'notes', file])
    expect({ code: applied.code, out: applied.out, stderr: applied.stderr }).toEqual({
      code: 0,
      out: 'applied\n',
      stderr: '',
    })
    expect((await kv(['doc', 'apply', 'notes', file])).out).toBe('unchanged\n')
    const piped = await kv(['-o', 'json', 'doc', 'apply', 'notes', '-'], docEdit(2, 'world '))
    expect(JSON.parse(piped.out)).toMatchObject({ name: 'notes', changed: true, token: expect.any(String) })

    const got = await kv(['doc', 'get', 'notes'])
    expect(got.code).toBe(0)
    const local = new Y.Doc()
    Y.applyUpdate(local, got.stdout)
    const body = local.getText('body').toString()
    expect(body).toHaveLength(11)
    expect(local.getMap('meta').toJSON()).toEqual({ title: 'notes' })

    const json = await kv(['-o', 'json', 'doc', 'get', 'notes'])
    expect(JSON.parse(json.out)).toEqual({ body, meta: { title: 'notes' } })
    const typed = await kv(['-o', 'ndjson', 'doc', 'get', 'notes', '--types', 'body:text,list:array'])
    expect(JSON.parse(typed.out)).toEqual({ body, meta: { title: 'notes' }, list: [] })
    const badTypes = await kv(['-o', 'json', 'doc', 'get', 'notes', '--types', 'body:string'])
    expect(badTypes.code).toBe(2)
    // Kinds only shape JSON: with the binary form they are a usage mistake.
    expect((await kv(['doc', 'get', 'notes', '--types', 'body:text'])).code).toBe(2)
  })

  it('rm deletes; a missing document, a damaged update and a missing file have their exit codes', async () => {
    await writeFile(join(root, 'gone.update'), docEdit(3, 'soon gone'))
    expect((await kv(['doc', 'apply', 'gone', join(root, 'gone.update')])).code).toBe(0)
    const removed = await kv(['doc', 'rm', 'gone'])
    expect({ code: removed.code, out: removed.out, stderr: removed.stderr }).toEqual({ code: 0, out: '', stderr: '' })
    for (const args of [
      ['doc', 'rm', 'gone'],
      ['doc', 'get', 'gone'],
      ['-o', 'json', 'doc', 'get', 'never'],
    ]) {
      const missing = await kv(args)
      expect({ args, code: missing.code, error: ERROR_CODE.exec(missing.stderr)?.[1] }).toEqual({
        args,
        code: 3,
        error: 'MESHKV_ERR_NOT_FOUND',
      })
    }
    const damaged = await kv(['doc', 'apply', 'bad', '-'], Uint8Array.of(1, 2, 3))
    expect({ code: damaged.code, error: ERROR_CODE.exec(damaged.stderr)?.[1] }).toEqual({
      code: 1,
      error: 'MESHKV_ERR_DECODE',
    })
    const noFile = await kv(['doc', 'apply', 'bad', join(root, 'no-such-file')])
    expect(ERROR_CODE.exec(noFile.stderr)?.[1]).toBe('MESHKV_ERR_INVALID_ARGUMENT')
  })

  it('watch prints a doc event with the size of its update', async () => {
    const update = docEdit(10, 'watched')
    const watcher = spawnKvctl(['--node', server.url, 'watch', '--prefix', 'watched/'])
    // Write until the watcher has seen a write: it may not be following yet on the first. Each
    // write is a new update (a new client id, one byte like 10's), as the node drops a repeat.
    for (let i = 0; i < 100 && !watcher.stdout().includes(' doc '); i++) {
      await fetch(`${server.url}/v1/docs/watched%2Fone`, { method: 'POST', body: docEdit(10 + i, 'watched') })
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    watcher.child.kill('SIGINT')
    const ended = await watcher.exited
    expect({ code: ended.code, stderr: ended.stderr }).toEqual({ code: 0, stderr: '' })
    expect(ended.stdout.toString('utf8')).toMatch(new RegExp(`^\\d+ doc watched/one bytes=${update.length}$`, 'm'))
  })
})
