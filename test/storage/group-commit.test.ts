/**
 * The group-commit queue on its own: what joins a group, how large a group may grow, that the
 * next group is staged while one is written (and written after it), and that exclusive work runs
 * alone and in order.
 */
import { describe, expect, it } from 'vitest'
import { GroupQueue } from '../../src/storage/group-commit.js'

/** A queue whose groups are recorded; each group's write waits for `hold.next` when it is set. */
function recordingQueue(groupMax: number): {
  queue: GroupQueue<string>
  groups: string[][]
  log: string[]
  hold: { next: Promise<void> | null }
} {
  const groups: string[][] = []
  const log: string[] = []
  const hold: { next: Promise<void> | null } = { next: null }
  const queue = new GroupQueue<string>(async (items) => {
    groups.push(items)
    log.push(`group ${items.join(',')} staged`)
    return async () => {
      log.push(`group ${items.join(',')} start`)
      if (hold.next !== null) await hold.next
      log.push(`group ${items.join(',')} end`)
    }
  }, groupMax)
  return { queue, groups, log, hold }
}

async function ticks(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

describe('GroupQueue', () => {
  it('puts the items pushed in one tick in one group, and none more than the limit', async () => {
    const { queue, groups } = recordingQueue(3)
    for (const item of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) queue.push(item)
    await queue.idle()
    expect(groups).toEqual([['a', 'b', 'c'], ['d', 'e', 'f'], ['g']])
  })

  it('stages the items pushed while a group is written as the next group, and writes it after', async () => {
    const { queue, groups, log, hold } = recordingQueue(10)
    let release = (): void => {}
    hold.next = new Promise<void>((resolve) => (release = resolve))
    queue.push('first')
    await ticks(2)
    expect(groups).toEqual([['first']])
    queue.push('x')
    queue.push('y')
    await ticks(2)
    // Staged while the first is written; their write waits for it.
    expect(groups).toEqual([['first'], ['x', 'y']])
    expect(log).toEqual(['group first staged', 'group first start', 'group x,y staged'])
    queue.push('z')
    await ticks(2)
    // One deep: z waits until x,y is written before it is staged.
    expect(groups).toEqual([['first'], ['x', 'y']])
    hold.next = null
    release()
    await queue.idle()
    expect(groups).toEqual([['first'], ['x', 'y'], ['z']])
    expect(log).toEqual([
      'group first staged',
      'group first start',
      'group x,y staged',
      'group first end',
      'group x,y start',
      'group x,y end',
      'group z staged',
      'group z start',
      'group z end',
    ])
  })

  it('runs a task alone: after the items before it are done, before the items after it start', async () => {
    const { queue, log } = recordingQueue(10)
    queue.push('a')
    queue.push('b')
    const task = queue.exclusive(async () => {
      log.push('task start')
      await ticks(1)
      log.push('task end')
    })
    queue.push('c')
    await task
    await queue.idle()
    expect(log).toEqual([
      'group a,b staged',
      'group a,b start',
      'group a,b end',
      'task start',
      'task end',
      'group c staged',
      'group c start',
      'group c end',
    ])
  })

  it('rejects a failed task on its own and goes on with what follows', async () => {
    const { queue, groups } = recordingQueue(10)
    const failed = queue.exclusive(async () => {
      throw new Error('task failed')
    })
    const after = queue.exclusive(async () => {})
    queue.push('later')
    await expect(failed).rejects.toThrow('task failed')
    await expect(after).resolves.toBeUndefined()
    await queue.idle()
    expect(groups).toEqual([['later']])
  })

  it('is idle at once when nothing was queued, and again after its work', async () => {
    const { queue, groups } = recordingQueue(2)
    await queue.idle()
    expect(groups).toEqual([])
    queue.push('a')
    await queue.idle()
    queue.push('b')
    await queue.idle()
    expect(groups).toEqual([['a'], ['b']])
  })
})
