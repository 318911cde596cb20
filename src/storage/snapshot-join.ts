/**
 * Receiving a snapshot: its states are staged as they arrive (they change nothing), then joined
 * into the node's states with the types' state-based merges, and the clocks are joined. A marker
 * written before the join makes it resumable: a crash midway finishes the join at the next open
 * (joins are idempotent), so the clock never claims changes whose states were not all joined.
 * A stage left without a marker is a snapshot cut off before its end, and is dropped at open.
 * (A brand-new store takes a snapshot straight into place instead: snapshot-intake.ts.)
 */
import type { Hlc, VectorClock } from '../clock/index.js'
import { maxHlc, vcJoin } from '../clock/index.js'
import { decodeState, encodeState } from '../codec/index.js'
import type { AnyState, RegisterState, Space } from '../crdt/index.js'
import { SPACES, emptyState, isEmptyState, joinState } from '../crdt/index.js'
import type { Backend, BackendWrite } from './backend.js'
import type { StoreHead } from './layout.js'
import {
  SNAPSHOT_MARKER_DELETE,
  clockWrites,
  hlcWrite,
  parseStateId,
  readSnapshotMarker,
  snapshotMarkerWrite,
  stateId,
  stateWrites,
} from './layout.js'
import type { CheckedStates, SnapshotStages } from './snapshot-intake.js'
import { clearSub, noStages, timed, timedSync, undoFill } from './snapshot-intake.js'

/** States joined per batch: one read per space and one write for them all. */
const SNAPSHOT_JOIN_BATCH = 4096

/** Writes checked states of a snapshot being received to the stage. */
export async function stageSnapshot(
  backend: Backend,
  states: CheckedStates,
  stages: SnapshotStages = noStages(),
): Promise<void> {
  const writes = states.entries.map(([space, key, bytes]): BackendWrite => ({
    type: 'put',
    sub: 'stage',
    key: stateId(space, key),
    value: bytes,
  }))
  await timed(stages, 'leveldb', () => backend.write(writes, { sync: false }))
}

export function clearStage(backend: Backend): Promise<void> {
  return clearSub(backend, 'stage')
}

/** Joins the staged snapshot, which reflects `vc`; returns the node's new clock and HLC. */
export async function applyStagedSnapshot(
  backend: Backend,
  head: StoreHead,
  vc: VectorClock,
  stages: SnapshotStages = noStages(),
): Promise<{ vc: VectorClock; hlc: Hlc }> {
  await timed(stages, 'leveldb', () => backend.write([snapshotMarkerWrite(vc, 1)], { sync: true }))
  return joinStage(backend, head, vc, 1, stages)
}

/**
 * At open: finishes a join a crash cut off (returning the new clock and HLC), or drops a stage
 * that never got its marker, or what a snapshot going into place wrote before a crash (phase 0:
 * snapshot-intake.ts), returning `null`.
 */
export async function recoverSnapshot(
  backend: Backend,
  head: StoreHead,
): Promise<{ vc: VectorClock; hlc: Hlc } | null> {
  const marker = await readSnapshotMarker(backend)
  if (marker === undefined) {
    await clearStage(backend)
    return null
  }
  if (marker.phase === 0) {
    await undoFill(backend)
    return null
  }
  return joinStage(backend, head, marker.vc, marker.phase, noStages())
}

/**
 * Joins the staged snapshot in two phases, each idempotent, the marker saying which one runs:
 * 1. keys this node holds that the snapshot lacks are joined with the empty state under the
 *    snapshot's clock (what the sender removed or purged goes here too);
 * 2. each staged state is joined into the node's state and taken off the stage.
 * Then the clock becomes the join of both clocks.
 */
async function joinStage(
  backend: Backend,
  head: StoreHead,
  vc: VectorClock,
  phase: 1 | 2,
  stages: SnapshotStages,
): Promise<{ vc: VectorClock; hlc: Hlc }> {
  if (phase === 1) {
    await joinAbsent(backend, head.vc, vc, stages)
    await timed(stages, 'leveldb', () => backend.write([snapshotMarkerWrite(vc, 2)], { sync: true }))
  }
  let hlc = head.hlc
  for (;;) {
    const page = await timed(stages, 'leveldb', () => readPage(backend, 'stage'))
    if (page.length === 0) break
    hlc = await joinStagedPage(backend, page, { ownVc: head.vc, vc, stages }, hlc)
  }
  const newVc = vcJoin(head.vc, vc)
  await timed(stages, 'leveldb', () =>
    backend.write([SNAPSHOT_MARKER_DELETE, hlcWrite(hlc), ...clockWrites(head.vc, newVc)], { sync: true }),
  )
  return { vc: newVc, hlc }
}

