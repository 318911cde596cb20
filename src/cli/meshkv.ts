/**
 * `meshkv node`: runs one node. Configuration comes from flags, then `MESHKV_*` variables, then
 * defaults (`config.ts`); bad configuration exits 2 with one line on stderr. Logs are pino NDJSON
 * on stdout, each line carrying the `nodeId`.
 *
 * Shutdown on SIGTERM or SIGINT (through close-with-grace): `/readyz` turns 503 and new requests
 * are refused, in-flight requests finish and watch streams end (`closeApp`), then replication
 * stops and the store closes (`node.close`), and the process exits 0. A second signal exits at
 * once, with 1.
 *
 * `meshkv backup` and `meshkv restore` work on a stopped node's data directory (backup.ts).
 *
 * Exit codes: 0 clean stop · 1 could not start or stop (a locked data directory, a port in use),
 * or a backup or restore failed · 2 bad configuration or usage.
 */
import { Command, CommanderError } from 'commander'
import type { FastifyInstance } from 'fastify'
import closeWithGrace from 'close-with-grace'
import type { Logger } from 'pino'
import { pino } from 'pino'
import { MeshError } from '../errors.js'
import { buildApp, closeApp } from '../http/app.js'
import { MeshNode, PACKAGE_VERSION } from '../node/index.js'
import type { NodeConfig, NodeOptions } from './config.js'
import {
  ROOT_TOKEN_VARIABLE,
  checkProtectedMode,
  dropEmptyVariables,
  envName,
  isLoopbackHost,
  nodeOptions,
  readRootToken,
  resolveNodeConfig,
} from './config.js'
import { backupCommands } from './backup.js'
import { runLocalCluster } from './local-cluster.js'
import { positiveIntegerOption } from './options.js'
import { traceStagesIfAsked } from './stage-trace.js'

const EXIT_OK = 0
const EXIT_ERROR = 1
const EXIT_USAGE = 2
/** Longest a graceful shutdown may take before the process gives up on it and exits 1. */
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

/** The flags of `meshkv cluster`. */
interface ClusterFlags {
  dir: string
  nodes: number
  basePort: number
  host: string
  rootTokenFile?: string
  insecureNoAuth?: boolean
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
  const node = program
    .command('node')
    .description('run one node (each flag falls back to MESHKV_<FLAG>, e.g. MESHKV_PORT)')
  for (const option of nodeOptions()) node.addOption(option)
  node.action(async (options: NodeOptions) => {
    traceStagesIfAsked(process.env, process.stdin, process.stdout)
    const running = await startNode(resolveNodeConfig(options))
    closeOnSignals(running)
  })
  program
    .command('cluster')
    .description('run a local cluster: one node process per node, on consecutive ports (npm start)')
    .option('--dir <dir>', 'data directory; node i keeps its data in DIR/node<i>', './data')
    .option('--nodes <n>', 'how many nodes, 1 to 9', positiveIntegerOption, 3)
    .option('--base-port <port>', 'port of the first node; the others follow', positiveIntegerOption, 7700)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option(
      '--root-token-file <file>',
      `every node's root token, from the first line of FILE (or ${ROOT_TOKEN_VARIABLE})`,
    )
    .option('--insecure-no-auth', 'serve a non-loopback host without a root token')
    .action(async (flags: ClusterFlags) => {
      const { nodes, basePort, host } = flags
      if (basePort + nodes > 65_536)
        throw new MeshError('MESHKV_ERR_CONFIG', '--base-port must leave room for every node below 65536')
      // The same protected mode as `meshkv node`, checked once here rather than failing in every child.
      const rootTokenFile = flags.rootTokenFile ?? process.env[envName('root-token-file')]
      const rootToken = readRootToken(rootTokenFile === undefined ? {} : { rootTokenFile }, process.env)
      const insecureNoAuth = flags.insecureNoAuth === true
      checkProtectedMode(host, rootToken, insecureNoAuth)
      await runLocalCluster({ dir: flags.dir, nodes, basePort, host, rootToken, insecureNoAuth })
    })
  backupCommands(program)
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
    ...(config.tls === undefined ? {} : { tls: config.tls }),
    logger: replicationLog,
  })
  const log = root.child({ nodeId: node.nodeId })
  let app: FastifyInstance | undefined
  try {
    app = await buildApp(node, {
      logger: log,
      ...(config.rootToken === undefined ? {} : { rootToken: config.rootToken }),
      ...(config.tls === undefined ? {} : { tls: config.tls }),
      ...(config.connectionsMax === undefined ? {} : { connectionsMax: config.connectionsMax }),
    })
    node.attach(app.server)
    const url = await listen(app, config)
    if (config.rootToken === undefined && !isLoopbackHost(config.host))
      log.warn(
        { host: config.host },
        'INSECURE: no root token and --insecure-no-auth: anyone who reaches this port can read, write and forget members',
      )
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

/**
 * The first SIGTERM or SIGINT (or another signal that ends a process, as close-with-grace
 * counts them) starts the graceful shutdown; close-with-grace exits 0 when it ends, 1 when it
 * fails or outlasts `SHUTDOWN_GRACE_MS`, and 1 at once on a second signal. Errors thrown
 * outside a request are bugs, not a reason to shut down gracefully: they still crash the process.
 */
function closeOnSignals(running: Running): void {
  const { log } = running
  closeWithGrace(
    {
      delay: SHUTDOWN_GRACE_MS,
      logger: false,
      skip: ['uncaughtException', 'unhandledRejection', 'beforeExit'],
      onSecondSignal: (signal) => log.warn({ signal }, 'second signal: exiting at once'),
      onTimeout: (delay) => log.error(`shutdown took longer than ${delay} ms`),
    },
    async ({ signal }) => {
      log.info({ signal }, 'shutting down')
      try {
        await shutdown(running)
        log.info('stopped')
      } catch (error) {
        log.error({ err: error }, 'shutdown failed')
        throw error
      } finally {
        // pino may write asynchronously: the last lines go out before close-with-grace exits.
        await new Promise<void>((resolve) => log.flush(() => resolve()))
      }
    },
  )
}

/** Not ready and drained (`closeApp`), then replication flushed and the store closed (`node.close`). */
async function shutdown(running: Running): Promise<void> {
  await closeApp(running.app)
  await running.node.close()
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
  dropEmptyVariables(process.env)
  try {
    await buildProgram().parseAsync(process.argv.slice(2), { from: 'user' })
  } catch (error) {
    const failure = startupFailure(error)
    if (failure.line !== undefined) process.stderr.write(failure.line)
    process.exit(failure.code)
  }
}

await main()
