import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { ReadinessService } from '../services/readiness-service.ts'
import { answerWhileDraining } from './draining.ts'
import { registerErrorHandling } from './error-handler.ts'
import { healthRoutes, readinessRoutes } from './routes/health-routes.ts'
import { metricsRoutes, type MetricsExporter } from './routes/metrics-routes.ts'

/**
 * The listener of GW_OPS_PORT: /healthz, /readyz and /metrics for load balancers and scrapers, on
 * a port that need not be reachable by clients. No uploads, no keys, no CORS.
 */
export async function buildOpsApp(deps: { logger: FastifyBaseLogger; readiness: ReadinessService; exporter: MetricsExporter }): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: deps.logger, genReqId: () => randomUUID(), return503OnClosing: false })
  registerErrorHandling(app)
  answerWhileDraining(app)
  await app.register(healthRoutes)
  await app.register(readinessRoutes, deps)
  await app.register(metricsRoutes, deps)
  return app
}
