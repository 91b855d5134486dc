import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { openApiDocument } from '../scripts/openapi-document.ts'

// openapi.yaml is generated from the routes' schemas; this keeps the committed file in step.
t.test('openapi.yaml matches the routes', async (t) => {
  const committed = parse(await readFile(resolve(import.meta.dirname, '../openapi.yaml'), 'utf8'))
  const generated = parse(await openApiDocument())
  t.same(committed, generated, 'openapi.yaml is stale: run `npm run openapi` and commit the result')
  t.same(Object.keys(committed.paths).sort(), [
    '/healthz',
    '/metrics',
    '/readyz',
    '/v1/audit',
    '/v1/rescans',
    '/v1/rescans/{id}',
    '/v1/tus',
    '/v1/tus/{id}',
    '/v1/upload-tokens',
    '/v1/uploads',
    '/v1/uploads/{id}',
    '/v1/uploads/{id}/release',
    '/v1/uploads/{id}/rescan',
    '/v1/uploads/{id}/scans'
  ])
  t.ok(committed.paths['/v1/uploads'].post.requestBody.content['multipart/form-data'])
})
