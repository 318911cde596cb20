/**
 * One error family for all of meshkv. Every operating error (bad input, a dead peer, a full disk)
 * is a `MeshError` with a stable `code`; tests assert codes, never messages. The table below is
 * the only place that maps a code to an HTTP status.
 */

export const ERROR_TABLE = {
  /** A request or argument is malformed (bad JSON, bad parameter, bad token). */
  MESHKV_ERR_INVALID_ARGUMENT: 400,
  /** The request body is not well-formed JSON where JSON was declared. */
  MESHKV_ERR_MALFORMED_JSON: 400,
  /** A key is empty, not valid UTF-8, or otherwise unusable. */
  MESHKV_ERR_INVALID_KEY: 400,
  /** A key is longer than the configured key limit. */
  MESHKV_ERR_KEY_TOO_LARGE: 400,
  /** A value is larger than the configured value limit. */
  MESHKV_ERR_VALUE_TOO_LARGE: 413,
  /** A request body is larger than the node accepts at all. */
  MESHKV_ERR_BODY_TOO_LARGE: 413,
  /** The media type of a request body is not accepted. */
  MESHKV_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  /** The key, counter, set or route does not exist. */
  MESHKV_ERR_NOT_FOUND: 404,
  /** A client precondition (If-Match, If-None-Match, version) did not hold. */
  MESHKV_ERR_PRECONDITION_FAILED: 412,
  /** A counter delta or total left the range of exact integers. */
  MESHKV_ERR_COUNTER_OVERFLOW: 400,
  /** A batch holds too many operations, or two operations on one key. */
  MESHKV_ERR_BATCH_INVALID: 400,
  /** Bytes could not be decoded: truncated, garbage, or the wrong shape. */
  MESHKV_ERR_DECODE: 400,
  /** An encoded message is larger than its limit. */
  MESHKV_ERR_FRAME_TOO_LARGE: 413,
  /** A causal token is malformed. */
  MESHKV_ERR_INVALID_TOKEN: 400,
  /** A watch cursor points at log entries that no longer exist. */
  MESHKV_ERR_CURSOR_EXPIRED: 410,
  /** A clock reading from elsewhere is further ahead than the allowed offset. */
  MESHKV_ERR_CLOCK_SKEW: 400,
  /** The node is not ready to take this request yet (opening, joining, closing). */
  MESHKV_ERR_NOT_READY: 503,
  /** The node is closed. */
  MESHKV_ERR_CLOSED: 503,
  /** The data directory is held by another process. */
  MESHKV_ERR_LOCKED: 500,
  /** The store failed to read or write (disk full, I/O error). */
  MESHKV_ERR_STORAGE: 507,
  /** A read with a causal token timed out before the node caught up. */
  MESHKV_ERR_READ_TIMEOUT: 504,
  /** This node is a read-only replica (`--role replica`): write through a member. */
  MESHKV_ERR_READ_ONLY: 403,
  /** A quorum read (`r=quorum|all`) heard from too few members in time. */
  MESHKV_ERR_READ_QUORUM: 504,
  /**
   * The cluster forgot this node (`kvctl forget`): it takes no writes any more. Also the `code` on
   * the replicator's log line for a refused change of a forgotten member (the `refusedForgotten`
   * counter); a link from a forgotten member is closed with 4403.
   */
  MESHKV_ERR_FORGOTTEN: 409,
  /** No such member (`kvctl forget` of an unknown node id). */
  MESHKV_ERR_UNKNOWN_MEMBER: 404,
  /** A write was committed locally but not enough members acknowledged it in time. */
  MESHKV_ERR_WRITE_CONCERN_TIMEOUT: 504,
  /** A node could not be reached. */
  MESHKV_ERR_UNREACHABLE: 503,
  /** A client request carries no token, or one no node of the cluster made (or it was revoked). */
  MESHKV_ERR_UNAUTHENTICATED: 401,
  /** The token's role or key prefix does not allow this request. */
  MESHKV_ERR_FORBIDDEN: 403,
  /** A bounded resource is full (connections, watch streams, parked reads or writes): try again later. */
  MESHKV_ERR_BUSY: 503,
  /** `forget` of a member that is linked or was heard from recently (pass `force` to forget it anyway). */
  MESHKV_ERR_MEMBER_ALIVE: 409,
  /**
   * This node takes no writes for now: it is checking, after a start, that its peers hold none of
   * its own changes it lacks (a data directory put back from an older copy), or it is fetching such
   * changes back from them. Retry, or write through another node.
   */
  MESHKV_ERR_RECOVERING: 503,
  /**
   * This node's id names two histories: another live process runs it (a cloned data directory), or
   * this process wrote changes its peers already hold under the same sequence numbers (it started
   * from an older copy and wrote before it heard from them). It takes no writes until the operator
   * replaces it (docs/operations.md, "Replacing a node whose id was reused").
   */
  MESHKV_ERR_NODE_ID_CONFLICT: 409,
  /** A peer failed authentication: its handshake proof does not match the cluster secret. */
  MESHKV_ERR_AUTH: 401,
  /** A peer belongs to another cluster (its cluster id differs from ours). */
  MESHKV_ERR_CLUSTER_MISMATCH: 409,
  /** Configuration is invalid. */
  MESHKV_ERR_CONFIG: 500,
  /** The store on disk was written by an incompatible version or is damaged. */
  MESHKV_ERR_CORRUPT: 500,
  /** The operation was aborted through an AbortSignal. */
  MESHKV_ERR_ABORTED: 499,
  /**
   * A write would push one key's state past its per-key limit (register siblings or bytes, set
   * members or bytes; docs/consistency.md "Per-key limits"). Nothing was written.
   */
  MESHKV_ERR_STATE_TOO_LARGE: 409,
  /** A peer's change arrived before the changes it depends on were applied. */
  MESHKV_ERR_OUT_OF_ORDER: 409,
  /**
   * An export file (kvctl export, meshkv backup) ends before its trailer, or its trailer does not
   * match what came before it (counts, digest): the file was cut off or changed. Nothing was written.
   */
  MESHKV_ERR_EXPORT_TRUNCATED: 400,
  /** `meshkv restore` was given a data directory that is not empty: it only fills an empty one. */
  MESHKV_ERR_DIR_NOT_EMPTY: 409,
  /** Anything not foreseen: a bug. */
  MESHKV_ERR_INTERNAL: 500,
} as const satisfies Record<string, number>

export type ErrorCode = keyof typeof ERROR_TABLE

export interface MeshErrorOptions {
  cause?: unknown
  /** Structured detail for tools (e.g. `{ limit: 1024, actual: 2000 }`). */
  details?: Record<string, unknown>
}

export class MeshError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'MeshError'
    this.code = code
    this.details = options.details
  }

  get status(): number {
    return statusOf(this.code)
  }
}

export function statusOf(code: ErrorCode): number {
  return ERROR_TABLE[code]
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_TABLE, value)
}

export function isMeshError(error: unknown, code?: ErrorCode): error is MeshError {
  return error instanceof MeshError && (code === undefined || error.code === code)
}

/** A broken invariant is a bug: stop rather than go on with bad state. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`meshkv invariant broken: ${message}`)
}

/** Ends an exhaustive `switch`: the compiler proves it is never reached. */
export function unreachable(value: never): never {
  throw new Error(`meshkv: unreachable case ${JSON.stringify(value)}`)
}
