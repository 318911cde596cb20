/** Opening a node's parts: its options checked, the store on its backend, then the cluster over it. */
import { randomBytes as cryptoRandomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import type { Role } from '../api/role.js'
import { MeshError } from '../errors.js'
import { LevelBackend, MemoryBackend, Store } from '../storage/index.js'
import { Cluster } from './cluster.js'
import type { Limits } from './options.js'
import { CLUSTER_ID_DEFAULT, checkLimits, checkRole, givenOptions, secretOf } from './options.js'
import type { MeshNodeOptions } from './types.js'

export interface NodeSettings {
  limits: Limits
  role: Role
  now: () => number
  randomBytes: (size: number) => Uint8Array
  secret: string | undefined
}

/** Checks the options and opens the store and the cluster; the store is closed again if the cluster fails. */
export async function openParts(
  options: MeshNodeOptions,
): Promise<{ store: Store; cluster: Cluster; settings: NodeSettings }> {
  const settings: NodeSettings = {
    limits: checkLimits(options),
    role: checkRole(options.role),
    now: options.now ?? Date.now,
    randomBytes: options.randomBytes ?? ((size: number) => cryptoRandomBytes(size)),
    secret: secretOf(options),
  }
  if (options.memory !== true) {
    if (typeof options.dir !== 'string' || options.dir.length === 0)
      throw new MeshError('MESHKV_ERR_CONFIG', 'a data directory (dir) is required')
    await mkdir(options.dir, { recursive: true })
  }
  const store = await Store.open({
    backend: options.memory === true ? new MemoryBackend() : new LevelBackend(options.dir),
    now: settings.now,
    randomBytes: settings.randomBytes,
    sync: options.sync ?? false,
    maxClockOffsetMs: options.maxClockOffsetMs,
  })
  try {
    const cluster = await Cluster.open({
      store,
      peers: options.peers ?? [],
      secret: settings.secret,
      clusterId: options.clusterId ?? CLUSTER_ID_DEFAULT,
      advertiseUrl: options.advertiseUrl ?? null,
      now: settings.now,
      randomBytes: settings.randomBytes,
      role: settings.role,
      ...givenOptions(options, [
        'transport',
        'logger',
        'pingIntervalMs',
        'peerTimeoutMs',
        'snapshotAfterChanges',
        'logRetainEntries',
        'tls',
      ]),
    })
    return { store, cluster, settings }
  } catch (error) {
    await store.close()
    throw error
  }
}
