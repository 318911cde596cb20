// Lint, and the rooms of DESIGN.md section 7: an import may only point inwards.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/** What each room must never import (relative paths are matched by their last segments). */
const rooms = [
  { files: ['src/errors.ts'], banned: ['./*', '../*'], message: 'errors.ts imports nothing' },
  { files: ['src/clock/**'], banned: ['../crdt/*', '../codec/*', '../storage/*', '../replication/*', '../transport/*', '../http/*', '../client/*', '../cli/*', '../node*', '../level*', 'node:fs*', 'node:net', 'node:http', 'fs', 'level', 'ws', 'fastify'], message: 'clock/ is pure: errors only' },
  { files: ['src/crdt/**'], banned: ['../codec/*', '../storage/*', '../replication/*', '../transport/*', '../http/*', '../client/*', '../cli/*', '../node*', '../level*', 'node:*', 'level', 'ws', 'fastify'], message: 'crdt/ is pure: clock and yjs only' },
  { files: ['src/codec/**'], banned: ['../storage/*', '../replication/*', '../transport/*', '../http/*', '../client/*', '../cli/*', '../node*', '../level*', 'node:fs*', 'node:net', 'level', 'ws', 'fastify'], message: 'codec/ does no I/O' },
  { files: ['src/storage/**'], banned: ['../replication/*', '../transport/*', '../http/*', '../client/*', '../cli/*', '../node*', '../level*', 'ws', 'fastify'], message: 'storage/ never imports replication, transport or http' },
  { files: ['src/replication/**'], banned: ['../storage/level*', '../transport/*', '../http/*', '../client/*', '../cli/*', '../node*', '../level*', 'level', 'classic-level', 'ws', 'fastify', 'node:timers*'], message: 'replication/ is pure: no ws, level, timers or http' },
  { files: ['src/transport/**'], banned: ['../crdt/*', '../storage/*', '../replication/*', '../http/*', '../client/*', '../cli/*', '../node*', '../level*', 'level', 'fastify'], message: 'transport/ never imports crdt, storage or replication' },
  { files: ['src/http/**'], banned: ['../storage/*', '../replication/*', '../transport/*', '../crdt/*', '../codec/*', '../cli/*', 'level', 'classic-level', 'ws'], message: 'http/ uses only the node\'s public API' },
  { files: ['src/client/**'], banned: ['../node*', '../storage/*', '../replication/*', '../transport/*', '../crdt/*', '../codec/*', '../http/*', '../cli/*', '../level*', 'level', 'ws', 'fastify'], message: 'client/ talks HTTP: errors and clock only' },
  { files: ['src/cli/kvctl*.ts'], banned: ['../node*', '../storage/*', '../replication/*', '../transport/*', '../crdt/*', '../codec/*', '../http/*', '../level*', 'level', 'ws', 'fastify'], message: 'kvctl talks HTTP through the client only' },
]

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'bench/results/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', URL: 'readonly', fetch: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-globals': ['error', { name: 'Date', message: 'inject time (now: () => number) instead of reading Date in logic' }],
    },
  },
  // Edges that own time: the node wiring, CLIs, http, client, tests and benchmarks may read the clock.
  { files: ['src/node.ts', 'src/cli/**', 'src/http/**', 'src/client/**', 'src/transport/**', 'test/**', 'bench/**', 'bin/**'], rules: { 'no-restricted-globals': 'off' } },
  ...rooms.map((room) => ({
    files: room.files,
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: room.banned, message: room.message }] }],
    },
  })),
)
