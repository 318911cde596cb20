/**
 * The node's options: their defaults, and the checks `MeshNode.open` runs before anything is
 * opened. A bad option is a configuration error (`MESHKV_ERR_CONFIG`).
 */
import type { Role } from '../api/role.js'
import { isRole } from '../api/role.js'
import { positiveIntegerSetting } from '../api/numbers.js'
import { KEY_BYTES_PROTOCOL_MAX } from '../codec/guards.js'
import { MeshError } from '../errors.js'
import type { MeshNodeOptions } from './types.js'

export const KEY_BYTES_MAX_DEFAULT = 1024
export const VALUE_BYTES_MAX_DEFAULT = 1024 * 1024
export const BATCH_OPS_MAX_DEFAULT = 1000
/** The most `valueBytesMax` may be: a write must fit in one 4 MiB replication frame. */
export const VALUE_BYTES_MAX_LIMIT = 3 * 1024 * 1024
/** How long a causal wait (`after`) or a quorum read may take, in ms, unless told otherwise. */
export const READ_TIMEOUT_MS_DEFAULT = 5000
export const CLUSTER_ID_DEFAULT = 'meshkv'

export interface Limits {
  keyBytesMax: number
  valueBytesMax: number
  batchOpsMax: number
}

export function checkRole(role: unknown): Role {
  if (role === undefined) return 'member'
  if (isRole(role)) return role
  throw new MeshError('MESHKV_ERR_CONFIG', `role must be "member" or "replica"; got ${JSON.stringify(role)}`)
}

export function checkLimits(options: MeshNodeOptions): Limits {
  const limits = {
    keyBytesMax: positiveIntegerSetting('keyBytesMax', options.keyBytesMax, KEY_BYTES_MAX_DEFAULT),
    valueBytesMax: positiveIntegerSetting('valueBytesMax', options.valueBytesMax, VALUE_BYTES_MAX_DEFAULT),
    batchOpsMax: positiveIntegerSetting('batchOpsMax', options.batchOpsMax, BATCH_OPS_MAX_DEFAULT),
  }
  if (limits.keyBytesMax > KEY_BYTES_PROTOCOL_MAX)
    throw new MeshError(
      'MESHKV_ERR_CONFIG',
      `keyBytesMax may be at most ${KEY_BYTES_PROTOCOL_MAX} (what every node takes from a peer)`,
    )
  if (limits.valueBytesMax > VALUE_BYTES_MAX_LIMIT)
    throw new MeshError(
      'MESHKV_ERR_CONFIG',
      'valueBytesMax may be at most 3 MiB (a write must fit in one replication frame)',
    )
  return limits
}

/** The shortest cluster secret taken, in bytes: anything shorter is guessable offline from one handshake. */
export const SECRET_BYTES_MIN = 16
/**
 * Secrets the project has shipped or shown as examples (docker-compose.yml, README, docs). They are
 * public, so a node refuses them like a short one. Add here any example secret you publish.
 */
export const REFUSED_SECRETS: readonly string[] = ['change-me-meshkv-demo-secret']

/** The cluster secret, with an empty one meaning none; a short or published secret is refused. */
export function secretOf(options: MeshNodeOptions): string | undefined {
  if (options.secret === undefined || options.secret === '') return undefined
  checkSecret(options.secret)
  return options.secret
}

/** Refuses a cluster secret shorter than `SECRET_BYTES_MIN` bytes or one of `REFUSED_SECRETS`. */
export function checkSecret(secret: string): void {
  if (Buffer.byteLength(secret) < SECRET_BYTES_MIN)
    throw new MeshError('MESHKV_ERR_CONFIG', `the cluster secret must be at least ${SECRET_BYTES_MIN} bytes long`)
  if (REFUSED_SECRETS.includes(secret))
    throw new MeshError(
      'MESHKV_ERR_CONFIG',
      'the cluster secret is a published example: make your own (openssl rand -hex 32)',
    )
}

/** Only the options that were given, so the cluster's own defaults apply to the rest. */
export function givenOptions<K extends keyof MeshNodeOptions>(
  options: MeshNodeOptions,
  keys: readonly K[],
): Partial<Pick<MeshNodeOptions, K>> {
  const out: Partial<Pick<MeshNodeOptions, K>> = {}
  for (const key of keys) if (options[key] !== undefined) out[key] = options[key]
  return out
}
