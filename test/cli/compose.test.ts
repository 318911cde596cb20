/**
 * docker-compose.yml, read as text (no Docker engine runs here; `docker-compose -f
 * docker-compose.yml config` checks the file by hand): each node takes its cluster secret and
 * root token from the environment with no default (`${VAR:?message}` stops compose without them),
 * no secret the project ever published appears in it, and every published port is bound to
 * 127.0.0.1.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { REFUSED_SECRETS } from '../../src/node/options.js'

const compose = readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8')
const services = ['node1', 'node2', 'node3']

/** The lines of one service's block: from `  name:` to the next line indented by two spaces or less. */
function block(name: string): string[] {
  const lines = compose.split('\n')
  const start = lines.indexOf(`  ${name}:`)
  expect(start, `service ${name}`).toBeGreaterThan(-1)
  const rest = lines.slice(start + 1)
  const end = rest.findIndex((line) => line.trim() !== '' && !line.startsWith('   '))
  return end === -1 ? rest : rest.slice(0, end)
}

describe('docker-compose.yml', () => {
  it.each(services)('%s requires MESHKV_SECRET and MESHKV_ROOT_TOKEN from the environment', (name) => {
    const lines = block(name)
    for (const variable of ['MESHKV_SECRET', 'MESHKV_ROOT_TOKEN']) {
      const line = lines.find((candidate) => candidate.trim().startsWith(`${variable}:`))
      expect(line, `${name} sets ${variable}`).toBeDefined()
      expect(line).toMatch(new RegExp(`:\\s*\\$\\{${variable}:\\?[^}]+\\}\\s*$`))
    }
  })

  it.each(services)('%s publishes its port on 127.0.0.1 only', (name) => {
    const lines = block(name)
    const at = lines.findIndex((line) => line.trim() === 'ports:')
    expect(at, `${name} publishes a port`).toBeGreaterThan(-1)
    const after = lines.slice(at + 1)
    const end = after.findIndex((line) => !line.trim().startsWith('- '))
    const ports = end === -1 ? after : after.slice(0, end)
    expect(ports.length).toBeGreaterThan(0)
    for (const port of ports) expect(port.trim()).toMatch(/^- '127\.0\.0\.1:\d+:\d+'$/)
  })

  it('holds no secret the project ever published', () => {
    for (const secret of REFUSED_SECRETS) expect(compose).not.toContain(secret)
  })
})
