import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../../test/helpers/free-port.ts'
import type { CpuProfile } from './cpu-profile.ts'
import { RemoteProfiler } from './inspector-client.ts'
import { RssSampler } from './proc.ts'
import type { Resources } from './resources.ts'

export const REPO_ROOT = resolve(import.meta.dirname, '../..')

export interface GatewayProcess {
  url: string
  pid: number
  rss: RssSampler
  /** Where its stdout and stderr go. */
  logFile: string
  /** With cpuProfile: samples the process's CPU until the returned function is called. */
  profile(): Promise<() => Promise<CpuProfile>>
  /** SIGTERM (graceful: a CPU profile is written on exit), SIGKILL after 15 s. */
  stop(): Promise<void>
}

export interface GatewayOptions {
  /** Names its log and profile files. */
  label: string
  /** Where logs (and profiles) go. */
  dir: string
  /** Open its inspector on a loopback port, so profile() can sample a window of its run. */
  cpuProfile?: boolean
  /** A node script other than the gateway (the bare baseline server), run the same way. */
  script?: string
}

/**
 * Runs `node src/server.ts` as its own process, as `npm start` does, so its RSS can be sampled
 * and the load generator does not share its event loop. Ready once /healthz answers.
 */
export async function startGatewayProcess(resources: Resources, env: Record<string, string>, options: GatewayOptions): Promise<GatewayProcess> {
  const port = await freePort()
  const logFile = join(options.dir, `${options.label}.log`)
  const inspectPort = options.cpuProfile ? await freePort() : null
  const args = inspectPort === null ? [] : [`--inspect=127.0.0.1:${inspectPort}`]
  const fd = openSync(logFile, 'a')
  // An inherited GW_* variable (GW_TEST_PG_URL, say) would stop the gateway: unknown settings are refused.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GW_')))
  const child = spawn(process.execPath, [...args, options.script ?? 'src/server.ts'], {
    cwd: REPO_ROOT,
    // Rate limits off: a benchmark is one caller sending as fast as it can.
    env: { ...inherited, GW_LOG_LEVEL: 'info', GW_SHUTDOWN_GRACE_MS: '3000', ...noRateLimits, ...env, GW_HOST: '127.0.0.1', GW_PORT: String(port) },
    stdio: ['ignore', fd, fd]
  })
  closeSync(fd)
  resources.track(child)
  const pid = child.pid
  if (pid === undefined) throw new Error(`${options.label}: could not start node`)
  const rss = new RssSampler(pid)
  const url = `http://127.0.0.1:${port}`
  const exited = once(child, 'exit')
  const stop = async (): Promise<void> => {
    rss.stop()
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    await exited
    clearTimeout(timer)
  }
  const undo = resources.defer(`process ${options.label}`, stop)
  const logTail = (): string => readFileSync(logFile, 'utf8').slice(-3000)

  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) {
      await undo()
      throw new Error(`${options.label} exited with code ${child.exitCode} before it was ready:\n${logTail()}`)
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await undo()
      throw new Error(`${options.label} did not answer /healthz within 20 s:\n${logTail()}`)
    }
    await sleep(50)
  }
  const profile = async (): Promise<() => Promise<CpuProfile>> => {
    if (inspectPort === null) throw new Error(`${options.label} was not started with cpuProfile`)
    const profiler = await RemoteProfiler.connect(inspectPort)
    await profiler.start()
    return async () => {
      try {
        return await profiler.stop()
      } finally {
        profiler.close()
      }
    }
  }
  return { url, pid, rss, logFile, profile, stop: undo }
}

/** Reads one gauge or counter (without labels) from /metrics; NaN when absent. */
export async function metricValue(url: string, name: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })
  const text = await res.text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line ? Number(line.slice(name.length + 1)) : Number.NaN
}

const noRateLimits = { GW_RATE_LIMIT_TOKENS_PER_MINUTE: '0', GW_RATE_LIMIT_UPLOADS_PER_MINUTE: '0', GW_RATE_LIMIT_STATUS_PER_MINUTE: '0' }
