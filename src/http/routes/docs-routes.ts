import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { headersTooSlow } from '../schemas.ts'

/** The committed openapi.yaml, read once at start-up by the composition root and handed in as text. */
export const docsRoutes: FastifyPluginAsyncTypebox<{ openApiYaml: string }> = async (app, { openApiYaml }) => {
  app.get(
    '/openapi.yaml',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'getOpenApiDocument',
        summary: "This API's OpenAPI 3.1 document",
        description: 'This document, as committed with the code, for client generators and API explorers. No key needed: it describes routes, never data.',
        security: [],
        response: { 200: { description: 'OpenAPI 3.1, YAML', content: { 'application/yaml': { schema: { type: 'string' } } } }, ...headersTooSlow }
      }
    },
    async (_request, reply) => reply.type('application/yaml; charset=utf-8').header('cache-control', 'no-cache').send(openApiYaml)
  )
}
