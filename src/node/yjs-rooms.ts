/**
 * Live collaboration: `ws://HOST:PORT/v1/yjs/{room}` speaks the y-websocket protocol (y-protocols
 * sync and awareness), so a stock `WebsocketProvider(url + '/v1/yjs', room, doc)` connects to any
 * node. The room is the document of that name (the `doc` key space, node/docs.ts).
 *
 * The room server holds no copy of the document: it answers a client's sync step 1 with
 * `docState(name, { sv })`, sends its own step 1 from the stored state vector, commits every
 * update a client sends as one change (`applyDocUpdate`), and forwards to the room's clients every
 * `'change'` event of that document, local or replicated. So clients on different nodes converge
 * through replication, and a client's own update comes back to it (Yjs ignores what it has).
 * Awareness (cursors, presence) is relayed to the room's clients on this node and, as an
 * `awareness` peer message, to every linked peer, which passes it to its own clients of the room
 * and no further; it is kept in memory only (y-protocols `Awareness`, which times states out),
 * never stored, and a client's states go (on every node) when it leaves. The relay to peers is
 * bounded: AWARENESS_BYTES_MAX a message, AWARENESS_RELAYS_PER_SECOND from one node.
 *
 * With a root token, the token travels as `?token=` (browsers cannot set WebSocket headers): a
 * missing or unknown one is refused before the upgrade (401), a token whose prefix does not cover
 * the room is refused (403), and a `read` token gets a read-only session (its updates are dropped).
 *
 * Bounds: at most `yjsConnectionsMax` sockets in all and `yjsRoomConnectionsMax` per room (more
 * are answered 503 before the upgrade); a message over the document update limit closes the
 * socket (1009, ws's `maxPayload`); a client with more than `PENDING_UPDATES_MAX` updates waiting
 * to commit is closed (1013), so a flood cannot queue without end; one with more than
 * SEND_QUEUE_BYTES_MAX waiting to be sent to it is closed (4429), and one that misses a ping
 * (every PING_INTERVAL_MS) is dropped.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import WebSocket, { WebSocketServer } from 'ws'
import type { RawData } from 'ws'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { AWARENESS_BYTES_MAX } from '../codec/peer.js'
import { DOC_UPDATE_BYTES_MAX } from '../crdt/index.js'
import { MeshError } from '../errors.js'
import { bytesOf, refuseUpgrade, servingUpgradeListeners } from '../transport/index.js'
import type { AwarenessRelay, MeshNode } from './mesh-node.js'
import type { WatchEvent } from './types.js'

export const YJS_PATH = '/v1/yjs/'
export const YJS_CONNECTIONS_MAX_DEFAULT = 1024
export const YJS_ROOM_CONNECTIONS_MAX_DEFAULT = 256
/** Updates one client may have waiting to commit; past it the client is closed (1013). */
export const PENDING_UPDATES_MAX = 1024
/** Bytes queued for one client before it is closed (4429). */
export const SEND_QUEUE_BYTES_MAX = 16 * 1024 * 1024
/** How often a client is pinged; one that has not answered the last ping by the next is dropped. */
export const PING_INTERVAL_MS = 30_000
/** Awareness updates this node relays to its peers in one second at most (docs/protocol.md). */
export const AWARENESS_RELAYS_PER_SECOND = 200
/** Origins of awareness changes that are not a client's message. */
const LEFT = Symbol('a client left')
const PEER = Symbol('a peer relayed it')
/** Queued updates of one client are merged into one commit up to this many bytes. */
const BATCH_BYTES_MAX = DOC_UPDATE_BYTES_MAX / 4

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const MESSAGE_QUERY_AWARENESS = 3
const SYNC_STEP1 = 0
const SYNC_STEP2 = 1
const SYNC_UPDATE = 2

/** Whether a session may write, or the HTTP status that refuses its upgrade (401, 403). */
export type YjsAccess = (token: string | null, room: string) => Promise<{ readOnly: boolean } | number>

