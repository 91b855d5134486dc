import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { createGateway, createLogger } from '../src/composition-root.ts'
import { serve } from '../src/serve.ts'
import { loadConfig } from '../src/config/load-config.ts'

// Credentials are checked before anything else: a caller without the right key gets 401/403
// whatever it sends, never a validation error that describes what the route accepts.
const uploader = 'upload-key-for-auth-first-01'
const admin = 'admin-key-for-auth-first-0001'
const stranger = 'unknown-key-for-auth-first-1'

const dir = await mkdtemp(join(tmpdir(), 'gw-auth-first-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const config = loadConfig({
  env: {
    GW_PORT: '0',
    GW_FS_ROOT: join(dir, 'objects'),
    GW_DATABASE_URL: `sqlite:${join(dir, 'state.db')}`,
    GW_SCAN_CONCURRENCY: '0',
    GW_CLAMD_HEALTH_INTERVAL_MS: '0',
    GW_UPLOAD_KEYS: uploader,
    GW_ADMIN_KEYS: admin,
    GW_TOKEN_SECRETS: `k1:${'s'.repeat(32)}`,
    GW_LOG_LEVEL: process.env.GW_TEST_LOGS ? 'debug' : 'silent'
  },
  configDir: resolve(import.meta.dirname, '../config')
})
// Every route the app registers, so a route added later is covered without editing this test.
const routes: { method: string; url: string; security: unknown }[] = []
const gateway = await createGateway(config, {
  logger: createLogger(config.GW_LOG_LEVEL),
  beforeRoutes: async (app) => {
    app.addHook('onRoute', (route) => {
      for (const method of [route.method].flat()) {
        if (method !== 'HEAD') routes.push({ method, url: route.url, security: (route.schema as { security?: unknown } | undefined)?.security })
      }
    })
  }
})
const { address: base, stop } = await serve(gateway, config)
t.teardown(() => stop(1000))

/** A request each route must refuse as malformed: an id that is not one, a limit of 0, a body of the wrong shape or type. */
function malformed(method: string, url: string): { path: string; init: RequestInit } {
  const path = `${url.replace(/:id/g, 'not-an-id')}?limit=0`
  if (method === 'GET' || method === 'DELETE') return { path, init: { method } }
  if (url === '/v1/uploads') return { path, init: { method, headers: { 'content-type': 'text/xml' }, body: '<file/>' } }
  return { path, init: { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scope: {}, reason: '', ttlSeconds: 0 }) } }
}

const send = async (method: string, url: string, key?: string) => {
  const { path, init } = malformed(method, url)
  const res = await fetch(`${base}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), ...(key ? { authorization: `Bearer ${key}` } : {}) } })
  const text = await res.text()
  // tus answers its own protocol errors (a missing Tus-Resumable, …) in plain text: no code then.
  const code = text.startsWith('{') ? (JSON.parse(text) as { error?: { code: string } }).error?.code : undefined
  return { status: res.status, code }
}

const guarded = routes.filter((r) => !(Array.isArray(r.security) && r.security.length === 0) && r.url.startsWith('/v1/'))

t.test('the app has the routes this test is about', async (t) => {
  t.ok(guarded.length >= 9, `${guarded.length} authenticated routes: ${guarded.map((r) => `${r.method} ${r.url}`).join(', ')}`)
  t.ok(guarded.some((r) => r.url === '/v1/uploads/:id/release'))
})

for (const { method, url } of guarded) {
  t.test(`${method} ${url}: no key is 401 and a wrong key is 403, before the request is validated`, async (t) => {
    // The right key gets the validation error: the request really is malformed.
    const valid = await send(method, url, admin)
    const tus = url.startsWith('/v1/tus')
    t.ok(tus ? valid.status >= 400 && valid.status < 500 && valid.status !== 401 && valid.status !== 403 : [400, 415].includes(valid.status), `with an admin key: ${valid.status} ${valid.code}`)
    t.same(await send(method, url), { status: 401, code: 'GW_UNAUTHORIZED' }, 'no key')
    t.same(await send(method, url, stranger), { status: 403, code: 'GW_FORBIDDEN' }, 'an unknown key')
    const adminOnly = !['/v1/uploads', '/v1/uploads/:id', '/v1/uploads/:id/scans', '/v1/upload-tokens', '/v1/tus', '/v1/tus/:id'].includes(url)
    if (adminOnly) t.same(await send(method, url, uploader), { status: 403, code: 'GW_FORBIDDEN' }, 'an upload key on an admin route')
    else t.equal((await send(method, url, uploader)).status, valid.status, 'an upload key may call it: validation answers')
  })
}

t.test('an upload key releasing with a short reason is refused as forbidden, not as malformed', async (t) => {
  const res = await fetch(`${base}/v1/uploads/${'0'.repeat(32)}/release`, {
    method: 'POST',
    headers: { authorization: `Bearer ${uploader}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'x' })
  })
  t.equal(res.status, 403)
  t.equal(((await res.json()) as { error: { code: string } }).error.code, 'GW_FORBIDDEN')
})
