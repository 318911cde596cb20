/**
 * One real node on a temp LevelDB directory and its HTTP app, for the HTTP tests; and the checks
 * every error answer must pass (a problem with the code's status, never a stack trace).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { expect } from 'vitest'
import type { ErrorCode } from '../../src/errors.js'
import { ERROR_TABLE } from '../../src/errors.js'
import type { AppOptions } from '../../src/http/app.js'
import { buildApp, closeApp } from '../../src/http/app.js'
import { MeshNode } from '../../src/node/index.js'
import type { MeshNodeOptions } from '../../src/node/index.js'

export interface Harness {
  node: MeshNode
  app: FastifyInstance
  close(): Promise<void>
}

export async function openHarness(
  options: { app?: AppOptions; node?: Omit<MeshNodeOptions, 'dir'> } = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'meshkv-http-'))
  const node = await MeshNode.open({ dir, ...options.node })
  const app = await buildApp(node, options.app)
  return {
    node,
    app,
    async close() {
      await closeApp(app)
      await node.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The answer is a problem of this code: its status, the problem shape, no stack, a causal token. */
export function expectProblem(response: LightMyRequestResponse, code: ErrorCode): Record<string, unknown> {
  expect({ status: response.statusCode, code: response.json().code }).toEqual({ status: ERROR_TABLE[code], code })
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  expect(response.headers['x-causal-token']).toMatch(/^c1\./)
  const body = response.json() as Record<string, unknown>
  expect(body).toMatchObject({ type: `urn:meshkv:problem:${code}`, status: ERROR_TABLE[code], code })
  expect(typeof body['title']).toBe('string')
  expect(typeof body['detail']).toBe('string')
  expect(response.body).not.toMatch(/\bat .+:\d+:\d+/)
  return body
}

export function quoted(version: string): string {
  return `"${version}"`
}