export interface YjsRoomsOptions {
  /** Who may join a room with `?token=` (the HTTP face checks tokens); default: everyone, read-write. */
  access?: YjsAccess
  connectionsMax?: number
  roomConnectionsMax?: number
}

interface Client {
  socket: WebSocket
  readOnly: boolean
  /** Awareness client ids this socket announced (removed when it leaves). */
  awarenessIds: Set<number>
  /** Updates received and not yet committed, in the order they came. */
  queue: Uint8Array[]
  committing: boolean
}

interface Room {
  name: string
  clients: Set<Client>
  awareness: awarenessProtocol.Awareness
}

function syncMessage(kind: number, payload: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MESSAGE_SYNC)
  encoding.writeVarUint(encoder, kind)
  encoding.writeVarUint8Array(encoder, payload)
  return encoding.toUint8Array(encoder)
}

function awarenessMessage(update: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MESSAGE_AWARENESS)
  encoding.writeVarUint8Array(encoder, update)
  return encoding.toUint8Array(encoder)
}

function send(client: Client, message: Uint8Array): void {
  const socket = client.socket
  if (socket.readyState !== WebSocket.OPEN) return
  // A client that does not read would make the node hold every update for it: it is closed, and
  // a provider reconnects and syncs what it missed in one step.
  if (socket.bufferedAmount > SEND_QUEUE_BYTES_MAX) socket.close(4429, 'the client does not read what it is sent')
  else socket.send(message, { binary: true })
}

