import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { resolve } from 'node:path'
import type { Test } from 'tap'
import { freePort } from './free-port.ts'
import { noRateLimits } from './gateway.ts'

export interface ChildGateway {
  url: string
  child: ChildProcessWithoutNullStreams
  /** Everything it logged to stdout so far. */
  output(): string
}

/** Runs `node src/server.ts` as its own process (as `npm start` does), for crash and signal tests. */
export async function startChildGateway(t: Test, env: Record<string, string>, startTimeoutMs = 45_000): Promise<ChildGateway> {
  const port = await freePort()
  const child = spawn(process.execPath, ['src/server.ts'], {
    cwd: resolve(import.meta.dirname, '../..'),
    env: { ...process.env, GW_LOG_LEVEL: 'info', ...noRateLimits, ...env, GW_PORT: String(port) },
    stdio: 'pipe'
  })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
  child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s))
  // A bound, not a measure: on a loaded machine (load average above 10 on 2 cores) several
  // gateways starting at once took more than 15 s each.
  const deadline = Date.now() + startTimeoutMs
  while (!out.includes('gateway listening')) {
    if (child.exitCode !== null) throw new Error(`child gateway exited: ${out}`)
    if (Date.now() > deadline) throw new Error(`child gateway did not start within ${startTimeoutMs} ms: ${out}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { url: `http://127.0.0.1:${port}`, child, output: () => out }
}
