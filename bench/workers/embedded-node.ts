/**
 * One embedded `MeshNode` in its own process, for replicated_throughput: the node takes peer links
 * on a plain node:http server (`node.attach`), dials its peers over real WebSockets, and writes
 * through the embeddable API when told to. Driven over stdin/stdout, one JSON object a line:
 *
 *   → {"id":1,"cmd":"load","seconds":5,"rate":null,"inflight":64,"prefix":"a-","valueBytes":100}
 *   ← {"id":1,"acked":123,"errors":0,"seconds":5.01}
 *   → {"id":2,"cmd":"vc"}        ← {"id":2,"vc":{...}}
 *   → {"id":3,"cmd":"status"}    ← {"id":3,"ready":true,"linked":[...]}
 *   → {"id":4,"cmd":"digest"}    ← {"id":4,"digest":"...","keys":n}
 *   → {"id":5,"cmd":"close"}     ← {"id":5} and the process exits
 *
 * argv[2]: {"dir","port","peers":[urls],"secret"?,"sync"?}. Prints {"event":"listening"} first.
 */
import { createServer } from 'node:http'
import { createInterface } from 'node:readline'
import { MeshNode } from '../../src/node/index.js'

interface Config {
  dir: string
  port: number
  peers: string[]
  secret?: string
  sync?: boolean
}

interface LoadCommand {
  seconds: number
  rate: number | null
  inflight: number
  prefix: string
  valueBytes: number
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config
const advertiseUrl = `http://127.0.0.1:${config.port}`
const node = await MeshNode.open({
  dir: config.dir,
  sync: config.sync ?? false,
  peers: config.peers,
  ...(config.secret === undefined ? {} : { secret: config.secret }),
  advertiseUrl,
})
const server = createServer((_request, response) => {
  response.statusCode = 404
  response.end()
})
node.attach(server)
await new Promise<void>((resolve) => server.listen(config.port, '127.0.0.1', resolve))
reply({ event: 'listening' })

function reply(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`)
}

function load(command: LoadCommand): Promise<Record<string, unknown>> {
  const value = Buffer.alloc(command.valueBytes, 0x62)
  const started = performance.now()
  const endAt = started + command.seconds * 1000
  let acked = 0
  let errors = 0
  let issued = 0
  let active = 0
  let firstError: string | undefined
  return new Promise((resolve) => {
    let finished = false
    const ticker = setInterval(() => pump(), 1)
    const pump = (): void => {
      if (finished) return
      const now = performance.now()
      if (now >= endAt) {
        if (active === 0) {
          finished = true
          clearInterval(ticker)
          resolve({
            acked,
            errors,
            seconds: (performance.now() - started) / 1000,
            ...(firstError === undefined ? {} : { firstError }),
          })
        }
        return
      }
      const allowed = command.rate === null ? Infinity : Math.floor(((now - started) / 1000) * command.rate)
      while (active < command.inflight && issued < allowed) {
        const key = `${command.prefix}${issued++}`
        active++
        node
          .put(key, value)
          .then(
            () => {
              acked++
            },
            (error: unknown) => {
              errors++
              firstError ??= String(error)
            },
          )
          .finally(() => {
            active--
            pump()
          })
      }
    }
    pump()
  })
}

async function handle(message: { id: number; cmd: string } & Record<string, unknown>): Promise<void> {
  try {
    switch (message.cmd) {
      case 'load':
        reply({ id: message.id, ...(await load(message as unknown as LoadCommand)) })
        return
      case 'vc':
        reply({ id: message.id, vc: node.vc })
        return
      case 'status': {
        const status = node.status()
        reply({ id: message.id, ready: status.ready, linked: status.linked, nodeId: status.nodeId })
        return
      }
      case 'digest': {
        const digest = await node.digest()
        reply({ id: message.id, digest: digest.digest, keys: digest.keys })
        return
      }
      case 'close':
        await node.close()
        server.closeAllConnections()
        server.close()
        reply({ id: message.id })
        process.exit(0)
        return
      default:
        reply({ id: message.id, error: `unknown command ${message.cmd}` })
    }
  } catch (error) {
    reply({ id: message.id, error: String(error) })
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return
  void handle(JSON.parse(line) as { id: number; cmd: string })
})
process.on('SIGTERM', () => void node.close().finally(() => process.exit(0)))
