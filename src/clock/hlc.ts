/**
 * Hybrid logical clock: `(wallMs, logical)`. It never goes backwards, follows the highest clock it
 * has seen, and orders last-write-wins. Time is an input (`nowMs`), never read here.
 */
import { MeshError } from '../errors.js'

export interface Hlc {
  readonly wallMs: number
  readonly logical: number
}

export const HLC_ZERO: Hlc = Object.freeze({ wallMs: 0, logical: 0 })

/** Default bound on how far ahead of our wall clock a remote clock may be. */
export const MAX_OFFSET_MS_DEFAULT = 60_000

export function isHlc(value: unknown): value is Hlc {
  if (typeof value !== 'object' || value === null) return false
  const hlc = value as Record<string, unknown>
  return isCount(hlc['wallMs']) && isCount(hlc['logical'])
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

export function compareHlc(a: Hlc, b: Hlc): number {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1
  return 0
}

export function maxHlc(a: Hlc, b: Hlc): Hlc {
  return compareHlc(a, b) >= 0 ? a : b
}

/** The clock for a new local event: strictly after `last`, and at least the wall clock. */
export function hlcTick(last: Hlc, nowMs: number): Hlc {
  if (nowMs > last.wallMs) return { wallMs: nowMs, logical: 0 }
  return { wallMs: last.wallMs, logical: last.logical + 1 }
}

/**
 * Follows a clock seen on a remote event, without making a new event. A remote clock more than
 * `maxOffsetMs` ahead of `nowMs` is refused with `MESHKV_ERR_CLOCK_SKEW` and `last` is unchanged
 * (the caller counts it); otherwise the result is the max of both.
 */
export function hlcObserve(last: Hlc, remote: Hlc, nowMs: number, maxOffsetMs = MAX_OFFSET_MS_DEFAULT): Hlc {
  checkOffset(remote, nowMs, maxOffsetMs)
  return maxHlc(last, remote)
}

export function checkOffset(remote: Hlc, nowMs: number, maxOffsetMs: number): void {
  if (remote.wallMs - nowMs > maxOffsetMs) {
    throw new MeshError(
      'MESHKV_ERR_CLOCK_SKEW',
      `a clock ${remote.wallMs - nowMs} ms ahead of this node exceeds the allowed offset of ${maxOffsetMs} ms`,
      { details: { remoteWallMs: remote.wallMs, nowMs, maxOffsetMs } },
    )
  }
}
