import { randomUUID } from 'node:crypto'
import { SignJWT, type JWTPayload } from 'jose'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { uniqueContent } from './helpers/multipart.ts'
import { tusUpload } from './helpers/tus.ts'

// tus with upload tokens: limits at creation, a token's own uploads only, and an upload resumed
// after its token expired (within GW_TOKEN_READ_TTL).
const secret = 'tus-token-secret-'.padEnd(40, 's')
const KEY = 'tus-token-test-upload-key-0123456789'
const now = (): number => Math.floor(Date.now() / 1000)
const sign = (claims: JWTPayload = {}): Promise<string> => {
  const iat = now()
  return new SignJWT({ aud: 'upload-gateway', iat, exp: iat + 600, jti: randomUUID(), ...claims }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(secret))
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_UPLOAD_KEYS: KEY, GW_TOKEN_SECRETS: `k1:${secret}`, GW_TOKEN_READ_TTL: '30m', GW_MAX_UPLOAD_BYTES: String(1024 * 1024) })
const endpoint = `${gw.url}/v1/tus`
const create = (headers: Record<string, string>, length: number) =>
  fetch(endpoint, { method: 'POST', headers: { 'tus-resumable': '1.0.0', 'upload-length': String(length), ...headers } })
const codeOf = async (res: Response): Promise<[number, string]> => [res.status, ((await res.json()) as { error: { code: string } }).error.code]

t.test('an upload resumed after its token expired still completes, and belongs to that token', async (t) => {
  // Valid for a few seconds more (exp is 25 s ago; 30 s of clock skew are allowed).
  const token = await sign({ sub: 'user-7', meta: { order: 1 }, iat: now() - 60, exp: now() - 25 })
  const content = uniqueContent(512 * 1024)
  const first = await tusUpload(endpoint, content, { headers: bearer(token), chunkSize: 128 * 1024, abortAt: content.length / 2 })
  const id = first.url.split('/').pop() ?? ''
  await new Promise((r) => setTimeout(r, 6500))
  t.same(await codeOf(await create(bearer(token), 10)), [401, 'GW_TOKEN_EXPIRED'], 'the expired token creates nothing more')
  const done = await tusUpload(endpoint, content, { headers: bearer(token), chunkSize: 128 * 1024, uploadUrl: first.url })
  t.ok(done.resumedAt !== null && done.resumedAt > 0, `resumed from ${done.resumedAt}`)
  t.equal(done.statusUrl, `/v1/uploads/${id}`)
  const status = await waitForStatus(gw.url, id, ['clean', 'infected', 'unscannable', 'failed'], { headers: bearer(token) })
  t.match(status, { status: 'clean', size: content.length, sub: 'user-7', meta: { order: 1 } })
})

t.test("a token's limits hold at creation; another token's upload is 403", async (t) => {
  t.same(await codeOf(await create(bearer(await sign({ max_size: 1000 })), 1001)), [413, 'GW_PAYLOAD_TOO_LARGE'], 'max_size')
  const once = await sign({ max_uploads: 1 })
  const created = await create(bearer(once), 100)
  t.equal(created.status, 201)
  t.same(await codeOf(await create(bearer(once), 100)), [403, 'GW_TOKEN_EXHAUSTED'], 'max_uploads counts tus creations')
  const url = `${gw.url}${created.headers.get('location')}`
  const other = await fetch(url, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0', ...bearer(await sign()) } })
  t.equal(other.status, 403, "another token cannot read or resume it")
  const stranger = bearer(await sign())
  const patch = await fetch(url, { method: 'PATCH', headers: { 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', ...stranger }, body: new Uint8Array(100) })
  t.equal(patch.status, 403, 'another token cannot write to it')
  const del = await fetch(url, { method: 'DELETE', headers: { 'tus-resumable': '1.0.0', ...stranger } })
  t.equal(del.status, 403, 'another token cannot terminate it')
  const byKey = await fetch(url, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0', ...bearer(KEY) } })
  t.equal(byKey.status, 200, 'the application key can')
  t.match(byKey.headers.get('upload-metadata'), /gateway-owner /, 'the owner is kept by the gateway')
  const forged = await create({ ...bearer(KEY), 'upload-metadata': `gateway-owner ${Buffer.from('{"tokenId":"x"}').toString('base64')}` }, 10)
  const head = await fetch(`${gw.url}${forged.headers.get('location')}`, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0', ...bearer(KEY) } })
  t.notMatch(head.headers.get('upload-metadata') ?? '', /gateway-owner/, "a client's own owner metadata is dropped")
})
