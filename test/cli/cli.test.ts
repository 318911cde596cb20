import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { NodeId } from '../../src/clock/index.js'
import { encodeCausalToken } from '../../src/clock/index.js'
import type { RunningChild } from './helpers.js'
import {
  buildIfStale,
  cleanEnv,
  freePort,
  kvctl,
  killAll,
  spawnKvctl,
  spawnMeshkv,
  startMeshkv,
  waitReady,
} from './helpers.js'

/** One error line on stderr: `kvctl: <message> (<CODE>)`. */
const ERROR_LINE = /^kvctl: [^\n]+ \((MESHKV_ERR_[A-Z_]+)\)\n$/
const VALUE_BYTES_MAX = 4096

let root: string
let server: RunningChild & { url: string; port: number }
let closedUrl: string

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-cli-'))
  server = await startMeshkv(join(root, 'main'), ['--value-bytes-max', String(VALUE_BYTES_MAX)])
  closedUrl = `http://127.0.0.1:${await freePort()}`
})

afterAll(async () => {
  await killAll()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

/** kvctl against the test node. */
function kv(args: readonly string[], input?: string | Uint8Array) {
  return kvctl(['--node', server.url, ...args], { input })
}

function codeOf(stderr: string): string | undefined {
  return ERROR_LINE.exec(stderr)?.[1]
}

describe('kvctl verbs against a real meshkv process', () => {
  it('put and get: the VALUE argument, printed back as the exact bytes', async () => {
    const put = await kv(['put', 'greeting/ü', 'hello world'])
    expect({ code: put.code, stderr: put.stderr }).toEqual({ code: 0, stderr: '' })
    expect(put.out).toMatch(/^v1\.[A-Za-z0-9_-]+\n$/)
    const get = await kv(['get', 'greeting/ü'])
    expect(get.code).toBe(0)
    // stdout is a pipe, not a TTY: no newline is added.
    expect(get.out).toBe('hello world')
  })

  it('put takes piped stdin, - and @file, byte for byte', async () => {
    const bytes = Buffer.from([0, 1, 2, 10, 13, 255, 254, 0x80])
    expect((await kv(['put', 'bin/stdin'], bytes)).code).toBe(0)
    expect((await kv(['get', 'bin/stdin'])).stdout).toEqual(bytes)
    expect((await kv(['put', 'bin/dash', '-'], 'from dash\n')).code).toBe(0)
    expect((await kv(['get', 'bin/dash'])).out).toBe('from dash\n')

    const file = join(root, 'value.json')
    await writeFile(file, '{"n": [1, 2]}')
    expect((await kv(['put', 'doc', `@${file}`, '--content-type', 'application/json'])).code).toBe(0)
    const json = await kv(['get', 'doc', '-o', 'json'])
    expect(JSON.parse(json.out)).toEqual({
      key: 'doc',
      contentType: 'application/json',
      version: expect.stringMatching(/^v1\./),
      siblings: 1,
      value: { n: [1, 2] },
    })
    const binary = JSON.parse((await kv(['get', 'bin/stdin', '-o', 'json'])).out)
    expect(binary).toMatchObject({ contentType: 'application/octet-stream', valueBase64: bytes.toString('base64') })

    const missingFile = await kv(['put', 'x', `@${join(root, 'nope.bin')}`])
    expect({ code: missingFile.code, error: codeOf(missingFile.stderr) }).toEqual({
      code: 1,
      error: 'MESHKV_ERR_INVALID_ARGUMENT',
    })
  })

  it('put -o json and ndjson answer key, version and token', async () => {
    const json = await kv(['put', 'fmt', 'v', '-o', 'json'])
    expect(json.out).toContain('\n  "key": "fmt"')
    expect(JSON.parse(json.out)).toEqual({
      key: 'fmt',
      version: expect.stringMatching(/^v1\./),
      token: expect.stringMatching(/^c1\./),
    })
    const ndjson = await kv(['-o', 'ndjson', 'put', 'fmt', 'w'])
    expect(ndjson.out.trimEnd()).not.toContain('\n')
    expect(JSON.parse(ndjson.out)).toMatchObject({ key: 'fmt' })
  })

  it('get --siblings lists the siblings; del removes a key', async () => {
    const siblings = JSON.parse((await kv(['get', 'fmt', '--siblings', '-o', 'json'])).out)
    expect(siblings.siblings).toEqual([expect.objectContaining({ deleted: false, value: 'w' })])
    expect((await kv(['get', 'fmt', '--siblings'])).out).toMatch(/^[0-9a-f]{16}\ttext\/plain; charset=utf-8\tw\n$/)
    const del = await kv(['del', 'fmt'])
    expect({ code: del.code, out: del.out, stderr: del.stderr }).toEqual({ code: 0, out: '', stderr: '' })
    expect((await kv(['get', 'fmt'])).code).toBe(3)
  })

  it('ls follows every page, or stops at --limit, in either order and format', async () => {
    const writes = Array.from({ length: 120 }, (_, i) =>
      fetch(`${server.url}/v1/kv/many/${String(i).padStart(3, '0')}`, { method: 'PUT', body: `v${i}` }),
    )
    expect((await Promise.all(writes)).every((response) => response.ok)).toBe(true)
    const all = await kv(['ls', '--prefix', 'many/'])
    expect(all.code).toBe(0)
    expect(all.out.split('\n').filter(Boolean)).toEqual(
      Array.from({ length: 120 }, (_, i) => `many/${String(i).padStart(3, '0')}`),
    )
    expect((await kv(['ls', '--prefix', 'many/', '--limit', '105'])).out.split('\n').filter(Boolean)).toHaveLength(105)
    expect((await kv(['ls', '--prefix', 'many/', '--reverse', '--limit', '2'])).out).toBe('many/119\nmany/118\n')
    expect((await kv(['ls', '--start', 'many/010', '--end', 'many/012'])).out).toBe('many/010\nmany/011\n')

    const json = JSON.parse((await kv(['ls', '--prefix', 'many/00', '-o', 'json'])).out)
    expect(json).toHaveLength(10)
    expect(json[0]).toEqual({
      key: 'many/000',
      contentType: 'text/plain;charset=UTF-8',
      version: expect.any(String),
      siblings: 1,
      value: 'v0',
    })
    const ndjson = (await kv(['ls', '--prefix', 'many/00', '-o', 'ndjson'])).out.trimEnd().split('\n')
    expect(ndjson.map((line) => JSON.parse(line).key)).toEqual(json.map((item: { key: string }) => item.key))
    expect(JSON.parse((await kv(['ls', '--prefix', 'none/', '-o', 'json'])).out)).toEqual([])
  })

  it('incr, sadd, srem and smembers', async () => {
    expect((await kv(['incr', 'hits'])).out).toBe('1\n')
    expect((await kv(['incr', 'hits', '10'])).out).toBe('11\n')
    expect((await kv(['incr', 'hits', '-3'])).out).toBe('8\n')
    expect(JSON.parse((await kv(['incr', 'hits', '-o', 'json'])).out)).toEqual({ name: 'hits', value: 9 })
    expect((await kv(['sadd', 'colours', 'red', 'green', 'blue'])).out).toBe('blue\ngreen\nred\n')
    expect((await kv(['srem', 'colours', 'green'])).out).toBe('blue\nred\n')
    expect(JSON.parse((await kv(['smembers', 'colours', '-o', 'json'])).out)).toEqual({
      name: 'colours',
      members: ['blue', 'red'],
    })
    expect((await kv(['smembers', 'colours'])).out).toBe('blue\nred\n')
  })

  it('status in plain and json', async () => {
    const plain = await kv(['status'])
    expect(plain.out).toMatch(/^node: http:\/\/127\.0\.0\.1:\d+\nnodeId: [0-9a-f]{16}\nready: true\n/)
    const json = JSON.parse((await kv(['status', '-o', 'json'])).out)
    expect(json).toMatchObject({
      nodeId: expect.stringMatching(/^[0-9a-f]{16}$/),
      ready: true,
      storage: 'level',
      limits: { valueBytesMax: VALUE_BYTES_MAX },
    })
  })

  it('takes the nodes from MESHKV_NODES, failing over past a dead one', async () => {
    const result = await kvctl(['get', 'greeting/ü'], { env: cleanEnv({ MESHKV_NODES: `${closedUrl},${server.url}` }) })
    expect({ code: result.code, out: result.out }).toEqual({ code: 0, out: 'hello world' })
    // --node wins over the environment.
    const flagWins = await kvctl(['--node', server.url, 'get', 'greeting/ü'], {
      env: cleanEnv({ MESHKV_NODES: closedUrl }),
    })
    expect(flagWins.code).toBe(0)
  })

  it('watch prints changes as they happen, resumes with --since, and ends on SIGINT with 0', async () => {
    const watcher = spawnKvctl(['--node', server.url, 'watch', '--prefix', 'w/', '-o', 'ndjson'])
    // Write until the watcher has seen something: it may not be following yet on the first write.
    for (let i = 0; i < 100 && !watcher.stdout().includes('"w/1"'); i++) {
      await fetch(`${server.url}/v1/kv/w/1`, { method: 'PUT', body: 'one', headers: { 'content-type': 'text/plain' } })
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await fetch(`${server.url}/v1/counters/w%2Fcount`, { method: 'POST' })
    for (let i = 0; i < 100 && !watcher.stdout().includes('"counter"'); i++)
      await new Promise((resolve) => setTimeout(resolve, 20))
    watcher.child.kill('SIGINT')
    const ended = await watcher.exited
    expect({ code: ended.code, stderr: ended.stderr }).toEqual({ code: 0, stderr: '' })
    const events = ended.stdout
      .toString('utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(events[0]).toMatchObject({ id: expect.any(String), event: 'put', key: 'w/1', value: 'one' })
    expect(events.at(-1)).toMatchObject({ event: 'counter', name: 'w/count', delta: 1 })

    const resumed = spawnKvctl(['--node', server.url, 'watch', '--prefix', 'w/', '--since', String(events[0].id)])
    for (let i = 0; i < 100 && !resumed.stdout().includes('counter'); i++)
      await new Promise((resolve) => setTimeout(resolve, 20))
    resumed.child.kill('SIGTERM')
    const plain = (await resumed.exited).stdout.toString('utf8')
    expect(plain).toMatch(/^\d+ counter w\/count 1$/m)
    expect(plain).not.toContain(`${events[0].id} put`)
  })
})

describe('kvctl exit codes', () => {
  it('1: an error, e.g. a value over the node limit (413)', async () => {
    const result = await kv(['put', 'big'], Buffer.alloc(VALUE_BYTES_MAX + 1, 120))
    expect({ code: result.code, error: codeOf(result.stderr), out: result.out }).toEqual({
      code: 1,
      error: 'MESHKV_ERR_VALUE_TOO_LARGE',
      out: '',
    })
  })

  it('2: usage, for an unknown command, an unknown option or a bad option value', async () => {
    for (const args of [
      ['frobnicate'],
      ['get', 'k', '--bogus'],
      ['ls', '--limit', 'abc'],
      ['-o', 'yaml', 'status'],
      ['put'],
      ['incr', 'n', 'x'],
    ]) {
      const result = await kv(args)
      expect({ args, code: result.code, out: result.out }).toEqual({ args, code: 2, out: '' })
      expect(result.stderr).toMatch(/^kvctl: [^\n]+\n$/)
    }
    // No command at all: the help, on stderr.
    const bare = await kv([])
    expect({ code: bare.code, out: bare.out, help: bare.stderr.startsWith('Usage: kvctl') }).toEqual({
      code: 2,
      out: '',
      help: true,
    })
    const unknown = await kv(['frobnicate'])
    expect(unknown.stderr).toBe("kvctl: unknown command 'frobnicate' (see kvctl --help)\n")
    const badNodes = await kvctl(['--node', 'not a url', 'status'])
    expect(badNodes.code).toBe(2)
    const help = await kv(['--help'])
    expect({ code: help.code, usage: help.out.startsWith('Usage: kvctl') }).toEqual({ code: 0, usage: true })
  })

  it('3: not found, for get and del of a missing key', async () => {
    for (const verb of ['get', 'del']) {
      const result = await kv([verb, 'no/such/key'])
      expect({ code: result.code, error: codeOf(result.stderr), out: result.out }).toEqual({
        code: 3,
        error: 'MESHKV_ERR_NOT_FOUND',
        out: '',
      })
    }
  })

  it('4: precondition failed, for put --if-match with a stale version and --if-none-match on a live key', async () => {
    const first = (await kv(['put', 'cas', 'one'])).out.trim()
    const second = await kv(['put', 'cas', 'two', '--if-match', first])
    expect(second.code).toBe(0)
    const stale = await kv(['put', 'cas', 'three', '--if-match', first])
    expect({ code: stale.code, error: codeOf(stale.stderr) }).toEqual({
      code: 4,
      error: 'MESHKV_ERR_PRECONDITION_FAILED',
    })
    expect((await kv(['put', 'cas', 'four', '--if-none-match'])).code).toBe(4)
    expect((await kv(['get', 'cas'])).out).toBe('two')
  })

  it('5: unreachable, when no --node answers', async () => {
    const result = await kvctl(['--node', closedUrl, 'get', 'k'])
    expect({ code: result.code, error: codeOf(result.stderr) }).toEqual({ code: 5, error: 'MESHKV_ERR_UNREACHABLE' })
    expect(result.stderr).toContain(closedUrl)
  })
})

describe('meshkv node process', () => {
  it('a second process on the same directory fails with a clear "locked" line and exit 1', async () => {
    const second = spawnMeshkv(['node', '--dir', join(root, 'main'), '--port', String(await freePort())])
    const ended = await second.exited
    expect(ended.code).toBe(1)
    expect(ended.stderr).toMatch(/^meshkv: .*locked.* \(MESHKV_ERR_LOCKED\)\n$/)
  })

  it('bad configuration exits 2 with one line, from a flag or the environment', async () => {
    const badFlag = await spawnMeshkv(['node', '--dir', join(root, 'never'), '--port', 'abc']).exited
    expect({ code: badFlag.code, stderr: badFlag.stderr }).toEqual({
      code: 2,
      stderr:
        "meshkv: option '--port <port>' argument 'abc' is invalid. It must be a port number from 0 to 65535. (see meshkv --help)\n",
    })
    const badEnv = await spawnMeshkv(
      ['node'],
      cleanEnv({ MESHKV_DIR: join(root, 'never'), MESHKV_VALUE_BYTES_MAX: '-1' }),
    ).exited
    expect({ code: badEnv.code, lines: badEnv.stderr.split('\n').length }).toEqual({ code: 2, lines: 2 })
    expect(badEnv.stderr).toContain('MESHKV_VALUE_BYTES_MAX')
    const badChoice = await spawnMeshkv(['node'], cleanEnv({ MESHKV_DIR: join(root, 'never'), MESHKV_ROLE: 'leader' }))
      .exited
    expect({ code: badChoice.code, lines: badChoice.stderr.split('\n').length }).toEqual({ code: 2, lines: 2 })
    expect(badChoice.stderr).toMatch(/^meshkv: .*'leader' from env 'MESHKV_ROLE' is invalid.*member, replica/)
    const noDir = await spawnMeshkv(['node', '--port', '0']).exited
    expect({ code: noDir.code, stderr: noDir.stderr }).toEqual({
      code: 2,
      stderr: 'meshkv: a data directory is required: --dir DIR or MESHKV_DIR (MESHKV_ERR_CONFIG)\n',
    })
    expect((await spawnMeshkv(['node', '--dir', join(root, 'never'), '--frob']).exited).code).toBe(2)
  })

  it('keeps its data across a SIGKILL and a restart, taking settings from the environment', async () => {
    const dir = join(root, 'restart')
    const port = await freePort()
    const env = cleanEnv({ MESHKV_DIR: dir, MESHKV_PORT: String(port), MESHKV_LOG_LEVEL: 'warn' })
    const url = `http://127.0.0.1:${port}`
    const first = spawnMeshkv(['node'], env)
    await waitReady(url, first)
    expect((await kvctl(['--node', url, 'put', 'durable', 'survives'])).code).toBe(0)
    expect((await kvctl(['--node', url, 'incr', 'restarts'])).code).toBe(0)
    first.child.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')

    const second = spawnMeshkv(['node'], env)
    await waitReady(url, second)
    expect((await kvctl(['--node', url, 'get', 'durable'])).out).toBe('survives')
    expect((await kvctl(['--node', url, 'incr', 'restarts'])).out).toBe('2\n')
    second.child.kill('SIGKILL')
    await second.exited
  })

  it('logs NDJSON with the nodeId, and on SIGTERM turns not ready, drains and exits 0', async () => {
    const node = await startMeshkv(join(root, 'term'), ['--log-level', 'info'])
    for (let i = 0; i < 100 && !node.stdout().includes('"listening"'); i++)
      await new Promise((resolve) => setTimeout(resolve, 20))
    const lines = node
      .stdout()
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    const listening = lines.find((line) => line['msg'] === 'listening')
    expect(listening).toMatchObject({ level: 30, nodeId: expect.stringMatching(/^[0-9a-f]{16}$/), url: node.url })
    // An in-flight read that waits 800 ms for a token the node will never see: the drain lets it
    // finish with its own answer instead of cutting the connection.
    const unseen = encodeCausalToken({ ['00000000000000aa' as NodeId]: 1 })
    const inFlight = fetch(`${node.url}/v1/kv/anything?timeout_ms=800`, { headers: { 'x-causal-token': unseen } })
    await new Promise((resolve) => setTimeout(resolve, 100))
    node.child.kill('SIGTERM')
    await new Promise((resolve) => setTimeout(resolve, 100))
    const readyDuringDrain = await fetch(`${node.url}/readyz`).then(
      (response) => response.status,
      () => 'refused',
    )
    expect([503, 'refused']).toContain(readyDuringDrain)
    const drained = await inFlight
    expect({ status: drained.status, code: ((await drained.json()) as { code?: string }).code }).toEqual({
      status: 504,
      code: 'MESHKV_ERR_READ_TIMEOUT',
    })
    const ended = await node.exited
    expect({ code: ended.code, signal: ended.signal, stderr: ended.stderr }).toEqual({
      code: 0,
      signal: null,
      stderr: '',
    })
    const messages = ended.stdout
      .toString('utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line)['msg'])
    // fastify may log the drained request's completion just after "stopped".
    expect(messages.indexOf('shutting down'), JSON.stringify(messages)).toBeGreaterThan(messages.indexOf('listening'))
    expect(messages.indexOf('stopped'), JSON.stringify(messages)).toBeGreaterThan(messages.indexOf('shutting down'))
    // The directory is free again: another process can open it.
    const again = await startMeshkv(join(root, 'term'))
    again.child.kill('SIGKILL')
    await again.exited
  })

  it('a second signal during the drain exits at once, with 1', async () => {
    const node = await startMeshkv(join(root, 'twice'), ['--log-level', 'info'])
    const unseen = encodeCausalToken({ ['00000000000000bb' as NodeId]: 1 })
    const inFlight = fetch(`${node.url}/v1/kv/anything?timeout_ms=10000`, {
      headers: { 'x-causal-token': unseen },
    }).catch(() => 'cut')
    await new Promise((resolve) => setTimeout(resolve, 100))
    node.child.kill('SIGTERM')
    // The second signal comes once the drain has begun, which waits on a 10 s read.
    await vi.waitFor(() => expect(node.stdout()).toContain('"shutting down"'), { timeout: 10_000, interval: 20 })
    node.child.kill('SIGINT')
    const ended = await node.exited
    const messages = ended.stdout
      .toString('utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line)['msg'])
    expect({ code: ended.code, last: messages.at(-1) }).toEqual({ code: 1, last: 'second signal: exiting at once' })
    // The read was cut, not answered: the process did not wait for the drain.
    expect(await inFlight).toBe('cut')
  })
})
