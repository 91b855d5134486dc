import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'
import { createGateway, createLogger, type Gateway } from '../../src/composition-root.ts'
import { loadConfig } from '../../src/config/load-config.ts'
import type { Config } from '../../src/config/config-schema.ts'
import { serve } from '../../src/serve.ts'

export interface RunningGateway {
  url: string
  dir: string
  config: Config
  gateway: Gateway
  stop(): Promise<void>
}

/** Tests are one caller polling and uploading fast: rate limits are off unless a test sets them. */
export const noRateLimits = { GW_RATE_LIMIT_TOKENS_PER_MINUTE: '0', GW_RATE_LIMIT_UPLOADS_PER_MINUTE: '0', GW_RATE_LIMIT_STATUS_PER_MINUTE: '0' }

/**
 * Starts a whole gateway in this process on a free loopback port, with its own state and
 * object directories, from the same config loader the server uses. Stopped at teardown.
 * Set GW_TEST_LOGS=1 to see its logs.
 */
export async function startGateway(t: Test, env: Record<string, string> = {}, dir?: string): Promise<RunningGateway> {
  const root = dir ?? (await mkdtemp(join(tmpdir(), 'gw-e2e-')))
  const config = loadConfig({
    env: {
      GW_PORT: '0',
      GW_FS_ROOT: join(root, 'objects'),
      GW_DATABASE_URL: `sqlite:${join(root, 'state.db')}`,
      GW_POLL_INTERVAL_MS: '50',
      GW_RETRY_BASE_MS: '100',
      GW_RETRY_MAX_MS: '500',
      GW_LOG_LEVEL: process.env.GW_TEST_LOGS ? 'debug' : 'silent',
      ...noRateLimits,
      ...env
    },
    configDir: resolve(import.meta.dirname, '../../config')
  })
  const gateway = await createGateway(config, { logger: createLogger(config.GW_LOG_LEVEL) })
  const serving = await serve(gateway, config)
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await serving.stop(2_000)
  }
  t.teardown(async () => {
    await stop()
    if (!dir) await rm(root, { recursive: true, force: true })
  })
  return { url: serving.address, dir: root, config, gateway, stop }
}

/** Polls the status endpoint until the upload reaches one of `statuses` (bounded). */
export async function waitForStatus(
  baseUrl: string,
  id: string,
  statuses: readonly string[],
  { timeoutMs = 20_000, headers = {} }: { timeoutMs?: number; headers?: Record<string, string> } = {}
): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    const res = await fetch(`${baseUrl}/v1/uploads/${id}`, { headers })
    last = await res.json()
    if (statuses.includes((last as { status: string }).status)) return last
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`upload ${id} did not reach ${statuses.join('|')} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`)
}
