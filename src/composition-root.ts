import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { FsObjectStore } from './adapters/object-store/fs-object-store.ts'
import { S3ObjectStore } from './adapters/object-store/s3-object-store.ts'
import { PrometheusMetrics } from './adapters/metrics/prometheus-metrics.ts'
import { ClamdScanner } from './adapters/scanner/clamd-scanner.ts'
import { HttpWebhookSink } from './adapters/webhook/http-webhook-sink.ts'
import { openResumableStorage } from './adapters/tus/resumable-storage.ts'
import { openStateStore } from './adapters/state-store/open-state-store.ts'
import type { Config } from './config/config-schema.ts'
import { durationMs, tokenSecrets } from './config/load-config.ts'
import { buildApp, type AppOptions } from './http/app.ts'
import { Auth } from './http/auth.ts'
import { buildOpsApp } from './http/ops-app.ts'
import type { ObjectStore } from './ports/object-store.ts'
import { RESUMABLE_COMPANIONS } from './ports/resumable-storage.ts'
import type { Scanner } from './ports/scanner.ts'
import type { StateStore } from './ports/state-store.ts'
import { AdoptionService } from './services/adoption-service.ts'
import { IDEMPOTENCY_TTL_MS, IngestService } from './services/ingest-service.ts'
import { LiveStatus } from './services/live-status.ts'
import { OrphanSweeper } from './services/orphan-sweeper.ts'
import { JobRunner } from './services/job-runner.ts'
import { LeaseClock } from './services/lease-fence.ts'
import { PromoteStep } from './services/promote-step.ts'
import { ReadinessService } from './services/readiness-service.ts'
import { RequarantineStep } from './services/requarantine-step.ts'
import { RescanPolicy } from './services/rescan-policy.ts'
import { RescanBatches } from './services/rescan-batches.ts'
import { HistoryReader } from './services/history-reader.ts'
import { RescanService } from './services/rescan-service.ts'
import { ResumableUploads } from './services/resumable-uploads.ts'
import { RetentionService } from './services/retention-service.ts'
import { ScanStep } from './services/scan-step.ts'
import { ScanWorker } from './services/scan-worker.ts'
import { StatusService } from './services/status-service.ts'
import { TransferGuard } from './services/transfer-guard.ts'
import { UploadAdmission } from './services/upload-admission.ts'
import { UploadEvents } from './services/upload-events.ts'
import { UploadOperations } from './services/upload-operations.ts'
import { UploadTokens } from './services/upload-tokens.ts'
import { WebhookDispatcher } from './services/webhook-dispatcher.ts'
import { readDemoFiles, readOpenApiDocument } from './static-files.ts'

export interface Gateway {
  app: FastifyInstance
  /** The GW_OPS_PORT listener (/healthz, /readyz, /metrics); null when those are on the main one. */
  opsApp: FastifyInstance | null
  worker: ScanWorker
  state: StateStore
  objects: ObjectStore
  scanner: Scanner
  metrics: PrometheusMetrics
  logger: Logger
  /** What runs beside the HTTP apps: the scan worker and (where it scans) the background loops. serve.ts starts and stops it. */
  work: { start(): void; stop(graceMs: number): Promise<void> }
  /** Closes the stores and the scanner: last, once the apps and the work have stopped. */
  close(): Promise<void>
}

/** Secrets never reach the logs, whatever logs them (plugins log request headers at trace level). */
const secretKeys = ['GW_UPLOAD_KEYS', 'GW_ADMIN_KEYS', 'GW_DATABASE_URL', 'GW_WEBHOOK_SECRET', 'GW_TOKEN_SECRETS']
const redactPaths = ['headers.authorization', 'headers.cookie', '*.headers.authorization', '*.headers.cookie', ...secretKeys, ...secretKeys.map((k) => `*.${k}`)]

export function createLogger(level: string): Logger {
  return pino({ level, redact: { paths: redactPaths, censor: '[redacted]' } })
}

