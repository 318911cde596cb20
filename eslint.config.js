// Lint, and the rooms of docs/architecture.md: an import may only point inwards.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'
import prettier from 'eslint-config-prettier'

/** Rooms above the pure core: nothing in the core may import them. */
const edges = [
  '../storage/*',
  '../replication/*',
  '../transport/*',
  '../http/*',
  '../client/*',
  '../cli/*',
  '../node/*',
  '../node*',
  '../level*',
]
/** I/O modules the pure rooms never import. */
const io = ['node:fs*', 'node:net', 'node:http', 'fs', 'level', 'classic-level', 'ws', 'fastify']

/** What each room must never import (relative paths are matched by their last segments). */
const rooms = [
  { files: ['src/errors.ts'], banned: ['./*', '../*'], message: 'errors.ts imports nothing' },
  { files: ['src/api/**'], banned: ['../*', '!../errors.js', 'node:*', ...io], message: 'api/ is pure: errors only' },
  {
    files: ['src/clock/**'],
    banned: ['../crdt/*', '../codec/*', ...edges, ...io],
    message: 'clock/ is pure: errors only',
  },
  {
    files: ['src/crdt/**'],
    banned: ['../codec/*', ...edges, 'node:*', ...io],
    message: 'crdt/ is pure: clock and yjs only',
  },
  { files: ['src/codec/**'], banned: [...edges, ...io], message: 'codec/ does no I/O' },
  {
    files: ['src/storage/**'],
    banned: [
      '../replication/*',
      '../transport/*',
      '../http/*',
      '../client/*',
      '../cli/*',
      '../node/*',
      '../node*',
      '../level*',
      'ws',
      'fastify',
    ],
    message: 'storage/ never imports replication, transport or http',
  },
  {
    files: ['src/replication/**'],
    banned: [
      '../storage/level*',
      '../transport/*',
      '../http/*',
      '../client/*',
      '../cli/*',
      '../node/*',
      '../node*',
      '../level*',
      'level',
      'classic-level',
      'ws',
      'fastify',
      'node:timers*',
    ],
    message: 'replication/ is pure: no ws, level, timers or http',
  },
  {
    files: ['src/transport/**'],
    banned: [
      '../crdt/*',
      '../storage/*',
      '../replication/*',
      '../http/*',
      '../client/*',
      '../cli/*',
      '../node/*',
      '../node*',
      '../level*',
      'level',
      'fastify',
    ],
    message: 'transport/ never imports crdt, storage or replication',
  },
  {
    files: ['src/node/**'],
    banned: ['../http/*', '../client/*', '../cli/*', '../level*'],
    message: 'node/ wires the core rooms; the faces import it, never the reverse',
  },
  {
    files: ['src/http/**'],
    banned: [
      '../storage/*',
      '../replication/*',
      '../transport/*',
      '../crdt/*',
      '../codec/*',
      '../cli/*',
      'level',
      'classic-level',
      'ws',
    ],
    message: "http/ uses only the node's public API",
  },
  {
    files: ['src/client/**'],
    banned: [
      '../node/*',
      '../node*',
      '../storage/*',
      '../replication/*',
      '../transport/*',
      '../crdt/*',
      '../codec/*',
      '../http/*',
      '../cli/*',
      '../level*',
      'level',
      'ws',
      'fastify',
    ],
    message: 'client/ talks HTTP: errors, api and clock only',
  },
  {
    files: ['src/cli/kvctl*.ts'],
    banned: [
      '../node/*',
      '../node*',
      '../storage/*',
      '../replication/*',
      '../transport/*',
      '../crdt/*',
      '../codec/*',
      '../http/*',
      '../level*',
      'level',
      'ws',
      'fastify',
    ],
    message: 'kvctl talks HTTP through the client only',
  },
]

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'bench/results/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-globals': [
        'error',
        { name: 'Date', message: 'inject time (now: () => number) instead of reading Date in logic' },
      ],
    },
  },
  // Edges that own time: the node wiring, CLIs, http, client, tests and benchmarks may read the clock.
  {
    files: [
      'src/node/**',
      'src/cli/**',
      'src/http/**',
      'src/client/**',
      'src/transport/**',
      'test/**',
      'bench/**',
      'bin/**',
    ],
    rules: { 'no-restricted-globals': 'off' },
  },
  ...rooms.map((room) => ({
    files: room.files,
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: room.banned, message: room.message }] }],
    },
  })),
  prettier,
)
