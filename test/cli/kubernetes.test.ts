/**
 * deploy/kubernetes/meshkv.yaml (no Kubernetes runs here): its structure, then each pod run as a
 * local process with the exact command and environment the StatefulSet gives it.
 *
 * What the test substitutes is only what Kubernetes and the image would provide: the pod's name
 * and namespace (the downward API), the Secret's values, `$(VAR)` references expanded as the
 * kubelet expands them, the image's /app as this repository and its `node` as this Node.js, the
 * volume's mount path as a temporary directory per pod, and the pod network: each pod's address
 * is 127.0.0.1 on a port of its own, and each stable DNS name the port of that pod. Then the three
 * must link up and a write on one must be readable on the others.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { REPO_ROOT, buildIfStale, cleanEnv, freePort } from './helpers.js'

type Json = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

const documents = parseAllDocuments(
  readFileSync(new URL('../../deploy/kubernetes/meshkv.yaml', import.meta.url), 'utf8'),
).map((document) => {
  expect(document.errors).toEqual([])
  return document.toJS() as Json
})
const NAMESPACE = 'test-ns'

function find(kind: string, name: string): Json {
  const found = documents.find((document) => document['kind'] === kind && document['metadata']?.['name'] === name)
  if (found === undefined) throw new Error(`no ${kind} ${name} in the manifest`)
  return found
}

const statefulSet = find('StatefulSet', 'meshkv')
const pod = statefulSet['spec']['template']['spec'] as Json
const container = pod['containers'][0] as Json
const envList = container['env'] as Json[]
const envEntry = (name: string): Json | undefined => envList.find((entry) => entry['name'] === name)
const replicas = statefulSet['spec']['replicas'] as number
const headless = find('Service', statefulSet['spec']['serviceName'] as string)

describe('the Kubernetes manifest', () => {
  it('is a StatefulSet of 3 behind a headless Service that publishes pods before they are ready, and a client Service', () => {
    expect(replicas).toBe(3)
    const labels = statefulSet['spec']['template']['metadata']['labels']
    expect(statefulSet['spec']['selector']['matchLabels']).toEqual(labels)
    expect(headless['spec']).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true, selector: labels })
    const client = find('Service', 'meshkv-client')
    expect(client['spec']['clusterIP']).toBeUndefined()
    expect(client['spec']['selector']).toEqual(labels)
    // Pods start together (a new node is ready only once a peer synced with it); updates go one by one.
    expect(statefulSet['spec']).toMatchObject({
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'RollingUpdate' },
    })
    expect(find('PodDisruptionBudget', 'meshkv')['spec']).toMatchObject({
      maxUnavailable: 1,
      selector: { matchLabels: labels },
    })
  })

  it('gives each pod a volume claim mounted at MESHKV_DIR, probes on /readyz and /livez, secrets from the Secret', () => {
    const claims = statefulSet['spec']['volumeClaimTemplates'] as Json[]
    expect(claims).toHaveLength(1)
    const mount = (container['volumeMounts'] as Json[]).find(
      (entry) => entry['name'] === claims[0]?.['metadata']['name'],
    )
    expect(mount?.['mountPath']).toBe(envEntry('MESHKV_DIR')?.['value'])
    const port = (container['ports'] as Json[])[0] as Json
    expect(String(port['containerPort'])).toBe(envEntry('MESHKV_PORT')?.['value'])
    expect(container['readinessProbe']['httpGet']).toEqual({ path: '/readyz', port: port['name'] })
    expect(container['livenessProbe']['httpGet']).toEqual({ path: '/livez', port: port['name'] })
    for (const name of ['MESHKV_SECRET', 'MESHKV_ROOT_TOKEN']) {
      expect(envEntry(name)?.['value'], `${name} holds no literal value`).toBeUndefined()
      expect(envEntry(name)?.['valueFrom']['secretKeyRef']['name']).toBe('meshkv')
    }
    // Settings go by MESHKV_* variables, not by flags on the command line.
    expect(container['command']).toEqual(['node', '/app/bin/meshkv.js', 'node'])
  })

  it('names every peer by its stable DNS name under the headless Service', () => {
    const service = headless['metadata']['name'] as string
    const peers = expandFor(0, {})['MESHKV_PEERS']?.split(',')
    expect(peers).toEqual(
      Array.from({ length: replicas }, (_, n) => `http://meshkv-${n}.${service}.${NAMESPACE}.svc.cluster.local:7700`),
    )
    expect(expandFor(1, {})['MESHKV_ADVERTISE_URL']).toBe(
      `http://meshkv-1.${service}.${NAMESPACE}.svc.cluster.local:7700`,
    )
  })
})

/** The container's environment for pod `ordinal`, as the kubelet makes it (`secrets` by key). */
function expandFor(ordinal: number, secrets: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {}
  const fields: Record<string, string> = { 'metadata.name': `meshkv-${ordinal}`, 'metadata.namespace': NAMESPACE }
  for (const entry of envList) {
    const from = entry['valueFrom'] as Json | undefined
    let value: string
    if (from?.['fieldRef'] !== undefined) value = fields[from['fieldRef']['fieldPath']] ?? ''
    else if (from?.['secretKeyRef'] !== undefined) value = secrets[from['secretKeyRef']['key']] ?? ''
    // $(VAR) names a variable defined earlier in the list; anything else stays as written.
    else
      value = String(entry['value']).replace(
        /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
        (text, name: string) => env[name] ?? text,
      )
    env[entry['name'] as string] = value
  }
  return env
}

