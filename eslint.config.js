// Lint, and the rooms of docs/architecture.md: an import may only point inwards.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'
import prettier from 'eslint-config-prettier'

// Rooms by name (relative imports are matched by their last segments).
const node = ['../node/*', '../node*']
const core = ['../crdt/*', '../codec/*']
const io = ['../storage/*', '../replication/*', '../transport/*']
const faces = ['../http/*', '../client/*', '../cli/*', '../level*']
// I/O modules the pure rooms never import.
const ioModules = ['node:fs*', 'node:net', 'node:http', 'fs', 'level', 'classic-level', 'ws', 'fastify']

/** What each room must never import. */
const rooms = [
  { files: ['src/errors.ts'], banned: ['./*', '../*'], message: 'errors.ts imports nothing' },
  { files: ['src/api/**'], banned: ['../*', '!../errors.js', 'node:*', ...ioModules], message: 'api/ is pure: errors only' },
  { files: ['src/clock/**'], banned: [...core, ...io, ...node, ...faces, ...ioModules], message: 'clock/ is pure: errors only' },
  { files: ['src/crdt/**'], banned: ['../codec/*', ...io, ...node, ...faces, 'node:*', ...ioModules], message: 'crdt/ is pure: clock and yjs only' },
  { files: ['src/codec/**'], banned: [...io, ...node, ...faces, ...ioModules], message: 'codec/ does no I/O' },
  { files: ['src/storage/**'], banned: ['../replication/*', '../transport/*', ...node, ...faces, 'ws', 'fastify'], message: 'storage/ never imports replication, transport or http' },
  { files: ['src/replication/**'], banned: ['../storage/level*', '../transport/*', ...node, ...faces, 'level', 'classic-level', 'ws', 'fastify', 'node:timers*'], message: 'replication/ is pure: no ws, level, timers or http' },
  { files: ['src/transport/**'], banned: ['../crdt/*', '../storage/*', '../replication/*', ...node, ...faces, 'level', 'fastify'], message: 'transport/ never imports crdt, storage or replication' },
  { files: ['src/node/**'], banned: faces, message: 'node/ wires the core rooms; the faces import it, never the reverse' },
  { files: ['src/http/**'], banned: [...core, ...io, '../cli/*', 'level', 'classic-level', 'ws'], message: "http/ uses only the node's public API" },
  { files: ['src/client/**'], banned: [...core, ...io, ...node, ...faces.filter((room) => room !== '../client/*'), 'level', 'ws', 'fastify'], message: 'client/ talks HTTP: errors, api and clock only' },
  { files: ['src/cli/kvctl*.ts'], banned: [...core, ...io, ...node, '../http/*', '../level*', 'level', 'ws', 'fastify'], message: 'kvctl talks HTTP through the client only' },
]

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'bench/results/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-globals': ['error', { name: 'Date', message: 'inject time (now: () => number) instead of reading Date in logic' }],
    },
  },
  // The cluster page's script runs in a browser (ui/cluster.js, served by src/http/ui-cluster.ts).
  { files: ['ui/**'], languageOptions: { globals: { ...globals.browser } } },
  // Small files and functions in src/ and ui/: a file fits one concern, a function fits a screen.
  {
    files: ['src/**', 'ui/**'],
    rules: {
      'max-lines': ['error', { max: 400, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 70, skipBlankLines: true, skipComments: true }],
    },
  },
  // Edges that own time: the node wiring, CLIs, http, client, the page, tests and benchmarks may read the clock.
  { files: ['src/node/**', 'src/cli/**', 'src/http/**', 'src/client/**', 'src/transport/**', 'test/**', 'bench/**', 'bin/**', 'ui/**'], rules: { 'no-restricted-globals': 'off' } },
  ...rooms.map((room) => ({
    files: room.files,
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: room.banned, message: room.message }] }] },
  })),
  prettier,
)
