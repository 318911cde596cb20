import { describe, expect, it } from 'vitest'
import { envName, resolveNodeConfig } from '../../src/cli/config.js'
import { MeshError } from '../../src/errors.js'

function configError(run: () => unknown): string {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(MeshError)
    expect((error as MeshError).code).toBe('MESHKV_ERR_CONFIG')
    return (error as MeshError).message
  }
  throw new Error('expected a configuration error')
}

describe('resolveNodeConfig', () => {
  it("names each flag's variable MESHKV_<FLAG>", () => {
    expect(envName('key-bytes-max')).toBe('MESHKV_KEY_BYTES_MAX')
    expect(envName('dir')).toBe('MESHKV_DIR')
  })

  it('takes the flag, else the environment, else the default', () => {
    const cluster = { peers: [], clusterId: 'meshkv', role: 'member' }
    expect(resolveNodeConfig({ dir: 'd' }, {})).toEqual({
      dir: 'd',
      port: 7700,
      host: '127.0.0.1',
      sync: false,
      logLevel: 'info',
      ...cluster,
      advertiseUrl: 'http://127.0.0.1:7700',
    })
    const env = {
      MESHKV_DIR: 'e',
      MESHKV_PORT: '8000',
      MESHKV_HOST: '0.0.0.0',
      MESHKV_SYNC: 'yes',
      MESHKV_KEY_BYTES_MAX: '64',
      MESHKV_VALUE_BYTES_MAX: '128',
      MESHKV_LOG_LEVEL: 'DEBUG',
    }
    expect(resolveNodeConfig({}, env)).toEqual({
      dir: 'e',
      port: 8000,
      host: '0.0.0.0',
      sync: true,
      keyBytesMax: 64,
      valueBytesMax: 128,
      logLevel: 'debug',
      ...cluster,
      // A node listening on every interface tells peers its loopback address unless told otherwise.
      advertiseUrl: 'http://127.0.0.1:8000',
    })
    expect(resolveNodeConfig({ dir: 'f', port: '0', keyBytesMax: '10', logLevel: 'silent' }, env)).toMatchObject({
      dir: 'f',
      port: 0,
      keyBytesMax: 10,
      logLevel: 'silent',
    })
    // An empty variable is unset.
    expect(resolveNodeConfig({ dir: 'd' }, { MESHKV_PORT: '' }).port).toBe(7700)
    expect(resolveNodeConfig({ dir: 'd', sync: true }, { MESHKV_SYNC: 'false' }).sync).toBe(true)
  })

  it('takes peers, secret, cluster id and advertised URL; peers without a secret are refused', () => {
    const config = resolveNodeConfig(
      {
        dir: 'd',
        peers: ' http://a:7701/ ,https://b:7702',
        secret: 's',
        clusterId: 'prod',
        advertiseUrl: 'http://me:7700/',
      },
      {},
    )
    expect(config).toMatchObject({
      peers: ['http://a:7701', 'https://b:7702'],
      secret: 's',
      clusterId: 'prod',
      advertiseUrl: 'http://me:7700',
    })
    expect(
      resolveNodeConfig(
        { dir: 'd' },
        { MESHKV_PEERS: 'http://a:1', MESHKV_SECRET: 'x', MESHKV_PEER_TIMEOUT_MS: '2000' },
      ),
    ).toMatchObject({ peers: ['http://a:1'], secret: 'x', peerTimeoutMs: 2000 })
    expect(configError(() => resolveNodeConfig({ dir: 'd', peers: 'http://a:1' }, {}))).toBe(
      'a node started with peers needs the cluster secret: --secret or MESHKV_SECRET',
    )
    expect(configError(() => resolveNodeConfig({ dir: 'd', peers: 'ftp://a', secret: 's' }, {}))).toMatch(/^--peers: /)
    expect(configError(() => resolveNodeConfig({ dir: 'd', advertiseUrl: 'nope' }, {}))).toMatch(/^--advertise-url /)
  })

  it('refuses bad values with one line that names the flag or the variable', () => {
    expect(configError(() => resolveNodeConfig({}, {}))).toBe('a data directory is required: --dir DIR or MESHKV_DIR')
    expect(configError(() => resolveNodeConfig({ dir: 'd', port: 'abc' }, {}))).toBe(
      '--port must be a port number from 0 to 65535, not "abc"',
    )
    expect(configError(() => resolveNodeConfig({ dir: 'd' }, { MESHKV_PORT: '65536' }))).toMatch(/^MESHKV_PORT /)
    expect(configError(() => resolveNodeConfig({ dir: 'd', keyBytesMax: '0' }, {}))).toMatch(
      /^--key-bytes-max must be a positive integer/,
    )
    expect(configError(() => resolveNodeConfig({ dir: 'd', valueBytesMax: '1e3' }, {}))).toMatch(/^--value-bytes-max /)
    expect(configError(() => resolveNodeConfig({ dir: 'd' }, { MESHKV_SYNC: 'maybe' }))).toMatch(
      /^MESHKV_SYNC must be true or false/,
    )
    expect(configError(() => resolveNodeConfig({ dir: 'd', logLevel: 'loud' }, {}))).toMatch(
      /^--log-level must be one of fatal, /,
    )
    expect(configError(() => resolveNodeConfig({ dir: 'd', host: ' ' }, {}))).toBe('--host must not be empty')
  })
})
