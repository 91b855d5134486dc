import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { FsObjectStore } from './adapters/object-store/fs-object-store.ts'
import { S3ObjectStore } from './adapters/object-store/s3-object-store.ts'
import { ClamdScanner } from './adapters/scanner/clamd-scanner.ts'
import { SqliteStateStore } from './adapters/state-store/sqlite-state-store.ts'
import type { Config } from './config/config-schema.ts'
import { buildApp, type AppOptions } from './http/app.ts'
import { Auth } from './http/auth.ts'
import type { ObjectStore } from './ports/object-store.ts'
import type { Scanner } from './ports/scanner.ts'
import type { StateStore } from './ports/state-store.ts'
import { IngestService } from './services/ingest-service.ts'
import { PromoteService } from './services/promote-service.ts'
import { ReadinessService } from './services/readiness-service.ts'
import { ScanService } from './services/scan-service.ts'
import { ScanWorker } from './services/scan-worker.ts'
import { StatusService } from './services/status-service.ts'

export interface Gateway {
  app: FastifyInstance
  worker: ScanWorker
  state: StateStore
  objects: ObjectStore
  scanner: Scanner
  logger: Logger
  /** Listens and starts the scan worker; resolves with the address. */
  start(): Promise<string>
  /** Stops taking requests, lets in-flight work finish within graceMs, closes the stores. */
  stop(graceMs: number): Promise<void>
}

/** Secrets never reach the logs, whatever logs them (plugins log request headers at trace level). */
const redactPaths = ['headers.authorization', 'headers.cookie', '*.headers.authorization', '*.headers.cookie', 'GW_UPLOAD_KEYS', 'GW_ADMIN_KEYS', '*.GW_UPLOAD_KEYS', '*.GW_ADMIN_KEYS']

export function createLogger(level: string): Logger {
  return pino({ level, redact: { paths: redactPaths, censor: '[redacted]' } })
}

/** The one place that chooses adapters and wires them to the services. */
export async function createGateway(config: Config, overrides: { logger?: Logger; beforeRoutes?: AppOptions['beforeRoutes'] } = {}): Promise<Gateway> {
  const logger = overrides.logger ?? createLogger(config.GW_LOG_LEVEL)
  const objects: ObjectStore =
    config.GW_STORE === 's3'
      ? new S3ObjectStore({
          ...(config.GW_S3_ENDPOINT ? { endpoint: config.GW_S3_ENDPOINT } : {}),
          region: config.GW_S3_REGION,
          forcePathStyle: config.GW_S3_FORCE_PATH_STYLE,
          quarantineBucket: config.GW_QUARANTINE_BUCKET,
          productionBucket: config.GW_PRODUCTION_BUCKET,
          partSizeBytes: config.GW_S3_PART_SIZE_BYTES,
          queueSize: config.GW_S3_QUEUE_SIZE
        })
      : new FsObjectStore({ root: config.GW_FS_ROOT })
  const state: StateStore = new SqliteStateStore(config.GW_DATABASE_URL.slice('sqlite:'.length))
  await state.migrate()
  const scanner: Scanner = new ClamdScanner({
    endpoints: config.GW_CLAMD,
    connectTimeoutMs: config.GW_CLAMD_CONNECT_TIMEOUT_MS,
    idleTimeoutMs: config.GW_CLAMD_IDLE_TIMEOUT_MS,
    totalTimeoutMs: config.GW_CLAMD_TOTAL_TIMEOUT_MS
  })
  const promote = new PromoteService({ objects, state })
  const scan = new ScanService(
    { objects, state, scanner, promote },
    {
      scannerMaxBytes: config.GW_SCANNER_MAX_BYTES,
      maxAttempts: config.GW_SCAN_MAX_ATTEMPTS,
      retryBaseMs: config.GW_RETRY_BASE_MS,
      retryMaxMs: config.GW_RETRY_MAX_MS,
      leaseMs: config.GW_SCAN_LEASE_MS
    }
  )
  const worker = new ScanWorker(
    { state, scan, log: logger },
    {
      concurrency: config.GW_SCAN_CONCURRENCY,
      leaseMs: config.GW_SCAN_LEASE_MS,
      pollIntervalMs: config.GW_POLL_INTERVAL_MS,
      outagePauseMaxMs: config.GW_RETRY_MAX_MS
    }
  )
  const ingest = new IngestService(
    { objects, state, onCommitted: () => worker.wake() },
    { maxBytes: config.GW_MAX_UPLOAD_BYTES, keyPrefix: config.GW_KEY_PREFIX }
  )
  const app = await buildApp(
    {
      logger,
      auth: new Auth(config.GW_UPLOAD_KEYS, config.GW_ADMIN_KEYS),
      ingest,
      status: new StatusService({ state, objects }),
      readiness: new ReadinessService({ objects, state, scanner })
    },
    {
      maxUploadBytes: config.GW_MAX_UPLOAD_BYTES,
      uploadIdleTimeoutMs: config.GW_UPLOAD_IDLE_TIMEOUT_MS,
      corsOrigins: config.GW_CORS_ORIGINS,
      ...(overrides.beforeRoutes ? { beforeRoutes: overrides.beforeRoutes } : {})
    }
  )

  return {
    app,
    worker,
    state,
    objects,
    scanner,
    logger,
    async start() {
      const address = await app.listen({ host: config.GW_HOST, port: config.GW_PORT })
      worker.start()
      return address
    },
    async stop(graceMs) {
      const grace = setTimeout(() => app.server.closeAllConnections(), graceMs)
      await Promise.all([app.close(), worker.stop(graceMs)])
      clearTimeout(grace)
      await Promise.allSettled([state.close(), objects.close(), scanner.close()])
    }
  }
}