const children = new Set<ChildProcessWithoutNullStreams>()
let root: string

beforeAll(async () => {
  buildIfStale()
  root = await mkdtemp(join(tmpdir(), 'meshkv-k8s-'))
}, 120_000)

afterAll(async () => {
  await Promise.all(
    [...children].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('close', () => resolve())
          child.kill('SIGKILL')
        }),
    ),
  )
  await rm(root, { recursive: true, force: true })
})

/** Starts pod `ordinal` with the manifest's command and environment, on the local "pod network". */
function startPod(ordinal: number, ports: number[], secrets: Record<string, string>): { stderr: () => string } {
  const env = expandFor(ordinal, secrets)
  const mountPath = env['MESHKV_DIR'] as string
  const podPort = env['MESHKV_PORT'] as string
  const dns = (n: number): string =>
    `http://meshkv-${n}.${headless['metadata']['name']}.${NAMESPACE}.svc.cluster.local:${podPort}`
  for (const [name, value] of Object.entries(env)) {
    let local = value
    for (let n = 0; n < replicas; n++) local = local.replaceAll(dns(n), `http://127.0.0.1:${ports[n]}`)
    if (name === 'MESHKV_DIR') local = join(root, `pod-${ordinal}`) + local.slice(mountPath.length)
    if (name === 'MESHKV_PORT') local = String(ports[ordinal])
    if (name === 'MESHKV_HOST') local = '127.0.0.1'
    env[name] = local
  }
  // The image's `node` is the first word; its /app is this repository.
  const [node, ...args] = (container['command'] as string[]).map((part) => part.replace(/^\/app\//, `${REPO_ROOT}/`))
  expect(node).toBe('node')
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: cleanEnv(env) })
  children.add(child)
  let stderr = ''
  child.stdout.resume()
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => (stderr += chunk))
  child.once('close', () => children.delete(child))
  return { stderr: () => stderr }
}

describe('the pods, run as local processes', () => {
  it('link up as one cluster, and a write on one is readable on the others', async () => {
    const secrets = { 'cluster-secret': randomBytes(24).toString('hex'), 'root-token': randomBytes(24).toString('hex') }
    const auth = { authorization: `Bearer ${secrets['root-token']}` }
    const ports: number[] = []
    for (let n = 0; n < replicas; n++) ports.push(await freePort())
    const pods = ports.map((_, n) => startPod(n, ports, secrets))
    const url = (n: number): string => `http://127.0.0.1:${ports[n]}`
    const statuses = async (): Promise<Json[]> =>
      Promise.all(
        ports.map(async (_, n) => (await fetch(`${url(n)}/v1/status`, { headers: auth })).json() as Promise<Json>),
      )
    await vi.waitFor(
      async () => {
        for (let n = 0; n < replicas; n++)
          expect(
            await fetch(`${url(n)}/readyz`).then((answer) => answer.status, String),
            `pod ${n}: ${pods[n]?.stderr()}`,
          ).toBe(200)
        const all = await statuses()
        const ids = all.map((status) => status['nodeId'] as string)
        for (const status of all) {
          expect([...(status['linked'] as string[])].sort()).toEqual(ids.filter((id) => id !== status['nodeId']).sort())
          expect(status['members']).toBe(replicas)
        }
      },
      { timeout: 40_000, interval: 200 },
    )
    // Auth is on: the root token came from the Secret.
    expect((await fetch(`${url(1)}/v1/kv/anything`)).status).toBe(401)
    const written = await fetch(`${url(0)}/v1/kv/hello?w=all`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'text/plain' },
      body: 'from meshkv-0',
    })
    expect(written.status).toBe(200)
    for (let n = 1; n < replicas; n++) {
      const read = await fetch(`${url(n)}/v1/kv/hello`, { headers: auth })
      expect({ pod: n, status: read.status, value: await read.text() }).toEqual({
        pod: n,
        status: 200,
        value: 'from meshkv-0',
      })
    }
  }, 90_000)
})
