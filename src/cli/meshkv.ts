/**
 * `meshkv node`: runs one node. Configuration comes from flags, then `MESHKV_*` variables, then
 * defaults (`config.ts`); bad configuration exits 2 with one line on stderr. Logs are pino NDJSON
 * on stdout, each line carrying the `nodeId`.
 *
 * Shutdown on SIGTERM or SIGINT: `/readyz` turns 503 and new requests are refused, in-flight
 * requests finish and watch streams end (`closeApp`), then the store closes and the process exits
 * 0. A second signal exits at once, with 1.
 *
 * Exit codes: 0 clean stop · 1 could not start or stop (a locked data directory, a port in use) ·
 * 2 bad configuration or usage.
 */
import { Command, CommanderError } from 'commander'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { pino } from 'pino'
import { MeshError } from '../errors.js'
import { buildApp, closeApp } from '../http/app.js'
import { MeshNode, PACKAGE_VERSION } from '../node/index.js'
import type { NodeConfig, NodeFlags } from './config.js'
import { LOG_LEVELS, resolveNodeConfig } from './config.js'
import { runLocalCluster } from './local-cluster.js'

const EXIT_OK = 0
const EXIT_ERROR = 1
const EXIT_USAGE = 2
/** Longest a graceful shutdown may take before the process gives up on it. */
const SHUTDOWN_GRACE_MS = 15_000

/** The node could not start for a reason outside its configuration: exit 1. */
class StartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StartError'
  }
}

/** A running node: what a shutdown has to close. */
interface Running {
  node: MeshNode
  app: FastifyInstance
  log: Logger
}

