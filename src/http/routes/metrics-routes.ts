import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'

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
        summary: 'Metrics in the Prometheus text format',
        description: 'Uploads and bytes by outcome, scans by verdict with a duration histogram, queue depth, age of the oldest unfinished upload, clamd endpoint health and signature age, and process metrics. Unauthenticated, like /readyz: expose it to your scraper, not to the internet (GW_OPS_PORT serves both on a port of their own).',
        security: [],
        produces: ['text/plain'],
        response: { 200: { type: 'string', description: 'Prometheus exposition format 0.0.4' } }
      }
    },
    async (_request, reply) => reply.type(exporter.contentType).send(await exporter.render())
  )
}
