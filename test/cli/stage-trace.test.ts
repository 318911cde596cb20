/**
 * The stage trace behind `MESHKV_TRACE_STAGES=1` (src/cli/stage-trace.ts, src/api/trace.ts): two
 * embedded nodes linked over real WebSockets record, for one write, the frame sent by the writer to
 * the other node, the frame the other node received, and the commit on each; and the recorder is
 * installed only when the variable asks for it, answering each line of its input with one line.
 */
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { setStageTrace, stageTrace } from '../../src/api/trace.js'
import type { StageRecord } from '../../src/cli/stage-trace.js'
import { RECORDS_MAX, StageRecorder, TRACE_STAGES_VARIABLE, traceStagesIfAsked } from '../../src/cli/stage-trace.js'
import { decodeVersion } from '../../src/clock/index.js'
import type { Cleanups } from '../node/linked.js'
import { twoLinkedNodes } from '../node/linked.js'

const SECRET = 'stage-trace-test-cluster-secret'
const cleanups: Cleanups = []

afterEach(async () => {
  setStageTrace(null)
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function parse(line: string): { records: StageRecord[]; dropped: number } {
  return (JSON.parse(line) as { stageTrace: { records: StageRecord[]; dropped: number } }).stageTrace
}

describe('stage trace', () => {
  it('records a write sent, received and committed on both nodes, in that order', async () => {
    const [a, b] = await twoLinkedNodes('stage-trace', SECRET, cleanups)
    const recorder = new StageRecorder()
    setStageTrace(recorder)
    const written = await a.put('traced', Buffer.from('v'))
    const [dot] = decodeVersion(written.version)
    const id = `${dot?.node}:${dot?.seq}`
    expect(dot?.node).toBe(a.nodeId)
    await vi.waitFor(async () => expect(await b.get('traced')).toBeDefined(), { timeout: 10_000, interval: 20 })
    // b's commit event follows its get by at most one tick: wait for the record, not the read.
    let records: StageRecord[] = []
    await vi.waitFor(
      () => {
        records.push(...parse(recorder.take()).records)
        expect(records.filter(([kind, , , dots]) => kind === 'committed' && dots.includes(id))).toHaveLength(2)
      },
      { timeout: 10_000, interval: 20 },
    )
    records = records.filter(([, , , dots]) => dots.includes(id))
    const sent = records.filter(([kind]) => kind === 'sent')
    const received = records.filter(([kind]) => kind === 'received')
    expect(sent.map(([, peer]) => peer)).toEqual([b.nodeId])
    expect(received.map(([, peer]) => peer)).toEqual([a.nodeId])
    const [firstCommit, lastCommit] = records.filter(([kind]) => kind === 'committed').map(([, , atMs]) => atMs)
    const sentAt = sent[0]?.[2] as number
    const receivedAt = received[0]?.[2] as number
    expect(firstCommit).toBeLessThanOrEqual(sentAt)
    expect(sentAt).toBeLessThanOrEqual(receivedAt)
    expect(receivedAt).toBeLessThanOrEqual(lastCommit as number)
  })

  it('forgets what it handed out', () => {
    const recorder = new StageRecorder(() => 5)
    recorder.committed([{ change: { dot: { node: 'n', seq: 1 } } }])
    expect(parse(recorder.take()).records).toEqual([['committed', null, 5, ['n:1']]])
    expect(parse(recorder.take()).records).toEqual([])
  })

  it('keeps at most RECORDS_MAX records between two takes and counts the rest as dropped', () => {
    const recorder = new StageRecorder(() => 1)
    const entries = [{ change: { dot: { node: 'n', seq: 1 } } }]
    for (let i = 0; i < RECORDS_MAX + 2; i++) recorder.committed(entries)
    const taken = parse(recorder.take())
    expect([taken.records.length, taken.dropped]).toEqual([RECORDS_MAX, 2])
    recorder.committed(entries)
    expect(parse(recorder.take())).toMatchObject({ dropped: 0, records: [['committed', null, 1, ['n:1']]] })
  })

  it('is installed only when the variable is 1, and answers each input line with one line', async () => {
    const input = new PassThrough()
    const output = new PassThrough()
    expect(traceStagesIfAsked({}, input, output)).toBeNull()
    expect(traceStagesIfAsked({ [TRACE_STAGES_VARIABLE]: 'yes' }, input, output)).toBeNull()
    expect(stageTrace).toBeNull()
    const recorder = traceStagesIfAsked({ [TRACE_STAGES_VARIABLE]: '1' }, input, output)
    expect(recorder).not.toBeNull()
    expect(stageTrace).toBe(recorder)
    stageTrace?.frame('Sent', 'peer', [{ dot: { node: 'n', seq: 2 } }])
    output.setEncoding('utf8')
    const lines: string[] = []
    output.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter(Boolean)))
    input.write('\n\n')
    await vi.waitFor(() => expect(lines).toHaveLength(2))
    expect(parse(lines[0] as string).records.map(([kind, peer, , dots]) => [kind, peer, dots])).toEqual([
      ['sent', 'peer', ['n:2']],
    ])
    expect(parse(lines[1] as string).records).toEqual([])
  })
})
