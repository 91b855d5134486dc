import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import cors from '@fastify/cors'
import multipart from '@fastify/multipart'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { GatewayError, errorCodes } from '../domain/errors.ts'
import type { Metrics } from '../ports/metrics.ts'
import type { ResumableStorage } from '../ports/resumable-storage.ts'
import type { HistoryReader } from '../services/history-reader.ts'
import type { IngestService } from '../services/ingest-service.ts'
import type { LiveStatus } from '../services/live-status.ts'
import type { ReadinessService } from '../services/readiness-service.ts'
import type { RescanService } from '../services/rescan-service.ts'
import type { ResumableUploads } from '../services/resumable-uploads.ts'
import type { StatusService } from '../services/status-service.ts'
import type { TokenMinter } from '../services/token-minting.ts'
import type { TransferGuard } from '../services/transfer-guard.ts'
import type { UploadOperations } from '../services/upload-operations.ts'
import type { Auth } from './auth.ts'
import { answerWhileDraining } from './draining.ts'
import { registerErrorHandling } from './error-handler.ts'
import { endWithAnswer } from './lingering-close.ts'
import { registerRateLimits, type RateLimitOptions } from './rate-limits.ts'
import { lazyRequestLogger } from './request-logger.ts'
import { adminRoutes } from './routes/admin-routes.ts'
import { demoRoutes, type DemoDeps } from './routes/demo-routes.ts'
import { docsRoutes } from './routes/docs-routes.ts'
import { healthRoutes, readinessRoutes } from './routes/health-routes.ts'
import { metricsRoutes, type MetricsExporter } from './routes/metrics-routes.ts'
import { tusRoutes } from './routes/tus-routes.ts'
import { tokenRoutes } from './routes/token-routes.ts'
import { uploadRoutes } from './routes/upload-routes.ts'

export interface AppDeps {
  logger: FastifyBaseLogger
  auth: Auth
  ingest: IngestService
  status: StatusService
  live: LiveStatus
  /** Mints upload tokens; null when GW_TOKEN_SECRETS is empty. */
  tokens: TokenMinter | null
  readiness: ReadinessService
  rescans: RescanService
  uploadOperations: UploadOperations
  history: HistoryReader
  transfer: TransferGuard
  metrics: Metrics
  exporter: MetricsExporter
  /** The committed openapi.yaml, served at /openapi.yaml. */
  openApiYaml: string
  /** The demo page's files (GW_DEMO=true), else null: no /demo routes. */
  demo: Omit<DemoDeps, 'minter'> | null
  /** tus uploads at /v1/tus: the service and the tus store and locker the composition root chose. */
  resumable: ResumableUploads
  resumableStorage: ResumableStorage
}

export interface AppOptions {
  maxUploadBytes: number
  uploadIdleTimeoutMs: number
  headersTimeoutMs: number
  maxConnections: number
  corsOrigins: readonly string[]
  rateLimits: RateLimitOptions
  /** false for a worker-only process: health and metrics, no upload routes. */
  uploads: boolean
  /** false when /readyz and /metrics are on the ops listener (GW_OPS_PORT). */
  opsRoutes: boolean
  /** Runs before the routes are registered (the OpenAPI generator hooks in here). */
  beforeRoutes?: (app: FastifyInstance) => Promise<void>
}

