/**
 * `kvctl status --wait` on real processes (src/cli/kvctl-status.ts):
 *
 * - a brand-new node joining a node whose log is purged takes a snapshot. The test freezes the
 *   sender (SIGSTOP) once the joiner is receiving it, so the snapshot stands still half done:
 *   `status --wait` under a terminal (`script` gives it one) draws the snapshot's bar on stderr,
 *   the same command with piped stderr writes nothing there; once the sender runs again both
 *   exit 0 and print the joiner's status;
 * - with no node behind the URL it ends at `--timeout-ms` with exit 1 and one line.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { nodeArgs, spawnNode, stopAllProcesses } from '../support/processes.js'
import type { Proc } from '../support/processes.js'
import { REPO_ROOT, buildIfStale, cleanEnv, freePort, kvctl, killAll, spawnKvctl } from './helpers.js'

const SECRET = 'kvctl-status-test-secret-0123456789'
/** Enough 64 KiB values for the snapshot to take many chunks (a chunk holds at most 1 MiB). */
const KEYS = 240
const VALUE = 'x'.repeat(64 * 1024)
/** A link must survive the sender's freeze: peers wait this long before they call it down. */
const PEER_TIMEOUT_MS = '60000'

let root: string
const scripts = new Set<ChildProcessWithoutNullStreams>()

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-kvctl-status-'))
}, 120_000)

afterAll(async () => {
  for (const child of scripts) child.kill('SIGKILL')
  await killAll()
  await stopAllProcesses()
  await rm(root, { recursive: true, force: true })
})

interface Node {
  proc: Proc
  url: string
}

async function startNode(name: string, peers: string[]): Promise<Node> {
  const port = await freePort()
  const args = nodeArgs({
    dir: join(root, name),
    port,
    peers,
    secret: SECRET,
    peerTimeoutMs: Number(PEER_TIMEOUT_MS),
    // The source keeps no log once every member holds it, so a brand-new peer needs a snapshot.
    extra: ['--log-retain', '0'],
  })
  return {
    proc: spawnNode(`meshkv ${name}`, [join(REPO_ROOT, 'bin', 'meshkv.js'), ...args]),
    url: `http://127.0.0.1:${port}`,
  }
}

async function statusOf(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    const response = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(2_000) })
    return response.status === 200 ? ((await response.json()) as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** `kvctl ARGS` under a pseudo-terminal: stdout and stderr both reach the terminal, read here. */
function underTerminal(args: readonly string[]): { output: () => string; exited: Promise<number | null> } {
  const command = [process.execPath, join(REPO_ROOT, 'bin', 'kvctl.js'), ...args].map((part) => `'${part}'`).join(' ')
  const child = spawn('script', ['-qefc', command, '/dev/null'], { cwd: REPO_ROOT, env: cleanEnv() })
  scripts.add(child)
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => (output += chunk))
  child.stderr.resume()
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      scripts.delete(child)
      resolve(code)
    }),
  )
  return { output: () => output, exited }
}

/** Whether `node` is still part way through receiving a snapshot. */
async function stillReceiving(node: Node): Promise<boolean> {
  const status = await statusOf(node.url)
  const receiving = (status?.['snapshot'] as { receiving?: { keysReceived: number; keysTotal: number } | null })
    ?.receiving
  return receiving != null && receiving.keysReceived < receiving.keysTotal
}

/** Starts a joiner and freezes the source once the joiner is half way through its snapshot. */
async function joinerMidSnapshot(source: Node, attempt: number): Promise<Node | undefined> {
  const joiner = await startNode(`joiner-${attempt}`, [source.url])
  for (;;) {
    const status = await statusOf(joiner.url)
    const receiving = (status?.['snapshot'] as { receiving?: { keysReceived: number; keysTotal: number } | null })
      ?.receiving
    if (receiving != null && receiving.keysReceived < receiving.keysTotal) {
      source.proc.child.kill('SIGSTOP')
      // The joiner must still be receiving once the freeze has settled. Once in about 30 runs under
      // load it was not, a second later: it showed a catch-up with every change still to get
      // (chunks sent before the freeze still arrive; the cause was not pinned). Such an attempt
      // is dropped, as one that got through before the freeze is.
      await new Promise((resolve) => setTimeout(resolve, 500))
      if (await stillReceiving(joiner)) return joiner
      source.proc.child.kill('SIGCONT')
      await joiner.proc.stop('SIGKILL')
      return undefined
    }
    if (status?.['ready'] === true || !joiner.proc.running) {
      // It got through before the freeze: this attempt shows no bar.
      await joiner.proc.stop('SIGKILL')
      return undefined
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('kvctl status --wait', () => {
  it('shows a snapshot bar on a terminal while the node receives one, nothing on a pipe, and exits 0 once ready', async () => {
    const source = await startNode('source', [])
    await vi.waitFor(async () => expect((await statusOf(source.url))?.['ready']).toBe(true), { timeout: 20_000 })
    for (let start = 0; start < KEYS; start += 16) {
      const puts = []
      for (let index = start; index < Math.min(KEYS, start + 16); index++)
        puts.push(fetch(`${source.url}/v1/kv/big-${index}`, { method: 'PUT', body: VALUE }))
      for (const answer of await Promise.all(puts)) expect(answer.status).toBe(200)
    }
    let joiner: Node | undefined
    for (let attempt = 1; attempt <= 5 && joiner === undefined; attempt++)
      joiner = await joinerMidSnapshot(source, attempt)
    if (joiner === undefined) throw new Error('five joiners took the whole snapshot before the source could be frozen')
    try {
      const args = ['--node', joiner.url, 'status', '--wait', '--timeout-ms', '60000']
      const terminal = underTerminal(args)
      const piped = spawnKvctl(args)
      await vi.waitFor(() => expect(terminal.output()).toMatch(/receiving a snapshot \[#*\.+\] +\d+% \d+\/\d+ keys/), {
        timeout: 20_000,
        interval: 50,
      })
      // The piped one has polled the same stalled node meanwhile: it must have said nothing.
      expect(piped.stderr()).toBe('')
      source.proc.child.kill('SIGCONT')
      const [terminalCode, pipedExit] = await Promise.all([terminal.exited, piped.exited])
      const joinerId = (await statusOf(joiner.url))?.['nodeId']
      expect({ code: terminalCode, ready: terminal.output().includes(`nodeId: ${String(joinerId)}`) }).toEqual({
        code: 0,
        ready: true,
      })
      expect({ code: pipedExit.code, stderr: pipedExit.stderr }).toEqual({ code: 0, stderr: '' })
      expect(pipedExit.stdout.toString('utf8')).toContain(`nodeId: ${String(joinerId)}\nready: true\n`)
    } finally {
      source.proc.child.kill('SIGCONT')
    }
  }, 120_000)

  it('ends at --timeout-ms with exit 1 and one line when the node never becomes ready', async () => {
    const url = `http://127.0.0.1:${await freePort()}`
    const result = await kvctl(['--node', url, 'status', '--wait', '--timeout-ms', '1500'])
    expect({ code: result.code, out: result.out }).toEqual({ code: 1, out: '' })
    expect(result.stderr).toMatch(
      new RegExp(
        `^kvctl: ${url.replaceAll('.', '\\.')} was not ready within 1500 ms; last seen: .+ \\(MESHKV_ERR_NOT_READY\\)\\n$`,
      ),
    )
  })
})
