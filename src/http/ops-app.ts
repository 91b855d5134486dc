import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { GatewayError } from '../domain/errors.ts'
import type { ReadinessService } from '../services/readiness-service.ts'
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
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // A draining process is not ready: say so, like the main listener.
    if (closing) throw new GatewayError('GW_SHUTTING_DOWN')
  })
  await app.register(healthRoutes)
  await app.register(readinessRoutes, deps)
  await app.register(metricsRoutes, deps)
  return app
}
