import t from 'tap'
import { rateLimitKey } from '../src/http/rate-limits.ts'
import { startGateway } from './helpers/gateway.ts'
import { upload, uniqueContent } from './helpers/multipart.ts'

// Per-minute limits, per caller: 429 GW_RATE_LIMITED with Retry-After, each key on its own count.
const keys = ['first-upload-key-0123', 'second-upload-key-012'] as const
const gw = await startGateway(t, {
  GW_UPLOAD_KEYS: keys.join(','),
  GW_SCAN_CONCURRENCY: '0',
  GW_CLAMD_HEALTH_INTERVAL_MS: '0',
  GW_TOKEN_SECRETS: `k1:${'s'.repeat(40)}`,
  GW_RATE_LIMIT_STATUS_PER_MINUTE: '3',
  GW_RATE_LIMIT_UPLOADS_PER_MINUTE: '2',
  GW_RATE_LIMIT_TOKENS_PER_MINUTE: '4'
})
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
const unknown = 'a'.repeat(32)

async function statuses(key: string, n: number): Promise<Response[]> {
  const out: Response[] = []
  for (let i = 0; i < n; i++) out.push(await fetch(`${gw.url}/v1/uploads/${unknown}`, { headers: bearer(key) }))
  return out
}

t.test('status reads past the limit are refused with Retry-After, each key on its own count', async (t) => {
  const first = await statuses(keys[0], 4)
  t.same(first.map((r) => r.status), [404, 404, 404, 429], 'three reads, then refused')
  const refused = first[3] as Response
  t.match(await refused.json(), { error: { code: 'GW_RATE_LIMITED', message: /at most 3 a minute/ } })
  const retryAfter = Number(refused.headers.get('retry-after'))
  t.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After: ${retryAfter}`)
  t.equal(refused.headers.get('x-ratelimit-remaining'), '0')
  t.same((await statuses(keys[1], 3)).map((r) => r.status), [404, 404, 404], 'the other key has its own count')
  t.equal((await statuses(keys[1], 1))[0]?.status, 429)
})

t.test('uploads have a count of their own', async (t) => {
  const sent = []
  for (let i = 0; i < 3; i++) sent.push(await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) }, bearer(keys[0])))
  t.same(sent.map((s) => s.status), [202, 202, 429], 'two uploads, then refused (status reads counted apart)')
  t.equal(sent[2]?.json.error.code, 'GW_RATE_LIMITED')
  t.ok(Number(sent[2]?.headers['retry-after']) > 0)
  t.equal((await gw.gateway.state.getUpload(sent[0]?.json.id))?.status, 'pending')
})

t.test('tokens minted count per key; uploads with tokens count per end user (sub), not per token', async (t) => {
  const mint = (body: object) =>
    fetch(`${gw.url}/v1/upload-tokens`, { method: 'POST', headers: { ...bearer(keys[1]), 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const minted = []
  for (const sub of ['ann', 'ann', 'bob', 'bob', 'cy']) minted.push(await mint({ sub, maxUploads: 5 }))
  t.same(minted.map((r) => r.status), [201, 201, 201, 201, 429], 'four a minute for this key')
  t.match(await (minted[4] as Response).json(), { error: { code: 'GW_RATE_LIMITED' } })
  const [ann1, ann2, bob] = await Promise.all(minted.slice(0, 3).map(async (r) => (await r.json()).token as string))
  const send = (token: string) => upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) }, bearer(token))
  t.same([(await send(ann1!)).status, (await send(ann2!)).status, (await send(ann1!)).status], [202, 202, 429], "ann's two tokens share her count")
  t.equal((await send(bob!)).status, 202, 'bob counts on his own')
})

t.test('who is counted: a token by its subject (else itself), a key by its id, anyone else by address', async (t) => {
  const token = { kind: 'token', jti: 'j1', sub: 'user-7', maxSize: null, types: null, maxUploads: 1, meta: null, expiresAt: 0 } as const
  t.equal(rateLimitKey(token, '10.0.0.1'), 'sub:user-7')
  t.equal(rateLimitKey({ ...token, sub: null }, '10.0.0.1'), 'jti:j1')
  t.equal(rateLimitKey({ kind: 'key', role: 'upload', keyId: 'key-abc' }, '10.0.0.1'), 'key-abc')
  t.equal(rateLimitKey({ kind: 'anonymous' }, '10.0.0.1'), 'addr:10.0.0.1')
  t.equal(rateLimitKey(null, '::1'), 'addr:::1')
})
