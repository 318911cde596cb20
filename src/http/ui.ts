/**
 * A shared text area in the browser, served by the node itself (no build step, no internet):
 * - `GET /ui/docs/:name`: a small HTML page whose `<textarea>` is bound to the `Y.Text` named
 *   `body` of the document `name`, live over y-websocket at this node's `/v1/yjs` (yjs-rooms.ts).
 *   Access is `read` like a document read; with tokens on, a browser sends no header, so the token
 *   comes as `?token=` and the page passes it on to the websocket (which takes it the same way);
 *   the route logs at `warn` and above only, since request log lines carry the URL and its token.
 * - `GET /ui/modules/<package>/[<dir>/]<file>`: the ES module files of `yjs`, `y-websocket`, `y-protocols`
 *   and `lib0`, straight from node_modules; the page's import map names them. They are public
 *   library code, so the route is open; it serves only `.js`/`.mjs` files inside those packages.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { MeshError } from '../errors.js'
import { nameParam } from './auth.js'

const MODULE_PACKAGES = ['yjs', 'y-websocket', 'y-protocols', 'lib0'] as const
const MODULES_PATH = '/ui/modules/'
/** The export conditions a browser's bundler would pick, in its order. */
const CONDITIONS = ['browser', 'module', 'import', 'default']

type Exports = string | { [key: string]: Exports } | null

/** The file an export entry names for a browser, or undefined (a `require`-only entry). */
function pick(entry: Exports): string | undefined {
  if (entry === null) return undefined
  if (typeof entry === 'string') return entry.endsWith('.cjs') ? undefined : entry
  for (const condition of CONDITIONS) {
    const inner = entry[condition]
    if (inner === undefined) continue
    const chosen = pick(inner)
    if (chosen !== undefined) return chosen
  }
  return undefined
}

interface Modules {
  /** The import map's `imports`: every bare specifier of the packages to a URL under MODULES_PATH. */
  imports: Record<string, string>
  /** Each package's directory on disk. */
  roots: Map<string, string>
}

let modules: Modules | undefined

/** Reads the packages' `exports` once: the import map and where each package lies. */
function loadModules(): Modules {
  if (modules !== undefined) return modules
  const require = createRequire(import.meta.url)
  const imports: Record<string, string> = {}
  const roots = new Map<string, string>()
  for (const name of MODULE_PACKAGES) {
    const manifestPath = require.resolve(`${name}/package.json`)
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { exports: Record<string, Exports> }
    roots.set(name, path.dirname(manifestPath))
    for (const [subpath, entry] of Object.entries(manifest.exports)) {
      const file = pick(entry)
      // Only what the module routes can serve: `file` or `dir/file` (ui routes below).
      if (file === undefined || subpath.includes('*') || !/^\.\/([^/]+\/)?[^/]+\.m?js$/.test(file)) continue
      const specifier = subpath === '.' ? name : `${name}/${subpath.slice(2)}`
      imports[specifier] = `${MODULES_PATH}${name}/${file.slice(2)}`
    }
  }
  modules = { imports, roots }
  return modules
}

interface ModuleParams {
  package: string
  dir?: string
  file: string
}

/** A module file inside one of the packages, or a 404 (no path leaves the package's directory). */
async function sendModule(reply: FastifyReply, params: ModuleParams): Promise<FastifyReply> {
  const inside = params.dir === undefined ? params.file : `${params.dir}/${params.file}`
  const root = loadModules().roots.get(params.package)
  const notFound = new MeshError('MESHKV_ERR_NOT_FOUND', `no module ${JSON.stringify(`${params.package}/${inside}`)}`)
  if (root === undefined || !/\.m?js$/.test(params.file)) throw notFound
  const file = path.resolve(root, inside)
  if (!file.startsWith(root + path.sep)) throw notFound
  let body: Buffer
  try {
    body = await readFile(file)
  } catch {
    throw notFound
  }
  return reply.type('text/javascript; charset=utf-8').send(body)
}

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
/** JSON inside a `<script>`: no `<` may close the element early. */
const scriptJson = (value: unknown): string => JSON.stringify(value).replace(/</g, '\\u003c')