/** The one place that chooses adapters and wires them to the services. */
export async function createGateway(config: Config, overrides: { logger?: Logger; beforeRoutes?: AppOptions['beforeRoutes']; openApiYaml?: string } = {}): Promise<Gateway> {
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
          queueSize: config.GW_S3_QUEUE_SIZE,
          bufferPoolBytes: config.GW_UPLOAD_MEMORY_BYTES
        })
      : new FsObjectStore({ root: config.GW_FS_ROOT })
  const state: StateStore = openStateStore(config.GW_DATABASE_URL, { schema: config.GW_DATABASE_SCHEMA, poolSize: config.GW_DATABASE_POOL_SIZE }, { synchronous: config.GW_SQLITE_SYNCHRONOUS })
  try {
    await state.migrate()
  } catch (err) {
    await state.close()
    throw err
  }
  const scanner: Scanner = new ClamdScanner({
    endpoints: config.GW_CLAMD,
    maxPerEndpoint: config.GW_CLAMD_MAX_PER_ENDPOINT,
    healthIntervalMs: config.GW_CLAMD_HEALTH_INTERVAL_MS,
    connectTimeoutMs: config.GW_CLAMD_CONNECT_TIMEOUT_MS,
    idleTimeoutMs: config.GW_CLAMD_IDLE_TIMEOUT_MS,
    totalTimeoutMs: config.GW_CLAMD_TOTAL_TIMEOUT_MS
  })
  const admission = new UploadAdmission({ maxUploads: config.GW_MAX_CONCURRENT_UPLOADS })
  const uploadsInFlight = { get uploads() { return admission.uploads }, get bufferedBytes() { return objects.bufferedBytes } }
  const metrics = new PrometheusMetrics({ jobs: state, scanner, admission: uploadsInFlight, changes: state }, { queueIntervalMs: config.GW_METRICS_QUEUE_INTERVAL_MS })
  const events = new UploadEvents(config.GW_WEBHOOK_URL !== '')
  const rescans = new RescanPolicy({ intervalMs: durationMs(config.GW_RESCAN_INTERVAL), jitter: config.GW_RESCAN_JITTER })
  // One record of the worker's leases: a write right after a claim or renewal needs no renewal of its own.
  const leases = new LeaseClock()
  const scan = new ScanStep({ objects, jobs: state, scanHistory: state, scanner, rescans, events, metrics, leases }, { scannerMaxBytes: config.GW_SCANNER_MAX_BYTES, leaseMs: config.GW_SCAN_LEASE_MS })
  const steps = {
    scan,
    rescan: scan,
    promote: new PromoteStep({ objects, jobs: state, metrics, rescans, events, leases }, { leaseMs: config.GW_SCAN_LEASE_MS }),
    requarantine: new RequarantineStep({ objects, jobs: state, events, leases }, { mode: config.GW_REQUARANTINE_MODE, leaseMs: config.GW_SCAN_LEASE_MS })
  }
  const runner = new JobRunner(
    { jobs: state, objects, steps, rescans, events, leases },
    {
      maxAttempts: config.GW_SCAN_MAX_ATTEMPTS,
      retryBaseMs: config.GW_RETRY_BASE_MS,
      retryMaxMs: config.GW_RETRY_MAX_MS,
      leaseMs: config.GW_SCAN_LEASE_MS,
      failedRetryAfterMs: durationMs(config.GW_FAILED_RETRY_AFTER),
      failedRetryRounds: config.GW_FAILED_RETRY_ROUNDS
    }
  )
  // An api-only process never scans, whatever GW_SCAN_CONCURRENCY says.
  const concurrency = config.GW_ROLE === 'api' ? 0 : config.GW_SCAN_CONCURRENCY
  const worker = new ScanWorker(
    { jobs: state, runner, log: logger, leases },
    {
      concurrency,
      afterScanConcurrency: config.GW_PROMOTE_CONCURRENCY,
      rescanSlots: config.GW_RESCAN_SHARE > 0 ? Math.max(1, Math.floor(concurrency * config.GW_RESCAN_SHARE)) : 0,
      leaseMs: config.GW_SCAN_LEASE_MS,
      pollIntervalMs: config.GW_POLL_INTERVAL_MS,
      outagePauseMaxMs: config.GW_RETRY_MAX_MS
    }
  )
  // A new upload committed by any replica wakes an idle worker at once; polling stays the fallback.
  if (concurrency > 0) state.onUploadDue(() => worker.wake())
  // Listing, rescan batches, retention and webhook delivery run in worker processes, beside the scans.
  const historyMs = durationMs(config.GW_HISTORY_RETENTION)
  const background = concurrency === 0 ? [] : [
    new AdoptionService({ adoption: state, objects, log: logger }, { pageSize: config.GW_ADOPT_PAGE_SIZE, leaseMs: config.GW_SCAN_LEASE_MS, pollIntervalMs: Math.max(config.GW_POLL_INTERVAL_MS, 1000) }),
    new RescanBatches({ rescanStore: state, log: logger }, { intervalMs: rescans.intervalMs, pollIntervalMs: Math.max(config.GW_POLL_INTERVAL_MS, 1000) }),
    // Looks for old rows every minute, or ten times per retention period when that is shorter.
    new RetentionService(
      { pruning: state, log: logger },
      { historyMs, auditMs: config.GW_AUDIT_RETENTION === '' ? null : durationMs(config.GW_AUDIT_RETENTION), pollIntervalMs: Math.min(60_000, Math.max(100, historyMs / 10)) }
    ),
    new OrphanSweeper(
      { orphans: state, objects, log: logger },
      {
        orphanAfterMs: durationMs(config.GW_ORPHAN_AFTER),
        idempotencyTtlMs: IDEMPOTENCY_TTL_MS,
        keyPrefix: config.GW_KEY_PREFIX,
        pageSize: 500,
        pollIntervalMs: config.GW_ORPHAN_SWEEP_INTERVAL_MS,
        retryMs: Math.max(config.GW_ORPHAN_SWEEP_INTERVAL_MS, 1_000),
        companionSuffixes: RESUMABLE_COMPANIONS
      }
    ),
    ...(events.enabled
      ? [
          new WebhookDispatcher(
            { outbox: state, log: logger, sink: new HttpWebhookSink({ url: config.GW_WEBHOOK_URL, secret: config.GW_WEBHOOK_SECRET, timeoutMs: config.GW_WEBHOOK_TIMEOUT_MS }) },
            { batchSize: 20, leaseMs: config.GW_WEBHOOK_TIMEOUT_MS * 3, pollIntervalMs: config.GW_POLL_INTERVAL_MS, retryBaseMs: config.GW_RETRY_BASE_MS, retryMaxMs: config.GW_RETRY_MAX_MS }
          )
        ]
      : [])
  ]
  const ingest = new IngestService(
    { objects, intake: state, uploads: state, admission, metrics, onCommitted: () => worker.wake() },
    { maxBytes: config.GW_MAX_UPLOAD_BYTES, keyPrefix: config.GW_KEY_PREFIX, storeTimeoutMs: config.GW_STORE_TIMEOUT_MS, allowedTypes: config.GW_ALLOWED_TYPES }
  )
  const tusExpiryMs = durationMs(config.GW_TUS_EXPIRY)
  const resumable = new ResumableUploads(
    { objects, intake: state, uploads: state, metrics, events, onCommitted: () => worker.wake() },
    { maxBytes: config.GW_MAX_UPLOAD_BYTES, keyPrefix: config.GW_KEY_PREFIX, expiryMs: tusExpiryMs, companionSuffixes: RESUMABLE_COMPANIONS, allowedTypes: config.GW_ALLOWED_TYPES, tokenReadTtlMs: durationMs(config.GW_TOKEN_READ_TTL) }
  )
  const resumableStorage = openResumableStorage({
    keyPrefix: config.GW_KEY_PREFIX,
    expiryMs: tusExpiryMs,
    databaseUrl: config.GW_DATABASE_URL,
    store:
      config.GW_STORE === 's3'
        ? {
            kind: 's3',
            bucket: config.GW_QUARANTINE_BUCKET,
            ...(config.GW_S3_ENDPOINT ? { endpoint: config.GW_S3_ENDPOINT } : {}),
            region: config.GW_S3_REGION,
            forcePathStyle: config.GW_S3_FORCE_PATH_STYLE,
            partSizeBytes: config.GW_S3_PART_SIZE_BYTES
          }
        : { kind: 'fs', directory: objects.location('quarantine', '').bucket }
  })
  const tokenKeys = tokenSecrets(config.GW_TOKEN_SECRETS)
  const tokens =
    tokenKeys.length === 0
      ? null
      : new UploadTokens({ keys: tokenKeys, audience: config.GW_TOKEN_AUDIENCE, maxUploadBytes: config.GW_MAX_UPLOAD_BYTES, allowedTypes: config.GW_ALLOWED_TYPES })
  const readiness = new ReadinessService({ objects, database: state, scanner }, { scannerRequired: config.GW_ROLE !== 'api' })
  const opsApp = config.GW_OPS_PORT === 0 ? null : await buildOpsApp({ logger, readiness, exporter: metrics })
  const app = await buildApp(
    {
      logger,
      auth: new Auth(config.GW_UPLOAD_KEYS, config.GW_ADMIN_KEYS, tokens),
      ingest,
      tokens,
      status: new StatusService({ uploads: state, changes: state, objects }, { tokenReadTtlMs: durationMs(config.GW_TOKEN_READ_TTL) }),
      live: new LiveStatus({ changes: state }),
      readiness,
      rescans: new RescanService({ rescanStore: state, audit: state, objects }, { intervalMs: rescans.intervalMs }),
      uploadOperations: new UploadOperations({ uploads: state, actions: state, audit: state, objects }),
      history: new HistoryReader({ uploads: state, scanHistory: state, audit: state }),
      transfer: new TransferGuard({
        minBytesPerSecond: config.GW_UPLOAD_MIN_RATE_BYTES,
        windowMs: config.GW_UPLOAD_RATE_WINDOW_MS,
        idleTimeoutMs: config.GW_UPLOAD_IDLE_TIMEOUT_MS
      }),
      metrics,
      exporter: metrics,
      openApiYaml: overrides.openApiYaml ?? readOpenApiDocument(),
      demo: config.GW_DEMO ? readDemoFiles() : null,
      resumable,
      resumableStorage
    },
    {
      maxUploadBytes: config.GW_MAX_UPLOAD_BYTES,
      uploadIdleTimeoutMs: config.GW_UPLOAD_IDLE_TIMEOUT_MS,
      headersTimeoutMs: config.GW_HEADERS_TIMEOUT_MS,
      maxConnections: config.GW_MAX_CONNECTIONS,
      corsOrigins: config.GW_CORS_ORIGINS,
      rateLimits: {
        perMinute: {
          tokens: config.GW_RATE_LIMIT_TOKENS_PER_MINUTE,
          uploads: config.GW_RATE_LIMIT_UPLOADS_PER_MINUTE,
          status: config.GW_RATE_LIMIT_STATUS_PER_MINUTE
        }
      },
      uploads: config.GW_ROLE !== 'worker',
      opsRoutes: opsApp === null,
      ...(overrides.beforeRoutes ? { beforeRoutes: overrides.beforeRoutes } : {})
    }
  )

  return {
    app,
    opsApp,
    worker,
    state,
    objects,
    scanner,
    metrics,
    logger,
    work: {
      start() {
        worker.start()
        for (const b of background) b.start()
      },
      async stop(graceMs) {
        await Promise.all([worker.stop(graceMs), ...background.map((b) => b.stop())])
      }
    },
    async close() {
      await Promise.allSettled([state.close(), objects.close(), scanner.close(), resumableStorage.close()])
    }
  }
}