function buildProgram(): Command {
  const program = new Command('meshkv')
    .description('meshkv: a multi-master replicated key-value store.')
    .version(PACKAGE_VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({
      outputError: (text, writeErr) =>
        writeErr(
          `meshkv: ${text
            .replace(/^error:\s*/, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()} (see meshkv --help)\n`,
        ),
    })
  program
    .command('node')
    .description('run one node (each flag falls back to MESHKV_<FLAG>, e.g. MESHKV_PORT)')
    .option('--dir <dir>', 'data directory, locked while the node runs (MESHKV_DIR)')
    .option('--port <port>', 'HTTP port (MESHKV_PORT, default 7700)')
    .option('--host <host>', 'address to listen on (MESHKV_HOST, default 127.0.0.1)')
    .option('--sync', 'fsync every committed batch (MESHKV_SYNC)')
    .option('--key-bytes-max <n>', 'longest key in bytes (MESHKV_KEY_BYTES_MAX, default 1024)')
    .option('--value-bytes-max <n>', 'largest value in bytes (MESHKV_VALUE_BYTES_MAX, default 1 MiB)')
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (MESHKV_LOG_LEVEL, default info)`)
    .option('--peers <urls>', 'comma-separated peer URLs to replicate with (MESHKV_PEERS)')
    .option('--secret <secret>', 'cluster secret, required with peers (MESHKV_SECRET)')
    .option('--cluster-id <id>', 'nodes of other clusters are refused (MESHKV_CLUSTER_ID, default meshkv)')
    .option(
      '--advertise-url <url>',
      'the URL peers reach this node at (MESHKV_ADVERTISE_URL, default http://HOST:PORT)',
    )
    .option('--peer-timeout-ms <ms>', 'a peer silent this long is down (MESHKV_PEER_TIMEOUT_MS, default 5000)')
    .option('--role <role>', 'member (reads and writes) or replica (reads only; MESHKV_ROLE, default member)')
    .option(
      '--log-retain <entries>',
      'log entries kept after every member holds them, for watch resume (MESHKV_LOG_RETAIN, default 1000)',
    )
    .action(async (flags: NodeFlags) => {
      const running = await startNode(resolveNodeConfig(flags, process.env))
      handleSignals(running)
    })
  program
    .command('cluster')
    .description('run a local cluster: one node process per node, on consecutive ports (npm start)')
    .option('--dir <dir>', 'data directory; node i keeps its data in DIR/node<i>', './data')
    .option('--nodes <n>', 'how many nodes', '3')
    .option('--base-port <port>', 'port of the first node; the others follow', '7700')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (flags: { dir: string; nodes: string; basePort: string; host: string }) => {
      const nodes = Number(flags.nodes)
      const basePort = Number(flags.basePort)
      if (!Number.isSafeInteger(basePort) || basePort < 1 || basePort + nodes > 65_536)
        throw new MeshError('MESHKV_ERR_CONFIG', '--base-port must leave room for every node below 65536')
      await runLocalCluster({ dir: flags.dir, nodes, basePort, host: flags.host })
    })
  return program
}

/** Opens the node and serves it; on failure closes what was opened and throws. */
async function startNode(config: NodeConfig): Promise<Running> {
  const root = pino({ level: config.logLevel })
  const replicationLog = root.child({ component: 'replication' })
  const node = await MeshNode.open({
    dir: config.dir,
    sync: config.sync,
    keyBytesMax: config.keyBytesMax,
    valueBytesMax: config.valueBytesMax,
    peers: config.peers,
    secret: config.secret,
    clusterId: config.clusterId,
    advertiseUrl: config.advertiseUrl,
    peerTimeoutMs: config.peerTimeoutMs,
    role: config.role,
    ...(config.logRetainEntries === undefined ? {} : { logRetainEntries: config.logRetainEntries }),
    logger: replicationLog,
  })
  const log = root.child({ nodeId: node.nodeId })
  let app: FastifyInstance | undefined
  try {
    app = await buildApp(node, { logger: log })
    node.attach(app.server)
    const url = await listen(app, config)
    log.info(
      {
        url,
        dir: config.dir,
        version: PACKAGE_VERSION,
        peers: config.peers,
        advertiseUrl: config.advertiseUrl,
        role: config.role,
      },
      'listening',
    )
    return { node, app, log }
  } catch (error) {
    if (app !== undefined) await closeApp(app).catch(() => undefined)
    await node.close().catch(() => undefined)
    throw error
  }
}

async function listen(app: FastifyInstance, config: NodeConfig): Promise<string> {
  try {
    return await app.listen({ port: config.port, host: config.host })
  } catch (error) {
    const code = (error as { code?: unknown }).code
    // Another process holds the port, as with a locked directory: exit 1, not a usage error.
    if (code === 'EADDRINUSE')
      throw new StartError(`port ${config.port} on ${config.host} is already in use by another process`, {
        cause: error,
      })
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new MeshError('MESHKV_ERR_CONFIG', `cannot listen on host ${config.host} (${code})`, { cause: error })
    }
    if (code === 'EACCES')
      throw new MeshError('MESHKV_ERR_CONFIG', `no permission to listen on port ${config.port}`, { cause: error })
    throw error
  }
}

/** First SIGTERM or SIGINT: graceful shutdown. A second: exit at once. */
function handleSignals(running: Running): void {
  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      running.log.warn({ signal }, 'second signal: exiting at once')
      exitAfterLogs(running.log, EXIT_ERROR)
      return
    }
    stopping = true
    running.log.info({ signal }, 'shutting down')
    shutdown(running).then(
      () => {
        running.log.info('stopped')
        exitAfterLogs(running.log, EXIT_OK)
      },
      (error: unknown) => {
        running.log.error({ err: error }, 'shutdown failed')
        exitAfterLogs(running.log, EXIT_ERROR)
      },
    )
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}

/** pino writes asynchronously: let the last lines out before the process ends. */
function exitAfterLogs(log: Logger, code: number): void {
  log.flush(() => process.exit(code))
}

/** Not ready, drain the app, then close the store; bounded by `SHUTDOWN_GRACE_MS`. */
async function shutdown(running: Running): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const overdue = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`shutdown took longer than ${SHUTDOWN_GRACE_MS} ms`)), SHUTDOWN_GRACE_MS)
    timer.unref()
  })
  try {
    await Promise.race([closeApp(running.app), overdue])
    await Promise.race([running.node.close(), overdue])
  } finally {
    clearTimeout(timer)
  }
}

/** The exit code and the stderr line for an error that stopped `meshkv` before it ran. */
function startupFailure(error: unknown): { code: number; line: string | undefined } {
  if (error instanceof CommanderError) return { code: error.exitCode === 0 ? EXIT_OK : EXIT_USAGE, line: undefined }
  if (error instanceof MeshError) {
    const code = error.code === 'MESHKV_ERR_CONFIG' ? EXIT_USAGE : EXIT_ERROR
    return { code, line: `meshkv: ${error.message} (${error.code})\n` }
  }
  return { code: EXIT_ERROR, line: `meshkv: ${error instanceof Error ? error.message : String(error)}\n` }
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv.slice(2), { from: 'user' })
  } catch (error) {
    const failure = startupFailure(error)
    if (failure.line !== undefined) process.stderr.write(failure.line)
    process.exit(failure.code)
  }
}

await main()