/**
 * The page's script: the text area follows the Y.Text, and each input event becomes one change
 * (the common prefix and suffix kept, the middle replaced), which is all a plain text area needs.
 */
const CLIENT = `
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
const { name, token } = JSON.parse(document.getElementById('meshkv').textContent)
const doc = new Y.Doc()
const text = doc.getText('body')
const area = document.getElementById('body')
const status = document.getElementById('status')
const params = token === null ? {} : { token }
const provider = new WebsocketProvider(location.origin.replace('http', 'ws') + '/v1/yjs', name, doc, { params })
provider.on('status', (event) => { status.textContent = event.status })
provider.on('sync', (synced) => { area.dataset.synced = String(synced) })
// The caret as positions in the Y.Text, each tied to the character on its left: a remote edit
// moves it with that character, so text typed here stays together instead of interleaving.
let caret = null
const remember = () => {
  caret = [area.selectionStart, area.selectionEnd].map((i) => Y.createRelativePositionFromTypeIndex(text, i, -1))
}
for (const type of ['keyup', 'mouseup', 'select', 'focus']) area.addEventListener(type, remember)
text.observe((event) => {
  if (event.transaction.local || area.value === text.toString()) return
  area.value = text.toString()
  if (caret === null) return
  const [start, end] = caret.map((at) => Y.createAbsolutePositionFromRelativePosition(at, doc)?.index ?? 0)
  area.setSelectionRange(start, end)
})
area.addEventListener('input', () => {
  const before = text.toString()
  const after = area.value
  let start = 0
  while (start < before.length && start < after.length && before[start] === after[start]) start++
  // The common suffix stops at the caret: typing next to the same character lands where it was typed.
  let end = 0
  while (end < before.length - start && end < after.length - start && after.length - end > area.selectionEnd &&
    before[before.length - 1 - end] === after[after.length - 1 - end]) end++
  doc.transact(() => {
    text.delete(start, before.length - start - end)
    text.insert(start, after.slice(start, after.length - end))
  })
  remember()
})
`

function page(name: string, token: string | null): string {
  const title = escapeHtml(name)
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${title} · meshkv</title>
<script type="importmap">${scriptJson({ imports: loadModules().imports })}</script>
<script type="application/json" id="meshkv">${scriptJson({ name, token })}</script>
<style>body{font-family:sans-serif;margin:2em}textarea{width:100%;height:60vh;font-family:monospace}</style>
</head><body>
<h1>${title}</h1><p>connection: <span id="status">connecting</span></p>
<textarea id="body" data-synced="false"></textarea>
<script type="module">${CLIENT}</script>
</body></html>
`
}

export async function uiRoutes(fastify: FastifyInstance): Promise<void> {
  fastify.get<{ Params: { name: string }; Querystring: { token?: string } }>(
    '/ui/docs/:name',
    // Warn and above only: the per-request info lines log the URL, and its ?token= with it.
    { logLevel: 'warn', config: { access: 'read', keyOf: nameParam, tokenInQuery: true } },
    async (request, reply) => {
      const token = typeof request.query.token === 'string' ? request.query.token : null
      return reply
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(page(request.params.name, token))
    },
  )
  // Two fixed depths rather than a wildcard: every file the map names, and every relative import
  // inside them, is `package/file` or `package/dir/file`.
  const open = { config: { access: 'open' } } as const
  fastify.get<{ Params: ModuleParams }>(`${MODULES_PATH}:package/:file`, open, async (request, reply) =>
    sendModule(reply, request.params),
  )
  fastify.get<{ Params: ModuleParams }>(`${MODULES_PATH}:package/:dir/:file`, open, async (request, reply) =>
    sendModule(reply, request.params),
  )
}
