import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Readiness, type ReadinessService } from '../../services/readiness-service.ts'
import { HealthBody, headersTooSlow } from '../schemas.ts'

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    { logLevel: 'warn', schema: { operationId: 'getHealth', summary: 'The process is up', security: [], response: { 200: HealthBody, ...headersTooSlow } } },
    async () => ({ ok: true })
  )
}

/** On the ops listener when GW_OPS_PORT is set, else on the main one. */
export const readinessRoutes: FastifyPluginAsyncTypebox<{ readiness: ReadinessService }> = async (app, { readiness }) => {
  app.get(
    '/readyz',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'getReadiness',
        summary: 'Whether the gateway can take and scan uploads',
        security: [],
        description:
          "Checks the state store and both buckets, and (except on GW_ROLE=api) the clamd pool's latest health checks, each of which scans the EICAR test string: the answer never costs clamd a scan of its own. 503 names what is not ready. Served on GW_OPS_PORT instead when that is set.",
        response: { 200: Readiness, ...headersTooSlow, 503: Readiness }
      }
    },
    async (_request, reply) => {
      const result = await readiness.check()
      return reply.code(result.ok ? 200 : 503).send(result)
    }
  )
}