/** The HTTP app as plugins; listening and shutdown are the server entry's business. */
export async function buildApp(deps: AppDeps, options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    genReqId: () => randomUUID(),
    childLoggerFactory: lazyRequestLogger,
    // Bound a stalled client (no bytes for this long), never a slow one: no total request timeout.
    // Uploads turn this socket timeout off: it would count the time we do not read them (see upload-routes).
    connectionTimeout: options.uploadIdleTimeoutMs,
    requestTimeout: 0,
    // Node checks header deadlines on an interval (30 s by default): check often enough to keep them.
    http: {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: 0,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(options.headersTimeoutMs / 4)))
    },
    // Our own hook answers during shutdown, in the gateway's error shape.
    return503OnClosing: false
  })
  registerErrorHandling(app)
  app.decorateRequest('principal', null as never)
  const overCap = limitConnections(app, options)
  answerHeaderTimeouts(app, options.headersTimeoutMs)
  answerWhileDraining(app)
  // Long polls are answered as the app starts closing, so they do not hold up the drain.
  app.addHook('preClose', async () => deps.live.close())
  // A callback hook, not an async one: it runs on every request and has nothing to wait for.
  app.addHook('onRequest', (request, reply, done) => {
    if (overCap(request.raw.socket) && request.routeOptions.url !== '/healthz') {
      reply.header('connection', 'close')
      return done(new GatewayError('GW_BUSY', `this gateway has ${options.maxConnections} connections open, as many as it takes; try again later`))
    }
    done()
  })
  if (options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: [...options.corsOrigins],
      methods: ['GET', 'POST', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'if-none-match', 'idempotency-key'],
      exposedHeaders: ['location', 'etag', 'retry-after', 'x-request-id'],
      maxAge: 600
    })
  }
  await app.register(multipart, {
    // One byte over the limit, so the gateway's own meter sees the excess and stops the upload
    // mid-stream (at exactly the limit busboy would silently truncate and read on to the end).
    limits: { fileSize: options.maxUploadBytes + 1, files: 2, fields: 20, fieldSize: 64 * 1024, parts: 25, headerPairs: 100 }
  })
  await registerRateLimits(app, options.rateLimits)
  await options.beforeRoutes?.(app)
  if (options.uploads) {
    await app.register(uploadRoutes, deps)
    await app.register(tusRoutes, { ...deps, corsOrigins: options.corsOrigins })
    await app.register(tokenRoutes, deps)
    await app.register(adminRoutes, deps)
    await app.register(docsRoutes, deps)
    // The configuration allows the demo only with token secrets, so a minter is there.
    if (deps.demo && deps.tokens) await app.register(demoRoutes, { ...deps.demo, minter: deps.tokens })
  }
  await app.register(healthRoutes)
  if (options.opsRoutes) {
    await app.register(readinessRoutes, deps)
    await app.register(metricsRoutes, deps)
  }
  return app
}

/**
 * Counts open connections. Requests on a connection opened past `maxConnections` are refused (503
 * GW_BUSY, then closed) while the process is still over the cap: an answer, where a plain cap
 * (server.maxConnections) would close them unanswered. That hard cap is kept for floods, at twice
 * the number. Returns whether a socket's requests are to be refused now.
 */
function limitConnections(app: FastifyInstance, options: AppOptions): (socket: Socket) => boolean {
  let open = 0
  const overCap = new WeakSet<Socket>()
  app.server.maxConnections = options.maxConnections * 2
  app.server.on('connection', (socket: Socket) => {
    open++
    if (open > options.maxConnections) overCap.add(socket)
    socket.once('close', () => open--)
  })
  return (socket) => {
    if (!overCap.has(socket)) return false
    if (open > options.maxConnections) return true
    overCap.delete(socket)
    return false
  }
}

/** Node reports a request whose headers took too long as a client error: answer it in the gateway's shape. */
function answerHeaderTimeouts(app: FastifyInstance, headersTimeoutMs: number): void {
  const fallbacks = app.server.listeners('clientError') as Array<(err: Error, socket: Socket) => void>
  app.server.removeAllListeners('clientError')
  app.server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && socket.writable) {
      app.log.info({ code: 'GW_TOO_SLOW' }, 'request refused: headers too slow')
      const message = `the request headers did not arrive within ${headersTimeoutMs} ms`
      return endWithAnswer(socket, errorCodes.GW_TOO_SLOW.status, 'Request Timeout', { error: { code: 'GW_TOO_SLOW', message } })
    }
    for (const fallback of fallbacks) fallback(err, socket)
  })
}
