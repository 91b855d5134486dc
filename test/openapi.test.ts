import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { openApiDocument } from '../scripts/openapi-document.ts'
import { startGateway } from './helpers/gateway.ts'

// openapi.yaml is generated from the routes' schemas; this keeps the committed file in step.
t.test('openapi.yaml matches the routes', async (t) => {
  const committed = parse(await readFile(resolve(import.meta.dirname, '../openapi.yaml'), 'utf8'))
  const generated = parse(await openApiDocument())
  t.same(committed, generated, 'openapi.yaml is stale: run `npm run openapi` and commit the result')
  t.same(Object.keys(committed.paths).sort(), [
    '/demo',
    '/demo/assets/{name}',
    '/demo/token',
    '/healthz',
    '/metrics',
    '/openapi.yaml',
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

t.test('the gateway serves the committed openapi.yaml, without a key', async (t) => {
  const committed = await readFile(resolve(import.meta.dirname, '../openapi.yaml'), 'utf8')
  const { url } = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_KEYS: 'u'.repeat(16) })
  const res = await fetch(`${url}/openapi.yaml`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^application\/yaml/)
  t.equal(await res.text(), committed)
  t.equal((await fetch(`${url}/v1/uploads/${'0'.repeat(32)}`)).status, 401, 'the API itself still needs a key')
})
