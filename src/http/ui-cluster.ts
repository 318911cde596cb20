/**
 * The cluster page (docs/operations.md, "The cluster page"): `GET /ui` and the two files it loads,
 * `/ui/cluster.js` (one ES module) and `/ui/cluster.css`. They are plain files in the package's
 * `ui/` folder (shipped by package.json `files` and the Dockerfile), served as they are: no build
 * step, no library. The same folder lies two levels above this file in `src/http/` and in
 * `dist/http/`, so the tests (from source) and an install (from dist) find it the same way.
 *
 * The routes are open: the files hold no data. Everything the page shows it asks of the node's
 * own HTTP API with the token the person types into it, as any client would.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { MeshError } from '../errors.js'

const UI_DIR = new URL('../../ui/', import.meta.url)

/** Route → the file in `ui/` and its media type. */
const FILES: Record<string, { file: string; type: string }> = {
  '/ui': { file: 'cluster.html', type: 'text/html; charset=utf-8' },
  '/ui/cluster.js': { file: 'cluster.js', type: 'text/javascript; charset=utf-8' },
  '/ui/cluster.css': { file: 'cluster.css', type: 'text/css; charset=utf-8' },
}

/**
 * Each file is read once, on first use, and kept (a few tens of KiB). Reading it at startup would
 * stop a node whose install lacks the folder; this way only the page fails, with an error that
 * says where it looked.
 */
const cache = new Map<string, Buffer>()

async function load(file: string): Promise<Buffer> {
  const held = cache.get(file)
  if (held !== undefined) return held
  const url = new URL(file, UI_DIR)
  let body: Buffer
  try {
    body = await readFile(url)
  } catch {
    throw new MeshError('MESHKV_ERR_NOT_FOUND', `the cluster page's file ${fileURLToPath(url)} is missing`)
  }
  cache.set(file, body)
  return body
}

export async function clusterUiRoutes(fastify: FastifyInstance): Promise<void> {
  const open = { config: { access: 'open' } } as const
  for (const [route, { file, type }] of Object.entries(FILES))
    fastify.get(route, open, async (_request, reply) =>
      // no-cache: a browser revalidates, so an upgraded node's page never runs an old script.
      reply
        .type(type)
        .header('cache-control', 'no-cache')
        .send(await load(file)),
    )
}