/** The y-websocket rooms of one node, on its HTTP(S) server. */
export class YjsRooms {
  readonly #node: MeshNode
  readonly #access: YjsAccess
  readonly #connectionsMax: number
  readonly #roomConnectionsMax: number
  readonly #server = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    // A message is one update plus a few bytes of framing.
    maxPayload: DOC_UPDATE_BYTES_MAX + 1024,
  })
  readonly #rooms = new Map<string, Room>()
  readonly #onChange = (event: WatchEvent): void => {
    if (event.type !== 'doc') return
    const room = this.#rooms.get(event.name)
    if (room === undefined) return
    const message = syncMessage(SYNC_UPDATE, event.update)
    for (const client of room.clients) send(client, message)
  }
  /** A peer's relay: to this node's clients of the room, if it has any (otherwise nowhere). */
  readonly #onRelay = ({ room, update }: AwarenessRelay): void => {
    const open = this.#rooms.get(room)
    if (open === undefined) return
    try {
      awarenessProtocol.applyAwarenessUpdate(open.awareness, update, PEER)
    } catch {
      // A peer's damaged relay is dropped: presence is renewed every few seconds.
    }
  }
  #relayWindow = { start: 0, count: 0 }
  #connections = 0

  constructor(node: MeshNode, options: YjsRoomsOptions = {}) {
    this.#node = node
    this.#access = options.access ?? (() => Promise.resolve({ readOnly: false }))
    this.#connectionsMax = options.connectionsMax ?? YJS_CONNECTIONS_MAX_DEFAULT
    this.#roomConnectionsMax = options.roomConnectionsMax ?? YJS_ROOM_CONNECTIONS_MAX_DEFAULT
    node.on('awareness', this.#onRelay)
  }

  /** Awareness updates not relayed to peers for the rate bound, since the node started. */
  relaysDropped = 0

  /** Sockets open now, in all rooms. */
  get connections(): number {
    return this.#connections
  }

  attach(server: HttpServer | HttpsServer): void {
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(request.url ?? '/', 'http://localhost')
      if (!url.pathname.startsWith(YJS_PATH)) {
        // The peer transport takes /v1/peer; when nobody else listens, say so.
        if (servingUpgradeListeners(server) <= 1) refuseUpgrade(socket, 404)
        return
      }
      this.#upgrade(request, socket, head, url).catch(() => socket.destroy())
    })
  }

  /** Closes every room socket (1001) and stops listening for changes. */
  close(): void {
    this.#node.off('change', this.#onChange)
    this.#node.off('awareness', this.#onRelay)
    for (const room of this.#rooms.values())
      for (const client of room.clients) client.socket.close(1001, 'the node is shutting down')
  }

  async #upgrade(request: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    let name: string
    try {
      name = decodeURIComponent(url.pathname.slice(YJS_PATH.length))
    } catch {
      return refuseUpgrade(socket, 400)
    }
    if (name.length === 0 || Buffer.byteLength(name) > this.#node.limits.keyBytesMax) return refuseUpgrade(socket, 400)
    const access = await this.#access(url.searchParams.get('token'), name)
    if (typeof access === 'number') return refuseUpgrade(socket, access)
    if (this.#connections >= this.#connectionsMax) return refuseUpgrade(socket, 503)
    if ((this.#rooms.get(name)?.clients.size ?? 0) >= this.#roomConnectionsMax) return refuseUpgrade(socket, 503)
    // Counted once open: ws answers a bad upgrade itself (400) and never calls back.
    this.#server.handleUpgrade(request, socket, head, (webSocket) => {
      this.#connections++
      this.#join(name, {
        socket: webSocket,
        readOnly: access.readOnly,
        awarenessIds: new Set(),
        queue: [],
        committing: false,
      })
    })
  }

  #roomOf(name: string): Room {
    let room = this.#rooms.get(name)
    if (room === undefined) {
      // The Awareness needs a doc for its own client id; its own state is null, so it sends none.
      const awareness = new awarenessProtocol.Awareness(new Y.Doc())
      awareness.setLocalState(null)
      room = { name, clients: new Set(), awareness }
      const made = room
      awareness.on('update', (changes: Record<string, number[]>, origin: unknown) =>
        this.#awarenessChanged(made, changes, origin),
      )
      // The node's change events are made only while someone listens: rooms listen while open.
      if (this.#rooms.size === 0) this.#node.on('change', this.#onChange)
      this.#rooms.set(name, room)
    }
    return room
  }

  /**
   * Passes an awareness change to the room's clients; one that came from a client of this node
   * (or its leaving) goes to the peers too. What came from a peer, or timed out here, does not:
   * every node times states out itself, and a relay is never passed on.
   */
  #awarenessChanged(room: Room, { added, updated, removed }: Record<string, number[]>, origin: unknown): void {
    const changed = [...(added ?? []), ...(updated ?? []), ...(removed ?? [])]
    const from = origin as Client | undefined
    if (from?.awarenessIds !== undefined) {
      for (const id of added ?? []) from.awarenessIds.add(id)
      for (const id of removed ?? []) from.awarenessIds.delete(id)
    }
    const update = awarenessProtocol.encodeAwarenessUpdate(room.awareness, changed)
    const message = awarenessMessage(update)
    for (const client of room.clients) send(client, message)
    if (from?.awarenessIds !== undefined || origin === LEFT) this.#relay(room.name, update)
  }

  /** To the peers, within AWARENESS_RELAYS_PER_SECOND and AWARENESS_BYTES_MAX (more is dropped: presence is renewed every few seconds). */
  #relay(room: string, update: Uint8Array): void {
    if (update.length > AWARENESS_BYTES_MAX) return
    const now = performance.now()
    if (now - this.#relayWindow.start >= 1000) this.#relayWindow = { start: now, count: 0 }
    if (this.#relayWindow.count >= AWARENESS_RELAYS_PER_SECOND) {
      this.relaysDropped++
      return
    }
    this.#relayWindow.count++
    this.#node.relayAwareness(room, update)
  }

  #join(name: string, client: Client): void {
    const room = this.#roomOf(name)
    // In the room before the state is read: a change committed meanwhile is forwarded, not lost.
    room.clients.add(client)
    const { socket } = client
    socket.on('error', () => socket.terminate())
    socket.on('message', (data: RawData) => this.#receive(room, client, bytesOf(data)))
    let alive = true
    socket.on('pong', () => (alive = true))
    const ping = setInterval(() => {
      if (!alive) return socket.terminate()
      alive = false
      socket.ping()
    }, PING_INTERVAL_MS)
    socket.once('close', () => {
      clearInterval(ping)
      this.#leave(room, client)
    })
    this.#node
      .docState(name)
      .then((state) => {
        send(client, syncMessage(SYNC_STEP1, state.stateVector))
        const states = [...room.awareness.getStates().keys()]
        if (states.length > 0)
          send(client, awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(room.awareness, states)))
      })
      .catch((error: unknown) => this.#fail(client, 1011, error))
  }

  #leave(room: Room, client: Client): void {
    this.#connections--
    room.clients.delete(client)
    awarenessProtocol.removeAwarenessStates(room.awareness, [...client.awarenessIds], LEFT)
    if (room.clients.size === 0) {
      room.awareness.destroy()
      this.#rooms.delete(room.name)
      if (this.#rooms.size === 0) this.#node.off('change', this.#onChange)
    }
  }

  #receive(room: Room, client: Client, bytes: Uint8Array): void {
    try {
      const decoder = decoding.createDecoder(bytes)
      const type = decoding.readVarUint(decoder)
      if (type === MESSAGE_SYNC) this.#sync(room, client, decoder)
      else if (type === MESSAGE_AWARENESS)
        awarenessProtocol.applyAwarenessUpdate(room.awareness, decoding.readVarUint8Array(decoder), client)
      else if (type === MESSAGE_QUERY_AWARENESS) {
        const states = [...room.awareness.getStates().keys()]
        send(client, awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(room.awareness, states)))
      }
    } catch (error) {
      this.#fail(client, 1007, error)
    }
  }

  #sync(room: Room, client: Client, decoder: decoding.Decoder): void {
    const kind = decoding.readVarUint(decoder)
    const payload = decoding.readVarUint8Array(decoder)
    if (kind === SYNC_STEP1) {
      this.#node
        .docState(room.name, { sv: payload })
        .then((state) => send(client, syncMessage(SYNC_STEP2, state.update)))
        .catch((error: unknown) => this.#fail(client, 1011, error))
      return
    }
    if (kind !== SYNC_STEP2 && kind !== SYNC_UPDATE) throw new MeshError('MESHKV_ERR_DECODE', 'unknown sync message')
    if (client.readOnly) return
    if (client.queue.length >= PENDING_UPDATES_MAX) {
      client.socket.close(1013, `over ${PENDING_UPDATES_MAX} updates waiting to commit`)
      return
    }
    client.queue.push(payload)
    if (!client.committing) void this.#commit(room, client)
  }

  /**
   * Commits a client's queued updates, one commit at a time: what arrived during a commit goes
   * into the next as one merged update (a typing client sends one per keystroke, and a commit per
   * keystroke would lag behind it), at most BATCH_BYTES_MAX of them.
   */
  async #commit(room: Room, client: Client): Promise<void> {
    client.committing = true
    try {
      while (client.queue.length > 0 && client.socket.readyState === WebSocket.OPEN) {
        let bytes = 0
        let count = 0
        while (count < client.queue.length && (count === 0 || bytes + client.queue[count]!.length <= BATCH_BYTES_MAX))
          bytes += client.queue[count++]!.length
        const batch = client.queue.splice(0, count)
        await this.#node.applyDocUpdate(room.name, batch.length === 1 ? batch[0]! : Y.mergeUpdates(batch))
      }
    } catch (error) {
      this.#fail(client, 1008, error)
    } finally {
      client.committing = false
    }
  }

  #fail(client: Client, code: number, error: unknown): void {
    const reason = error instanceof Error ? error.message : String(error)
    // A close reason is at most 123 bytes.
    if (client.socket.readyState === WebSocket.OPEN)
      client.socket.close(code, Buffer.from(reason).subarray(0, 120).toString())
  }
}