/** The first page of `sub` (after `after`, when given). */
async function readPage(
  backend: Backend,
  sub: 'stage' | Space,
  after: string | null = null,
): Promise<[string, Uint8Array][]> {
  const page: [string, Uint8Array][] = []
  const range = after === null ? { limit: SNAPSHOT_JOIN_BATCH } : { gt: after, limit: SNAPSHOT_JOIN_BATCH }
  for await (const entry of backend.iterate(sub, range)) page.push(entry)
  return page
}

/** How the stage joins: the node's clock, the snapshot's, and where the time goes. */
interface JoinContext {
  ownVc: VectorClock
  vc: VectorClock
  stages: SnapshotStages
}

/**
 * Phase 2 for one page of the stage: joins each staged state into the live one and takes it off
 * the stage, in one batch. Returns the HLC raised to the newest register sibling joined.
 */
async function joinStagedPage(
  backend: Backend,
  page: readonly [string, Uint8Array][],
  { ownVc, vc, stages }: JoinContext,
  hlc: Hlc,
): Promise<Hlc> {
  // One read per space for the page's live states (stage keys sort by space first).
  const targets = page.map(([id]) => parseStateId(id))
  const live = new Map<string, Uint8Array | undefined>()
  for (const space of SPACES) {
    const keys = targets.filter((target) => target.space === space).map((target) => target.key)
    if (keys.length === 0) continue
    const values = await timed(stages, 'leveldb', () => backend.getMany(space, keys))
    keys.forEach((key, index) => live.set(stateId(space, key), values[index]))
  }
  const writes: BackendWrite[] = []
  page.forEach(([id, bytes], index) => {
    const { space, key } = targets[index] as { space: Space; key: string }
    const held = live.get(id)
    const [mine, theirs] = timedSync(stages, 'decode', (): [AnyState, AnyState] => [
      held === undefined ? emptyState(space) : decodeState(space, held),
      decodeState(space, bytes),
    ])
    const joined = timedSync(stages, 'join', () => joinState(space, mine, ownVc, theirs, vc))
    if (space === 'kv') for (const sibling of (joined as RegisterState).siblings) hlc = maxHlc(hlc, sibling.hlc)
    writes.push(...stateWrites(space, key, joined), { type: 'del', sub: 'stage', key: id })
  })
  await timed(stages, 'leveldb', () => backend.write(writes, { sync: false }))
  return hlc
}

/**
 * Phase 1: the node's registers and sets the snapshot does not hold, a page at a time. Counters
 * and documents need none: their joins are unions (a document's deletes travel as Yjs delete
 * sets inside its state), so joining one with the empty state leaves it as it is.
 */
async function joinAbsent(
  backend: Backend,
  ownVc: VectorClock,
  vc: VectorClock,
  stages: SnapshotStages,
): Promise<void> {
  for (const space of ['kv', 'set'] as const) {
    let after: string | null = null
    for (;;) {
      const page = await timed(stages, 'leveldb', () => readPage(backend, space, after))
      if (page.length === 0) break
      after = (page[page.length - 1] as [string, Uint8Array])[0]
      const staged = await timed(stages, 'leveldb', () =>
        backend.getMany(
          'stage',
          page.map(([key]) => stateId(space, key)),
        ),
      )
      const writes = timedSync(stages, 'join', () => {
        const writes: BackendWrite[] = []
        page.forEach(([key, bytes], index) => {
          if (staged[index] !== undefined) return
          const joined = joinState(space, decodeState(space, bytes), ownVc, emptyState(space), vc)
          const encoded = isEmptyState(space, joined) ? null : encodeState(joined as never)
          if (encoded === null || Buffer.compare(encoded, bytes) !== 0) writes.push(...stateWrites(space, key, joined))
        })
        return writes
      })
      if (writes.length > 0) await timed(stages, 'leveldb', () => backend.write(writes, { sync: false }))
    }
  }
}
