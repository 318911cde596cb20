import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import selfsigned from 'selfsigned'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { envName, isLoopbackHost, parseNodeConfig } from '../../src/cli/config.js'
import { REFUSED_SECRETS } from '../../src/node/options.js'
import type { NodeConfig } from '../../src/cli/config.js'
import { meshCodeOf, rejectionOf } from '../helpers/async.js'

/** `meshkv node ARGV` under exactly the `MESHKV_*` variables given (commander reads process.env). */
function parse(argv: string[], env: Record<string, string> = {}): NodeConfig {
  for (const name of Object.keys(process.env)) if (name.startsWith('MESHKV_')) vi.stubEnv(name, undefined)
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value)
  return parseNodeConfig(argv)
}

/** The one line a bad configuration fails with; fails unless the error is MESHKV_ERR_CONFIG. */
async function configError(argv: string[], env: Record<string, string> = {}): Promise<string> {
  expect(await meshCodeOf(() => parse(argv, env))).toBe('MESHKV_ERR_CONFIG')
  const message = ((await rejectionOf(() => parse(argv, env))) as Error).message
  expect(message).not.toContain('\n')
  return message
}

afterEach(() => {
  vi.unstubAllEnvs()
})

const TOKEN = 'root-token-0123456789abcdef'
const SECRET = 'cluster-secret-0123456789abcdef'

const filesDir = mkdtempSync(join(tmpdir(), 'meshkv-config-'))
afterAll(() => rmSync(filesDir, { recursive: true, force: true }))

/** A self-signed certificate and its key (EC P-256: milliseconds to make). */
function selfSigned(name: string): Promise<{ cert: string; private: string }> {
  return selfsigned.generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
  })
}

/** A file in the test's directory holding `text`; its path. */
function file(name: string, text: string): string {
  const path = join(filesDir, name)
  writeFileSync(path, text)
  return path
}

