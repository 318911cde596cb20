/**
 * Backup and restore of a node's data directory while no node runs on it (`meshkv backup`,
 * `meshkv restore`; docs/operations.md, "Backup and restore").
 *
 * A backup opens the store directly and writes the same export a live node answers
 * (export.ts), with the reserved sets, so it is full. LevelDB's lock refuses a directory a
 * running node holds (`MESHKV_ERR_LOCKED`).
 *
 * A restore fills an empty directory: the store opens under a new node id (as any new directory
 * does), the backup's states go to the snapshot stage, and the store's two-phase snapshot join
 * joins them under the backup's vector clock, exactly as a snapshot received from a peer would
 * be. Nothing becomes a change of this node: a new local write would win last-write-wins over
 * newer writes the cluster made after the backup, and would reuse no seq only because the id is
 * new. Joined states are causally in the past, so the node then catches up with its peers on
 * everything after the backup's clock, by log shipping or a snapshot.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExportEntry, ExportHeader } from '../api/index.js'
import type { NodeId } from '../clock/index.js'
import { vcNormalize } from '../clock/index.js'
import { MeshError } from '../errors.js'
import type { SnapshotEntry } from '../storage/index.js'
import { LevelBackend, Store } from '../storage/index.js'
import { exportLines } from './export.js'

/** States staged per batch during a restore. */
const RESTORE_BATCH = 1000

/** A full export of the stopped node whose data directory is `dir`, as lines ending in newlines. */
export async function* backupDirectory(dir: string): AsyncGenerator<string> {
  // LevelDB would make a new, empty store in any directory: a wrong --dir must not back up nothing.
  if (!existsSync(join(dir, 'CURRENT')))
    throw new MeshError('MESHKV_ERR_NOT_FOUND', `${dir} is not a meshkv data directory (it holds no store)`)
  const store = await openStore(dir)
  try {
    const snapshot = await store.snapshot()
    try {
      const source = { node: store.nodeId, createdAt: new Date().toISOString() }
      yield* exportLines(snapshot, source, { reserved: true })
    } finally {
      await snapshot.close()
    }
  } finally {
    await store.close()
  }
}

/**
 * Fills the empty (or missing) directory `dir` from a full export whose entries `entries` yields
 * (read and checked by the caller). Resolves to the new node's id and the states joined. On a
 * failure the directory is emptied again, so the restore can simply be run again.
 */
export async function restoreDirectory(
  dir: string,
  header: ExportHeader,
  entries: AsyncIterable<ExportEntry>,
): Promise<{ nodeId: NodeId; keys: number }> {
  if (!header.full)
    throw new MeshError(
      'MESHKV_ERR_INVALID_ARGUMENT',
      'this export is partial (a prefix, some types, or without the cluster sets): only a full export ' +
        '(meshkv backup, or kvctl export with an admin token and no --prefix or --types) can be restored',
    )
  const existed = existsSync(dir)
  if (existed && (await readdir(dir)).length > 0)
    throw new MeshError(
      'MESHKV_ERR_DIR_NOT_EMPTY',
      `${dir} is not empty: restore fills an empty data directory only (move the old one aside first)`,
    )
  await mkdir(dir, { recursive: true })
  try {
    return await restoreInto(dir, header, entries)
  } catch (error) {
    await emptyDirectory(dir, existed)
    throw error
  }
}

async function restoreInto(
  dir: string,
  header: ExportHeader,
  entries: AsyncIterable<ExportEntry>,
): Promise<{ nodeId: NodeId; keys: number }> {
  const store = await openStore(dir)
  try {
    let keys = 0
    let batch: SnapshotEntry[] = []
    for await (const entry of entries) {
      batch.push([entry.space, entry.key, entry.state])
      keys++
      if (batch.length < RESTORE_BATCH) continue
      await store.stageSnapshot(batch)
      batch = []
    }
    if (batch.length > 0) await store.stageSnapshot(batch)
    await store.applyStagedSnapshot(vcNormalize(Object.entries(header.vc) as [NodeId, number][]))
    return { nodeId: store.nodeId, keys }
  } finally {
    await store.close()
  }
}

function openStore(dir: string): Promise<Store> {
  return Store.open({ backend: new LevelBackend(dir), now: Date.now, randomBytes: (size) => randomBytes(size) })
}

async function emptyDirectory(dir: string, keep: boolean): Promise<void> {
  if (!keep) return rm(dir, { recursive: true, force: true })
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true })
}
