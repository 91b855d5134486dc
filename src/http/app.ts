import { randomUUID } from 'node:crypto'
import cors from '@fastify/cors'
import multipart from '@fastify/multipart'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { GatewayError } from '../domain/errors.ts'
import type { Metrics } from '../ports/metrics.ts'
import type { IngestService } from '../services/ingest-service.ts'
import type { ReadinessService } from '../services/readiness-service.ts'
import type { RescanService } from '../services/rescan-service.ts'
import type { StatusService } from '../services/status-service.ts'
import type { UploadAdmission } from '../services/upload-admission.ts'
import type { Auth } from './auth.ts'
import { registerErrorHandling } from './error-handler.ts'
import { adminRoutes } from './routes/admin-routes.ts'
import { healthRoutes, readinessRoutes } from './routes/health-routes.ts'
import { metricsRoutes, type MetricsExporter } from './routes/metrics-routes.ts'
import { uploadRoutes } from './routes/upload-routes.ts'

export interface AppDeps {
  logger: FastifyBaseLogger
  auth: Auth
  ingest: IngestService
  status: StatusService
  readiness: ReadinessService
  operations: RescanService
  admission: UploadAdmission
  metrics: Metrics
  exporter: MetricsExporter
}

export interface AppOptions {
  maxUploadBytes: number
  uploadIdleTimeoutMs: number
  corsOrigins: readonly string[]
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
    // Bound a stalled client (no bytes for this long), never a slow one: no total request timeout.
    connectionTimeout: options.uploadIdleTimeoutMs,
    requestTimeout: 0,
    // Our own hook answers during shutdown, in the gateway's error shape.
    return503OnClosing: false
  })
  registerErrorHandling(app)
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // Requests on kept-alive connections while the server drains: send them to another replica.
    if (closing) throw new GatewayError('GW_SHUTTING_DOWN')
  })
  if (options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: [...options.corsOrigins],
      methods: ['GET', 'POST', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'if-none-match'],
      exposedHeaders: ['location', 'etag', 'retry-after', 'x-request-id'],
      maxAge: 600
    })
  }
  await app.register(multipart, {
    // One byte over the limit, so the gateway's own meter sees the excess and stops the upload
    // mid-stream (at exactly the limit busboy would silently truncate and read on to the end).
    limits: { fileSize: options.maxUploadBytes + 1, files: 2, fields: 20, fieldSize: 64 * 1024, parts: 25, headerPairs: 100 }
  })
  await options.beforeRoutes?.(app)
  if (options.uploads) {
    await app.register(uploadRoutes, deps)
    await app.register(adminRoutes, deps)
  }
  await app.register(healthRoutes)
  if (options.opsRoutes) {
    await app.register(readinessRoutes, deps)
    await app.register(metricsRoutes, deps)
  }
  return app
}
