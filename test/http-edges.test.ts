import t from 'tap'
import { startChildGateway } from './helpers/child-gateway.ts'
import { startGateway } from './helpers/gateway.ts'
import { upload, uniqueContent } from './helpers/multipart.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

t.test('CORS: configured origins may upload from a browser, others get no CORS headers', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_CORS_ORIGINS: 'https://app.example' })
  const preflight = await fetch(`${gw.url}/v1/uploads`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' }
  })
  t.equal(preflight.status, 204)
  t.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example')
  t.match(preflight.headers.get('access-control-allow-headers'), /authorization/)
  const res = await fetch(`${gw.url}/healthz`, { headers: { origin: 'https://app.example' } })
  t.match(res.headers.get('access-control-expose-headers'), /location/)
  const other = await fetch(`${gw.url}/healthz`, { headers: { origin: 'https://evil.example' } })
  t.equal(other.headers.get('access-control-allow-origin'), null)
})

t.test('no CORS headers at all when no origins are configured', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0' })
  const res = await fetch(`${gw.url}/healthz`, { headers: { origin: 'https://app.example' } })
  t.equal(res.headers.get('access-control-allow-origin'), null)
})

t.test('every response carries a request id', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0' })
  const a = await fetch(`${gw.url}/healthz`)
  const b = await fetch(`${gw.url}/nope`)
  t.match(a.headers.get('x-request-id'), /^[0-9a-f-]{36}$/)
  t.match(b.headers.get('x-request-id'), /^[0-9a-f-]{36}$/)
  t.not(a.headers.get('x-request-id'), b.headers.get('x-request-id'))
})

t.test('logs never print the keys, even at trace level', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-logs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const key = 'secret-upload-key-4f1c9a'
  const admin = 'secret-admin-key-77e0b2'
  const gw = await startChildGateway(t, {
    GW_FS_ROOT: join(dir, 'objects'),
    GW_DATABASE_URL: `sqlite:${join(dir, 'state.db')}`,
    GW_SCAN_CONCURRENCY: '0',
    GW_UPLOAD_KEYS: key,
    GW_ADMIN_KEYS: admin,
    GW_LOG_LEVEL: 'trace'
  })
  const ok = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) }, { authorization: `Bearer ${key}` })
  t.equal(ok.status, 202)
  await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) }, { authorization: `Bearer ${admin}x` })
  await fetch(`${gw.url}/v1/uploads/${ok.json.id}`, { headers: { authorization: `Bearer ${key}` } })
  await new Promise((r) => setTimeout(r, 200))
  const logs = gw.output()
  t.match(logs, /upload accepted/, 'the logs were captured')
  t.notMatch(logs, key)
  t.notMatch(logs, admin)
})
