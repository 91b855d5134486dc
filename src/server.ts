import { createGateway } from './composition-root.ts'
import { ConfigError, loadConfig } from './config/load-config.ts'
import { serve } from './serve.ts'

/** The process entry: configuration, listener, and graceful shutdown on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const gateway = await createGateway(config)
  const log = gateway.logger
  if (config.GW_UPLOAD_KEYS.length === 0) {
    log.warn({ host: config.GW_HOST }, 'GW_UPLOAD_KEYS is empty: anyone who can reach this loopback address may upload')
  }
  const serving = await serve(gateway, config)
  log.info({ address: serving.address, ...(config.GW_OPS_PORT ? { opsPort: config.GW_OPS_PORT } : {}), store: config.GW_STORE, clamd: config.GW_CLAMD.map((e) => e.url), scanConcurrency: config.GW_SCAN_CONCURRENCY }, 'gateway listening')

  let stopping = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    log.info({ signal, graceMs: config.GW_SHUTDOWN_GRACE_MS }, 'shutting down: no new uploads, finishing in-flight work')
    serving.stop(config.GW_SHUTDOWN_GRACE_MS).then(
      () => {
        log.info('stopped')
        process.exit(0)
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      }
    )
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
