/**
 * `kvctl`: the command line for meshkv nodes. `bin/kvctl.js` runs this; the commands live in
 * `kvctl-program.ts`.
 */
import { runKvctl } from './kvctl-program.js'

// A closed stdout (EPIPE) reaches the write that failed; without a listener it would also crash.
process.stdout.on('error', () => undefined)

const code = await runKvctl(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
})
// Exit now rather than wait for idle keep-alive sockets; stdout and stderr have taken every write.
process.exit(code)
