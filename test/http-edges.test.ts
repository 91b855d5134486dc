import t from 'tap'
import { startChildGateway } from './helpers/child-gateway.ts'
import { startGateway } from './helpers/gateway.ts'
import { upload, uniqueContent } from './helpers/multipart.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { connect, type Socket } from 'node:net'
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

t.test('a plain OPTIONS on tus (no Origin: not a preflight) answers its capabilities, with the global limit', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_MAX_UPLOAD_BYTES: '1048576' })
  for (const path of ['/v1/tus', `/v1/tus/${'0'.repeat(32)}`]) {
    const res = await fetch(`${gw.url}${path}`, { method: 'OPTIONS' })
    t.equal(res.status, 204, path)
    t.equal(res.headers.get('tus-max-size'), '1048576', `${path}: Tus-Max-Size`)
  }
  // With a body, as auth-first sends one.
  const withBody = await fetch(`${gw.url}/v1/tus/x`, { method: 'OPTIONS', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(withBody.status, 204)
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

/** Opens a raw connection, sends `text`, and resolves with all it reads until the gateway closes it (or giveUpMs). */
function rawExchange(baseUrl: string, text: string, giveUpMs = 10_000): Promise<{ reply: string; closed: boolean }> {
  const url = new URL(baseUrl)
  return new Promise((resolve) => {
    let reply = ''
    const socket = connect(Number(url.port), url.hostname, () => {
      if (text) socket.write(text)
    })
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ reply, closed: false })
    }, giveUpMs)
    socket.setEncoding('utf8').on('data', (s: string) => (reply += s))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ reply, closed: true })
    })
  })
}

t.test('headers that do not arrive within GW_HEADERS_TIMEOUT_MS: 408 GW_TOO_SLOW, then the connection is closed', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_HEADERS_TIMEOUT_MS: '500' })
  for (const [what, text] of [
    ['half the headers', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow'],
    ['nothing at all', '']
  ] as const) {
    const { reply, closed } = await rawExchange(gw.url, text)
    t.ok(closed, `${what}: closed before the test gives up`)
    t.match(reply, /^HTTP\/1\.1 408 /, `${what}: answered 408`)
    t.match(reply, /"code":"GW_TOO_SLOW"/, what)
  }
  t.equal((await fetch(`${gw.url}/healthz`)).status, 200, 'a request that sends its headers is not affected')
  // Between requests a kept-alive connection is idle, not late: no 408 may be waiting on it.
  const url = new URL(gw.url)
  let reply = ''
  const socket = connect(Number(url.port), url.hostname)
  t.teardown(() => socket.destroy())
  socket.setEncoding('utf8').on('data', (s: string) => (reply += s))
  socket.on('error', () => {})
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  await new Promise((r) => setTimeout(r, 1500))
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  for (let i = 0; i < 250 && (reply.match(/HTTP\/1\.1 /g) ?? []).length < 2; i++) await new Promise((r) => setTimeout(r, 20))
  t.same(reply.match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 200', 'HTTP/1.1 200'], 'a kept-alive connection idle past the timeout serves its next request')
})

t.test('past GW_MAX_CONNECTIONS: requests are answered 503 GW_BUSY with Retry-After and closed; /healthz still answers', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_MAX_CONNECTIONS: '3' })
  const url = new URL(gw.url)
  const held = await Promise.all(
    Array.from({ length: 3 }, () => new Promise<Socket>((resolve) => {
      const socket = connect(Number(url.port), url.hostname, () => resolve(socket))
      socket.on('error', () => {})
    }))
  )
  const busy = await rawExchange(gw.url, 'GET /v1/uploads/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: x\r\n\r\n')
  t.match(busy.reply, /^HTTP\/1\.1 503 /, 'answered 503')
  t.match(busy.reply, /retry-after: 5/i)
  t.match(busy.reply, /connection: close/i)
  t.match(busy.reply, /"code":"GW_BUSY"/)
  t.ok(busy.closed, 'and closed')
  const health = await rawExchange(gw.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(health.reply, /^HTTP\/1\.1 200 /, '/healthz answers over the cap')
  for (const socket of held) socket.destroy()
  // The gateway sees those closes a moment later (bounded: at most 100 tries).
  let after = 503
  for (let i = 0; i < 100 && after === 503; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100))
    after = (await fetch(`${gw.url}/v1/uploads/0123456789abcdef0123456789abcdef`, { headers: { connection: 'close' } })).status
  }
  t.equal(after, 404, 'once connections closed, requests go through again')
})
