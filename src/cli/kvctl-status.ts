/**
 * `kvctl status [--wait]`: the node's status, its peers and their lag. With `--wait` it first
 * waits until every `--node` is ready, which is what a rolling restart needs between two nodes
 * (docs/operations.md, "Rolling restart and upgrade"), and then prints their status.
 *
 * Ready means what `/readyz` says (the status's `ready`; a node shutting down answers no status
 * at all) and nothing left to fetch: no snapshot being received and no peer's changes still to
 * catch up with (`catchUpChanges`). While it waits, and only when stderr is a terminal, one line
 * on stderr shows why: a bar of the snapshot's keys or of the changes caught up with, or the
 * node's own reason. Otherwise it is silent. A node that is not ready by `--timeout-ms` (default
 * 60 s) ends the wait with one line saying what it last saw, and exit 1.
 */
import type { Command } from 'commander'
import type { ClientStatus } from '../client/index.js'
import { MeshClient } from '../client/index.js'
import { MeshError } from '../errors.js'
import type { Access } from './kvctl-access.js'
import type { KvctlIo } from './kvctl-io.js'
import { write } from './kvctl-io.js'
import type { OutputFormat } from './kvctl-output.js'
import { jsonText, statusLines } from './kvctl-output.js'

export const WAIT_MS_DEFAULT = 60_000
const POLL_MS = 200
const BAR_WIDTH = 30

/** What the status verb needs from kvctl's context. */
export interface StatusContext {
  client: Pick<MeshClient, 'status'>
  nodes: readonly string[]
  access: Access
  /** `--timeout-ms`, which bounds the wait. */
  concern: { waitMs?: number }
  format: OutputFormat
  io: Pick<KvctlIo, 'stderr'>
  out: (data: string | Uint8Array) => Promise<void>
}

/** `kvctl status`, under `program`. */
export function statusVerb(program: Command, context: (command: Command) => StatusContext): void {
  program
    .command('status')
    .description("show the node's status, its peers and their lag")
    .option('--wait', 'first wait until every --node is ready and caught up (bounded by --timeout-ms, default 60000)')
    .action(async (options: { wait?: boolean }, command: Command) => {
      const current = context(command)
      if (options.wait !== true) return show(current, await current.client.status())
      const deadlineMs = Date.now() + (current.concern.waitMs ?? WAIT_MS_DEFAULT)
      for (const node of current.nodes) await show(current, await waitReady(current, node, deadlineMs))
    })
}

async function show(context: StatusContext, status: ClientStatus): Promise<void> {
  await context.out(context.format === 'plain' ? statusLines(status) : jsonText(context.format, status))
}

/** What keeps a node from being ready, or null when it is ready. */
export function notReadyReason(status: ClientStatus): Progress | null {
  const receiving = status.snapshot?.receiving ?? null
  if (receiving !== null) return { kind: 'snapshot', done: receiving.keysReceived, total: receiving.keysTotal }
  const remaining = (status.peers ?? []).reduce((sum, peer) => sum + (peer.catchUpChanges ?? 0), 0)
  if (remaining > 0) return { kind: 'catch-up', remaining }
  if (!status.ready) return { kind: 'other', text: status.seqGuard?.reason ?? 'the node is not ready' }
  return null
}

export type Progress =
  | { kind: 'snapshot'; done: number; total: number }
  | { kind: 'catch-up'; remaining: number }
  | { kind: 'other'; text: string }

/** Polls one node until it is ready; shows progress on a terminal; throws at the deadline. */
async function waitReady(context: StatusContext, node: string, deadlineMs: number): Promise<ClientStatus> {
  const tty = (context.io.stderr as { isTTY?: boolean }).isTTY === true
  const line = tty ? new ProgressLine(context.io.stderr) : undefined
  let catchUpFrom = 0
  let last = 'no answer yet'
  try {
    for (;;) {
      const left = deadlineMs - Date.now()
      if (left <= 0) throw notReadyInTime(node, context, last)
      const client = new MeshClient({ nodes: node, ...context.access, timeoutMs: Math.max(1, Math.min(5_000, left)) })
      const answer = await statusOf(client)
      await client.close()
      if ('status' in answer) {
        const reason = notReadyReason(answer.status)
        if (reason === null) return answer.status
        if (reason.kind === 'catch-up') catchUpFrom = Math.max(catchUpFrom, reason.remaining)
        last = progressText(reason, catchUpFrom)
      } else last = answer.unreachable
      await line?.show(`${node}: ${last}`)
      await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, Math.max(0, left))))
    }
  } finally {
    await line?.clear()
  }
}

/** A node that cannot be reached (yet: it may be starting) is waited for; any other error ends the wait. */
async function statusOf(client: MeshClient): Promise<{ status: ClientStatus } | { unreachable: string }> {
  try {
    return { status: await client.status() }
  } catch (error) {
    if (
      error instanceof MeshError &&
      (error.code === 'MESHKV_ERR_UNREACHABLE' || error.code === 'MESHKV_ERR_NOT_READY')
    )
      return { unreachable: `not answering (${error.message})` }
    throw error
  }
}

function notReadyInTime(node: string, context: StatusContext, last: string): MeshError {
  const ms = context.concern.waitMs ?? WAIT_MS_DEFAULT
  return new MeshError('MESHKV_ERR_NOT_READY', `${node} was not ready within ${ms} ms; last seen: ${last}`, {
    details: { node, timeoutMs: ms },
  })
}

/** The text of one progress line; a catch-up's total is the most it had left during this wait. */
export function progressText(progress: Progress, catchUpFrom: number): string {
  if (progress.kind === 'snapshot') {
    const { done, total } = progress
    return `receiving a snapshot ${bar(done, total)} ${done}/${total} keys`
  }
  if (progress.kind === 'catch-up') {
    const total = Math.max(catchUpFrom, progress.remaining)
    return `catching up ${bar(total - progress.remaining, total)} ${progress.remaining} changes left`
  }
  return `waiting: ${progress.text}`
}

function bar(done: number, total: number): string {
  const share = total <= 0 ? 0 : Math.min(1, Math.max(0, done / total))
  const filled = Math.round(share * BAR_WIDTH)
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(share * 100)).padStart(3)}%`
}

/** One line on a terminal, rewritten in place. */
class ProgressLine {
  #shown = false

  constructor(private readonly stream: KvctlIo['stderr']) {}

  async show(text: string): Promise<void> {
    this.#shown = true
    await write(this.stream, `\r\u001b[K${text}`)
  }

  async clear(): Promise<void> {
    if (this.#shown) await write(this.stream, '\r\u001b[K')
    this.#shown = false
  }
}
