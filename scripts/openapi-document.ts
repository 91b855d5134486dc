import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import swagger from '@fastify/swagger'
import { pino } from 'pino'
import { createGateway } from '../src/composition-root.ts'
import { loadConfig } from '../src/config/load-config.ts'
import { errorCodes } from '../src/domain/errors.ts'
import { shutdown } from '../src/serve.ts'

/**
 * openapi.yaml, generated from the routes' own schemas (the TypeBox definitions they validate
 * and serialise with), so the document cannot drift from the code: a test compares the two.
 */
export async function openApiDocument(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-openapi-'))
  try {
    const config = loadConfig({
      env: {
        GW_FS_ROOT: dir,
        GW_DATABASE_URL: 'sqlite::memory:',
        GW_SCAN_CONCURRENCY: '0',
        GW_UPLOAD_KEYS: 'k'.repeat(16),
        // Routes that exist only when configured are documented too (each says when it exists).
        GW_TOKEN_SECRETS: `doc:${'s'.repeat(32)}`,
        GW_DEMO: 'true'
      },
      configDir: resolve(import.meta.dirname, '../config')
    })
    const gateway = await createGateway(config, {
      logger: pino({ level: 'silent' }),
      // The document being generated: the one on disk may be stale or missing.
      openApiYaml: '',
      beforeRoutes: async (app) => {
        await app.register(swagger, {
          openapi: {
            openapi: '3.1.0',
            info: {
              title: 'Quarantine upload gateway',
              version: '1',
              description: `Uploads go to quarantine, are scanned by clamd in the background, and only clean files reach production. Errors share one shape; codes: ${Object.keys(errorCodes).join(', ')}.`,
              license: { name: 'MIT', identifier: 'MIT' }
            },
            // Where the first run listens (scripts/first-run.sh); clients put their gateway's address here.
            servers: [{ url: 'http://127.0.0.1:8080', description: 'A gateway on its first-run defaults' }],
            components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
            security: [{ bearer: [] }]
          },
          // Multipart bodies are parsed as streams, not validated as JSON: describe them for readers only.
          transform: ({ schema, url, route }) => {
            const consumes = (schema as { consumes?: string[] } | undefined)?.consumes
            if (!consumes?.includes('multipart/form-data')) return { schema, url }
            const body = { type: 'object', required: ['file'], properties: { file: { type: 'string', format: 'binary', description: 'The file; exactly one.' } } }
            return { schema: { ...schema, body }, url, route }
          },
          refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) }
        })
      }
    })
    await gateway.app.ready()
    const yaml = gateway.app.swagger({ yaml: true })
    await shutdown(gateway, 0)
    return yaml
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
