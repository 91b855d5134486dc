import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { headersTooSlow } from '../schemas.ts'

export interface MetricsExporter {
  readonly contentType: string
  render(): Promise<string>
}

export const metricsRoutes: FastifyPluginAsyncTypebox<{ exporter: MetricsExporter }> = async (app, { exporter }) => {
  app.get(
    '/metrics',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'getMetrics',
        summary: 'Metrics in the Prometheus text format',
        description: 'Uploads and bytes by outcome, scans by verdict with a duration histogram, queue depth, age of the oldest unfinished upload, clamd endpoint health and signature age, and process metrics. Unauthenticated, like /readyz: expose it to your scraper, not to the internet (GW_OPS_PORT serves both on a port of their own).',
        security: [],
        response: { 200: { description: 'Prometheus exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } }, ...headersTooSlow }
      }
    },
    async (_request, reply) => reply.type(exporter.contentType).send(await exporter.render())
  )
}
