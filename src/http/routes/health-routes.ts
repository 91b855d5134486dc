import type { FastifyInstance } from 'fastify'
import type { ReadinessService } from '../../services/readiness-service.ts'
import { HealthBody, ReadyBody } from '../schemas.ts'

export async function healthRoutes(app: FastifyInstance, { readiness }: { readiness: ReadinessService }): Promise<void> {
  app.get(
    '/healthz',
    { logLevel: 'warn', schema: { summary: 'The process is up', security: [], response: { 200: HealthBody } } },
    async () => ({ ok: true })
  )

  app.get(
    '/readyz',
    {
      logLevel: 'warn',
      schema: {
        summary: 'Whether the gateway can take and scan uploads',
        security: [],
        description: 'Checks the state store, both buckets and a clamd self-test scan of the EICAR test string. 503 names what is not ready.',
        response: { 200: ReadyBody, 503: ReadyBody }
      }
    },
    async (_request, reply) => {
      const result = await readiness.check()
      return reply.code(result.ok ? 200 : 503).send(result)
    }
  )
}
