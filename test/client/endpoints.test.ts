import { describe, expect, it } from 'vitest'
import { EndpointPicker, expandEndpoints, parseEndpoints } from '../../src/client/endpoints.js'
import { meshCodeOf } from '../helpers/async.js'

describe('parseEndpoints', () => {
  it('takes a list or a comma-separated string, trimmed and without trailing slashes', () => {
    expect(parseEndpoints('http://a:1/, https://b:2 ,,')).toEqual(['http://a:1', 'https://b:2'])
    expect(parseEndpoints(['http://a:1/base/'])).toEqual(['http://a:1/base'])
  })

  it('refuses no URL, other schemes, queries and credentials', async () => {
    for (const bad of ['', ' , ', 'a:1', 'ftp://a', 'http://a/?x=1', 'http://u:p@a']) {
      expect(await meshCodeOf(() => parseEndpoints(bad))).toBe('MESHKV_ERR_INVALID_ARGUMENT')
    }
  })
})

describe('EndpointPicker', () => {
  it('sticky: plans from the current endpoint, moves past a failed one and stays', () => {
    const picker = new EndpointPicker(['a', 'b', 'c'], 'sticky')
    expect(picker.plan()).toEqual(['a', 'b', 'c'])
    picker.markFailed('a')
    expect(picker.plan()).toEqual(['b', 'c', 'a'])
    expect(picker.plan()).toEqual(['b', 'c', 'a'])
    picker.markFailed('b')
    picker.markServed('c')
    expect(picker.current).toBe('c')
    // A failure of an endpoint it is not on does not move it.
    picker.markFailed('a')
    expect(picker.plan()).toEqual(['c', 'a', 'b'])
  })

  it('round-robin: each plan starts one further', () => {
    const picker = new EndpointPicker(['a', 'b', 'c'], 'round-robin')
    expect([picker.plan()[0], picker.plan()[0], picker.plan()[0], picker.plan()[0]]).toEqual(['a', 'b', 'c', 'a'])
    picker.markFailed('b')
    expect(picker.plan()).toEqual(['b', 'c', 'a'])
  })
})

describe('expandEndpoints', () => {
  it('turns a host name into one endpoint per address, keeps IP literals, drops repeats, keeps a name that does not resolve', async () => {
    const lookup = async (host: string): Promise<string[]> => {
      if (host === 'cluster.example') return ['10.0.0.1', '10.0.0.2', 'fd00::3']
      if (host === 'gone.example') throw new Error('ENOTFOUND')
      return []
    }
    expect(
      await expandEndpoints(
        ['http://cluster.example:7700', 'http://10.0.0.2:7700', 'http://[::1]:7700', 'http://gone.example:1'],
        lookup,
      ),
    ).toEqual([
      'http://10.0.0.1:7700',
      'http://10.0.0.2:7700',
      'http://[fd00::3]:7700',
      'http://[::1]:7700',
      'http://gone.example:1',
    ])
  })
})