describe('the node configuration', () => {
  it("names each flag's variable MESHKV_<FLAG>", () => {
    expect(envName('key-bytes-max')).toBe('MESHKV_KEY_BYTES_MAX')
    expect(envName('dir')).toBe('MESHKV_DIR')
  })

  it('takes the flag, else the environment, else the default', () => {
    const cluster = { peers: [], clusterId: 'meshkv', role: 'member', insecureNoAuth: false }
    expect(parse(['--dir', 'd'])).toEqual({
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
      // Every interface needs a root token (protected mode).
      MESHKV_ROOT_TOKEN: TOKEN,
    }
    expect(parse([], env)).toEqual({
      dir: 'e',
      port: 8000,
      host: '0.0.0.0',
      sync: true,
      keyBytesMax: 64,
      valueBytesMax: 128,
      logLevel: 'debug',
      ...cluster,
      rootToken: TOKEN,
      // A node listening on every interface tells peers its loopback address unless told otherwise.
      advertiseUrl: 'http://127.0.0.1:8000',
    })
    expect(parse(['--dir', 'f', '--port', '0', '--key-bytes-max', '10', '--log-level', 'silent'], env)).toMatchObject({
      dir: 'f',
      port: 0,
      keyBytesMax: 10,
      logLevel: 'silent',
    })
    // An empty variable is unset.
    expect(parse(['--dir', 'd'], { MESHKV_PORT: '' }).port).toBe(7700)
    expect(parse(['--dir', 'd', '--sync'], { MESHKV_SYNC: 'false' }).sync).toBe(true)
    expect(parse(['--dir', 'd'], { MESHKV_SYNC: 'off' }).sync).toBe(false)
  })

  it('takes the role from its choices, by flag or variable, and the log retention (0 keeps none)', async () => {
    expect(parse(['--dir', 'd', '--role', 'replica']).role).toBe('replica')
    expect(parse(['--dir', 'd'], { MESHKV_ROLE: 'replica' }).role).toBe('replica')
    expect(parse(['--dir', 'd', '--role', 'member'], { MESHKV_ROLE: 'replica' }).role).toBe('member')
    expect(await configError(['--dir', 'd', '--role', 'leader'])).toMatch(/--role.*leader.*member, replica/)
    expect(await configError(['--dir', 'd'], { MESHKV_ROLE: 'Replica' })).toMatch(/MESHKV_ROLE/)
    expect(parse(['--dir', 'd', '--log-retain', '0']).logRetainEntries).toBe(0)
    expect(parse(['--dir', 'd'], { MESHKV_LOG_RETAIN: '50' }).logRetainEntries).toBe(50)
    expect(parse(['--dir', 'd']).logRetainEntries).toBeUndefined()
    expect(await configError(['--dir', 'd', '--log-retain', '-1'])).toMatch(/--log-retain/)
  })

  it('takes peers, secret, cluster id and advertised URL; peers without a secret are refused', async () => {
    const config = parse([
      '--dir',
      'd',
      '--peers',
      ' http://a:7701/ ,https://b:7702',
      '--secret',
      'a-secret-of-16-bytes',
      '--cluster-id',
      'prod',
      '--advertise-url',
      'http://me:7700/',
    ])
    expect(config).toMatchObject({
      peers: ['http://a:7701', 'https://b:7702'],
      secret: 'a-secret-of-16-bytes',
      clusterId: 'prod',
      advertiseUrl: 'http://me:7700',
    })
    expect(
      parse(['--dir', 'd'], { MESHKV_PEERS: 'http://a:1', MESHKV_SECRET: SECRET, MESHKV_PEER_TIMEOUT_MS: '2000' }),
    ).toMatchObject({ peers: ['http://a:1'], secret: SECRET, peerTimeoutMs: 2000 })
    expect(await configError(['--dir', 'd', '--peers', 'http://a:1'])).toBe(
      'a node started with peers needs the cluster secret: --secret or MESHKV_SECRET',
    )
    expect(await configError(['--dir', 'd', '--peers', 'ftp://a', '--secret', SECRET])).toMatch(
      /^option '--peers <urls>' argument 'ftp:\/\/a' is invalid/,
    )
    expect(await configError(['--dir', 'd', '--advertise-url', 'nope'])).toMatch(/^option '--advertise-url <url>'/)
  })

  it('drops its own advertised URL from the peers, so every node can be given one list', () => {
    const all = 'http://kv-0.kv:7700,http://kv-1.kv:7700,http://kv-2.kv:7700'
    const env = { MESHKV_PEERS: all, MESHKV_SECRET: SECRET }
    expect(parse(['--dir', 'd', '--advertise-url', 'http://kv-1.kv:7700'], env).peers).toEqual([
      'http://kv-0.kv:7700',
      'http://kv-2.kv:7700',
    ])
    // The default advertised URL (http://HOST:PORT) counts the same.
    expect(
      parse(['--dir', 'd', '--port', '7701', '--peers', 'http://127.0.0.1:7701,http://127.0.0.1:7702'], env).peers,
    ).toEqual(['http://127.0.0.1:7702'])
  })

  it('refuses bad values with one line that names the flag or the variable', async () => {
    expect(await configError([])).toBe('a data directory is required: --dir DIR or MESHKV_DIR')
    expect(await configError(['--dir', 'd', '--port', 'abc'])).toBe(
      "option '--port <port>' argument 'abc' is invalid. It must be a port number from 0 to 65535.",
    )
    expect(await configError(['--dir', 'd'], { MESHKV_PORT: '65536' })).toBe(
      "option '--port <port>' value '65536' from env 'MESHKV_PORT' is invalid. It must be a port number from 0 to 65535.",
    )
    expect(await configError(['--dir', 'd', '--key-bytes-max', '0'])).toMatch(
      /^option '--key-bytes-max <n>' argument '0' is invalid. It must be a positive integer/,
    )
    expect(await configError(['--dir', 'd', '--value-bytes-max', '1e3'])).toMatch(/^option '--value-bytes-max <n>'/)
    expect(await configError(['--dir', 'd'], { MESHKV_SYNC: 'maybe' })).toMatch(
      /from env 'MESHKV_SYNC' is invalid. It must be true or false/,
    )
    expect(await configError(['--dir', 'd', '--log-level', 'loud'])).toMatch(
      /^option '--log-level <level>' argument 'loud' is invalid. It must be one of fatal, /,
    )
    expect(await configError(['--dir', 'd', '--host', ' '])).toMatch(/^option '--host <host>'.* It must not be empty/)
    expect(await configError(['--dir', ' '])).toMatch(/^option '--dir <dir>'.* It must not be empty/)
  })
})

describe('the security settings', () => {
  it('reads the secret from --secret-file or MESHKV_SECRET_FILE (first line, trimmed); not with --secret', async () => {
    const secretFile = file('secret', `  ${SECRET}  \nsecond line\n`)
    expect(parse(['--dir', 'd', '--secret-file', secretFile]).secret).toBe(SECRET)
    expect(parse(['--dir', 'd'], { MESHKV_SECRET_FILE: secretFile }).secret).toBe(SECRET)
    expect(parse(['--dir', 'd', '--peers', 'http://a:1', '--secret-file', secretFile]).peers).toEqual(['http://a:1'])
    expect(await configError(['--dir', 'd', '--secret-file', secretFile, '--secret', SECRET])).toMatch(/not both/)
    expect(await configError(['--dir', 'd', '--secret-file', secretFile], { MESHKV_SECRET: SECRET })).toMatch(
      /not both/,
    )
    expect(await configError(['--dir', 'd', '--secret-file', join(filesDir, 'missing')])).toMatch(/ENOENT/)
    expect(await configError(['--dir', 'd', '--secret-file', file('blank', '\n')])).toMatch(/is empty/)
  })

  it('reads the root token from --root-token-file or MESHKV_ROOT_TOKEN, never both, at least 16 bytes', async () => {
    const tokenFile = file('token', `${TOKEN}\r\n`)
    expect(parse(['--dir', 'd']).rootToken).toBeUndefined()
    expect(parse(['--dir', 'd', '--root-token-file', tokenFile]).rootToken).toBe(TOKEN)
    expect(parse(['--dir', 'd'], { MESHKV_ROOT_TOKEN_FILE: tokenFile }).rootToken).toBe(TOKEN)
    expect(parse(['--dir', 'd'], { MESHKV_ROOT_TOKEN: TOKEN }).rootToken).toBe(TOKEN)
    expect(await configError(['--dir', 'd', '--root-token-file', tokenFile], { MESHKV_ROOT_TOKEN: TOKEN })).toMatch(
      /not both/,
    )
    expect(await configError(['--dir', 'd'], { MESHKV_ROOT_TOKEN: 'fifteen-bytes!!' })).toMatch(/at least 16 bytes/)
    expect(parse(['--dir', 'd'], { MESHKV_ROOT_TOKEN: 'sixteen-bytes!!!' }).rootToken).toBe('sixteen-bytes!!!')
    expect(await configError(['--dir', 'd', '--root-token-file', file('short', 'short\n')])).toMatch(/at least 16/)
  })

  it('reads TLS material from its PEM files, advertises https, and refuses halves and bad PEM', async () => {
    const [one, other] = await Promise.all([selfSigned('one'), selfSigned('other')])
    const cert = file('cert.pem', one.cert)
    const key = file('key.pem', one.private)
    const ca = file('ca.pem', other.cert)
    expect(parse(['--dir', 'd', '--tls-cert', cert, '--tls-key', key])).toMatchObject({
      tls: { cert: one.cert, key: one.private },
      advertiseUrl: 'https://127.0.0.1:7700',
    })
    expect(parse(['--dir', 'd', '--tls-cert', cert, '--tls-key', key]).tls).not.toHaveProperty('ca')
    expect(parse(['--dir', 'd'], { MESHKV_TLS_CERT: cert, MESHKV_TLS_KEY: key, MESHKV_TLS_CA: ca }).tls).toEqual({
      cert: one.cert,
      key: one.private,
      ca: other.cert,
    })
    expect(parse(['--dir', 'd']).tls).toBeUndefined()
    expect(await configError(['--dir', 'd', '--tls-cert', cert])).toBe('--tls-cert and --tls-key go together')
    expect(await configError(['--dir', 'd', '--tls-key', key])).toBe('--tls-cert and --tls-key go together')
    expect(await configError(['--dir', 'd', '--tls-ca', ca])).toBe('--tls-ca needs --tls-cert and --tls-key')
    expect(await configError(['--dir', 'd', '--tls-cert', cert, '--tls-key', join(filesDir, 'nope')])).toMatch(
      /^cannot read --tls-key .* \(ENOENT\)$/,
    )
    // Not PEM, a key that is not the certificate's, a CA file without a certificate.
    const notPem = file('not.pem', 'not PEM\n')
    const otherKey = file('other-key.pem', other.private)
    expect(await configError(['--dir', 'd', '--tls-cert', notPem, '--tls-key', key])).toMatch(
      /^--tls-cert and --tls-key/,
    )
    expect(await configError(['--dir', 'd', '--tls-cert', cert, '--tls-key', otherKey])).toMatch(/MISMATCH/)
    expect(await configError(['--dir', 'd', '--tls-cert', cert, '--tls-key', key, '--tls-ca', notPem])).toBe(
      '--tls-ca must hold PEM certificates',
    )
  })

  it('takes --max-connections and --insecure-no-auth, by flag or variable', async () => {
    expect(parse(['--dir', 'd', '--max-connections', '10']).connectionsMax).toBe(10)
    expect(parse(['--dir', 'd'], { MESHKV_MAX_CONNECTIONS: '20' }).connectionsMax).toBe(20)
    expect(parse(['--dir', 'd']).connectionsMax).toBeUndefined()
    expect(await configError(['--dir', 'd', '--max-connections', '0'])).toMatch(/^option '--max-connections <n>'/)
    expect(parse(['--dir', 'd', '--insecure-no-auth']).insecureNoAuth).toBe(true)
    expect(parse(['--dir', 'd'], { MESHKV_INSECURE_NO_AUTH: 'true' }).insecureNoAuth).toBe(true)
  })
})

describe('protected mode and secret checks', () => {
  it('tells loopback hosts from the others', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', 'LOCALHOST', '::1', '[::1]', '::ffff:127.0.0.1'])
      expect(isLoopbackHost(host), host).toBe(true)
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '::ffff:10.0.0.1', '1.127.0.0'])
      expect(isLoopbackHost(host), host).toBe(false)
  })

  it('refuses a non-loopback host without a root token unless --insecure-no-auth', async () => {
    const line = await configError(['--dir', 'd', '--host', '0.0.0.0'])
    expect(line).toContain('--root-token-file FILE or MESHKV_ROOT_TOKEN')
    expect(await configError(['--dir', 'd'], { MESHKV_HOST: '10.1.2.3' })).toContain('MESHKV_ROOT_TOKEN')
    expect(parse(['--dir', 'd', '--host', '0.0.0.0', '--insecure-no-auth'])).toMatchObject({
      host: '0.0.0.0',
      insecureNoAuth: true,
    })
    expect(parse(['--dir', 'd', '--host', '0.0.0.0'], { MESHKV_ROOT_TOKEN: TOKEN }).rootToken).toBe(TOKEN)
    expect(parse(['--dir', 'd', '--host', 'localhost']).host).toBe('localhost')
  })

  it('refuses a secret shorter than 16 bytes or a published one, from any source', async () => {
    expect(await meshCodeOf(() => parse(['--dir', 'd', '--secret', 'fifteen-bytes!!']))).toBe('MESHKV_ERR_CONFIG')
    expect(parse(['--dir', 'd', '--secret', 'sixteen-bytes!!!']).secret).toBe('sixteen-bytes!!!')
    for (const published of REFUSED_SECRETS) {
      expect(await meshCodeOf(() => parse(['--dir', 'd'], { MESHKV_SECRET: published }))).toBe('MESHKV_ERR_CONFIG')
      const secretFile = file('published', `${published}\n`)
      expect(await meshCodeOf(() => parse(['--dir', 'd', '--secret-file', secretFile]))).toBe('MESHKV_ERR_CONFIG')
    }
    expect(REFUSED_SECRETS).toContain('change-me-meshkv-demo-secret')
  })
})
