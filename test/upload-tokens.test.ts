import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeJwt, decodeProtectedHeader, SignJWT, type JWTPayload } from 'jose'
import t from 'tap'
import { startGateway, type RunningGateway } from './helpers/gateway.ts'
import { upload, uniqueContent, type Sent } from './helpers/multipart.ts'
import { freshSchema, pgUrl } from './helpers/postgres.ts'

// Upload tokens over HTTP: verification (algorithm, kid, claims), what a token may do, minting, and
// its uses counted in the state store (SQLite, and PostgreSQL for the race).

const uploader = 'upload-key-for-token-tests'
const admin = 'admin-key-for-token-tests-1'
const secrets = { k2: 'new-secret-'.padEnd(40, 'n'), k1: 'old-secret-'.padEnd(40, 'o') }
const audience = 'upload-gateway'
const now = (): number => Math.floor(Date.now() / 1000)
const keyed = (key: string) => ({ authorization: `Bearer ${key}` })

/** A token as an application backend signs it, with any claims (default: valid for 10 minutes). */
async function sign(claims: JWTPayload = {}, { kid = 'k2', secret = secrets.k2, alg = 'HS256' }: { kid?: string; secret?: string; alg?: string } = {}): Promise<string> {
  const iat = now()
  const payload = { aud: audience, iat, exp: iat + 600, jti: randomUUID(), ...claims }
  return new SignJWT(payload).setProtectedHeader({ alg, kid }).sign(new TextEncoder().encode(secret))
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const file = (size: number) => ({ name: 'file', filename: 'a.bin', data: uniqueContent(size) })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const status = (gw: RunningGateway, id: string, headers: Record<string, string>) => fetch(`${gw.url}/v1/uploads/${id}`, { headers })
const mint = (gw: RunningGateway, body: unknown, headers: Record<string, string> = keyed(uploader)) =>
  fetch(`${gw.url}/v1/upload-tokens`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })
const code = async (res: Response | Sent): Promise<[number, string]> => {
  const json = 'json' in res && typeof res.json !== 'function' ? res.json : await (res as Response).json()
  return [res.status, json?.error?.code]
}

t.test('tokens with keys, rotation and limits', async (t) => {
  const gw = await startGateway(t, {
    GW_SCAN_CONCURRENCY: '0',
    GW_UPLOAD_KEYS: uploader,
    GW_ADMIN_KEYS: admin,
    GW_TOKEN_SECRETS: `k2:${secrets.k2},k1:${secrets.k1}`,
    GW_MAX_UPLOAD_BYTES: '65536',
    GW_TOKEN_READ_TTL: '30m'
  })

  t.test('a valid token uploads, and reads its upload with sub and meta', async (t) => {
    const token = await sign({ sub: 'user-42', meta: { orderId: 7 } })
    const res = await upload(gw.url, file(1000), bearer(token))
    t.equal(res.status, 202)
    const got = await status(gw, res.json.id, bearer(token))
    t.equal(got.status, 200)
    t.match(await got.json(), { id: res.json.id, status: 'pending', sub: 'user-42', meta: { orderId: 7 } })
    t.match((await gw.gateway.state.getUpload(res.json.id))?.owner, { tokenId: decodeJwt(token).jti, subject: 'user-42', meta: { orderId: 7 } })
    const byKey = await (await status(gw, res.json.id, keyed(uploader))).json()
    t.match(byKey, { sub: 'user-42', meta: { orderId: 7 } }, 'the application reads it with its key')
    const keyUpload = await upload(gw.url, file(10), keyed(uploader))
    t.notOk('meta' in (await (await status(gw, keyUpload.json.id, keyed(uploader))).json()), 'no owner fields on uploads made with a key')
  })

  t.test('invalid tokens are 401 GW_TOKEN_INVALID, expired ones GW_TOKEN_EXPIRED', async (t) => {
    const valid = await sign()
    const [head, , sig] = valid.split('.')
    const cases: [string, string | Promise<string>, string][] = [
      ['expired beyond the 30 s skew', sign({ iat: now() - 700, exp: now() - 31 }), 'GW_TOKEN_EXPIRED'],
      ['wrong audience', sign({ aud: 'another-service' }), 'GW_TOKEN_INVALID'],
      ['no audience', sign({ aud: undefined }), 'GW_TOKEN_INVALID'],
      ['alg none', `${b64({ alg: 'none', kid: 'k2' })}.${b64({ aud: audience, iat: now(), exp: now() + 60, jti: 'x' })}.`, 'GW_TOKEN_INVALID'],
      ['another algorithm (HS512) with the right secret', sign({}, { alg: 'HS512' }), 'GW_TOKEN_INVALID'],
      ['tampered payload', `${head}.${b64({ ...decodeJwt(valid), max_uploads: 100 })}.${sig}`, 'GW_TOKEN_INVALID'],
      ['bad signature', `${head}.${valid.split('.')[1]}.${randomBytes(32).toString('base64url')}`, 'GW_TOKEN_INVALID'],
      ['unknown kid', sign({}, { kid: 'k9', secret: 'k9-secret'.padEnd(40, 'x') }), 'GW_TOKEN_INVALID'],
      ['no kid', new SignJWT({ aud: audience, iat: now(), exp: now() + 60, jti: 'x' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secrets.k2)), 'GW_TOKEN_INVALID'],
      ['malformed', 'abc.def.ghi', 'GW_TOKEN_INVALID'],
      ['malformed: two segments', 'abc.def', 'GW_TOKEN_INVALID'],
      ['malformed: base64 padding', `${head}.${valid.split('.')[1]}=.${sig}`, 'GW_TOKEN_INVALID'],
      ['no jti', sign({ jti: undefined }), 'GW_TOKEN_INVALID'],
      ['no exp', sign({ exp: undefined }), 'GW_TOKEN_INVALID'],
      ['lives longer than an hour', sign({ exp: now() + 3601 }), 'GW_TOKEN_INVALID'],
      ['max_size above GW_MAX_UPLOAD_BYTES', sign({ max_size: 65537 }), 'GW_TOKEN_INVALID'],
      ['meta not an object', sign({ meta: [1, 2] }), 'GW_TOKEN_INVALID'],
      ['meta over 1 KiB', sign({ meta: { note: 'x'.repeat(1020) } }), 'GW_TOKEN_INVALID'],
      ['max_uploads of 0', sign({ max_uploads: 0 }), 'GW_TOKEN_INVALID']
    ]
    for (const [name, token, expected] of cases) {
      const res = await upload(gw.url, file(10), bearer(await token))
      t.same(await code(res), [401, expected], name)
      if (expected === 'GW_TOKEN_INVALID') t.match(res.headers['www-authenticate'], /invalid_token/)
    }
    t.equal((await upload(gw.url, file(10), bearer(await sign({ iat: now() - 600, exp: now() - 10 })))).status, 202, 'expired within the skew: accepted')
  })

  t.test('rotation: the first kid signs, an older one verifies while it is listed', async (t) => {
    const res = await mint(gw, {})
    t.equal(res.status, 201)
    t.equal(decodeProtectedHeader((await res.json()).token).kid, 'k2')
    t.equal((await upload(gw.url, file(10), bearer(await sign({}, { kid: 'k1', secret: secrets.k1 })))).status, 202, 'k1 still verifies')
    t.same(await code(await upload(gw.url, file(10), bearer(await sign({}, { kid: 'k1', secret: secrets.k2 })))), [401, 'GW_TOKEN_INVALID'], 'each kid has its own secret')
  })

  t.test('max_size: 413 above it; the refused upload gives its use back', async (t) => {
    const token = await sign({ max_size: 1000 })
    t.same(await code(await upload(gw.url, file(1001), bearer(token))), [413, 'GW_PAYLOAD_TOO_LARGE'])
    t.equal((await upload(gw.url, file(1000), bearer(token))).status, 202, 'at the limit, with the one use it has')
    t.same(await code(await upload(gw.url, file(10), bearer(token))), [403, 'GW_TOKEN_EXHAUSTED'])
  })

  t.test('max_uploads: default 1, counted by jti', async (t) => {
    const token = await sign({ max_uploads: 2 })
    t.equal((await upload(gw.url, file(10), bearer(token))).status, 202)
    t.equal((await upload(gw.url, file(10), bearer(token))).status, 202)
    t.same(await code(await upload(gw.url, file(10), bearer(token))), [403, 'GW_TOKEN_EXHAUSTED'])
    const once = await sign()
    t.equal((await upload(gw.url, file(10), bearer(once))).status, 202)
    t.same(await code(await upload(gw.url, file(10), bearer(once))), [403, 'GW_TOKEN_EXHAUSTED'], 'one upload by default')
  })

  t.test('two concurrent uploads with a max_uploads=1 token (SQLite): exactly one 202', async (t) => {
    const token = await sign()
    const results = await Promise.all([upload(gw.url, file(30_000), bearer(token)), upload(gw.url, file(30_000), bearer(token))])
    t.same(results.map((r) => r.status).sort(), [202, 403])
  })

  t.test('a token reads only its own uploads; never admin routes nor scan history', async (t) => {
    const [a, b] = [await sign(), await sign()]
    const res = await upload(gw.url, file(10), bearer(a))
    t.same(await code(await status(gw, res.json.id, bearer(b))), [403, 'GW_FORBIDDEN'], "another token's upload")
    const keyUpload = await upload(gw.url, file(10), keyed(uploader))
    t.same(await code(await status(gw, keyUpload.json.id, bearer(a))), [403, 'GW_FORBIDDEN'], 'an upload made with a key')
    t.same(await code(await fetch(`${gw.url}/v1/audit`, { headers: bearer(a) })), [403, 'GW_FORBIDDEN'], 'admin route')
    t.same(await code(await fetch(`${gw.url}/v1/rescans`, { method: 'POST', body: '{"scope":{"all":true}}', headers: { ...bearer(a), 'content-type': 'application/json' } })), [403, 'GW_FORBIDDEN'])
    t.same(await code(await fetch(`${gw.url}/v1/uploads/${res.json.id}/scans`, { headers: bearer(a) })), [403, 'GW_FORBIDDEN'], 'scan history')
    t.equal((await fetch(`${gw.url}/v1/audit`, { headers: keyed(admin) })).status, 200, 'admin keys keep working')
  })

  t.test('an expired token reads its uploads for GW_TOKEN_READ_TTL after each was created', async (t) => {
    // Signed 70 minutes ago for an hour: expired 10 minutes ago. Its uploads are written as it made them.
    const token = await sign({ iat: now() - 4200, exp: now() - 600 })
    const owner = { tokenId: String(decodeJwt(token).jti), subject: null, meta: { n: 1 } }
    const made = async (minutesAgo: number): Promise<string> => {
      const id = randomBytes(16).toString('hex')
      await gw.gateway.state.insertUpload({ id, objectKey: id, size: 1, sha256: 'a'.repeat(64), filename: null, contentType: 'text/plain', createdAt: Date.now() - minutesAgo * 60_000, owner })
      return id
    }
    const recent = await made(20)
    t.equal((await status(gw, recent, bearer(token))).status, 200, 'created 20 minutes ago: within the 30 minute read TTL')
    t.same(await code(await status(gw, await made(40), bearer(token))), [401, 'GW_TOKEN_EXPIRED'], 'created 40 minutes ago: past it')
    t.same(await code(await upload(gw.url, file(10), bearer(token))), [401, 'GW_TOKEN_EXPIRED'], 'it uploads no more')
    const forged = await sign({ iat: now() - 4200, exp: now() - 600, jti: owner.tokenId }, { kid: 'k1', secret: secrets.k2 })
    t.same(await code(await status(gw, recent, bearer(forged))), [401, 'GW_TOKEN_INVALID'], 'the signature is still checked')
  })

  t.test('minting: 201 with an upload or admin key, 400 beyond the limits, 403 with a token', async (t) => {
    const res = await mint(gw, { sub: 'user-1', maxSize: 5000, maxUploads: 3, meta: { a: 1 }, ttlSeconds: 120, unknown: 'dropped' })
    t.equal(res.status, 201)
    const { token, expiresAt } = await res.json()
    const claims = decodeJwt(token)
    t.match(claims, { aud: audience, sub: 'user-1', max_size: 5000, max_uploads: 3, meta: { a: 1 } })
    t.equal((claims.exp as number) - (claims.iat as number), 120)
    t.equal(Date.parse(expiresAt), (claims.exp as number) * 1000)
    t.notOk('unknown' in claims)
    const byDefault = decodeJwt((await (await mint(gw, {}, keyed(admin))).json()).token)
    t.equal((byDefault.exp as number) - (byDefault.iat as number), 900, 'an admin key mints too; 15 minutes by default')
    t.notOk('max_uploads' in byDefault, 'max_uploads absent: 1')
    t.equal((await upload(gw.url, file(10), bearer(token))).status, 202, 'a minted token uploads')
    for (const [body, why] of [
      [{ maxSize: 65537 }, 'maxSize above GW_MAX_UPLOAD_BYTES'],
      [{ ttlSeconds: 3601 }, 'ttlSeconds above an hour'],
      [{ meta: { note: 'x'.repeat(1100) } }, 'meta over 1 KiB'],
      [{ meta: 'text' }, 'meta not an object'],
      [{ types: ['not a type'] }, 'a malformed type'],
      [{ maxUploads: 0 }, 'maxUploads of 0']
    ] as const) t.same(await code(await mint(gw, body)), [400, 'GW_BAD_REQUEST'], why)
    t.same(await code(await mint(gw, {}, bearer(token))), [403, 'GW_FORBIDDEN'], 'a token mints no tokens')
    t.same(await code(await mint(gw, {}, {})), [401, 'GW_UNAUTHORIZED'])
  })
})

t.test('anonymous uploads (loopback, no upload keys) still verify a presented token; a removed kid is invalid', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_TOKEN_SECRETS: `k2:${secrets.k2}` })
  t.equal((await upload(gw.url, file(10))).status, 202, 'no credentials: anonymous')
  t.same(await code(await upload(gw.url, file(10), bearer(await sign({ aud: 'x' })))), [401, 'GW_TOKEN_INVALID'], 'an invalid token is refused')
  t.same(await code(await upload(gw.url, file(10), bearer(await sign({}, { kid: 'k1', secret: secrets.k1 })))), [401, 'GW_TOKEN_INVALID'], 'k1 was removed')
  const token = await sign({ sub: 'visitor' })
  const res = await upload(gw.url, file(10), bearer(token))
  t.equal(res.status, 202)
  t.match(await (await status(gw, res.json.id, bearer(token))).json(), { sub: 'visitor' }, 'a valid one owns its upload')
})

t.test('types outside GW_ALLOWED_TYPES are refused when minting and in a token', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_KEYS: uploader, GW_TOKEN_SECRETS: `k2:${secrets.k2}`, GW_ALLOWED_TYPES: 'image/*,application/pdf' })
  t.equal((await mint(gw, { types: ['image/png', 'application/pdf', 'image/*'] })).status, 201)
  for (const types of [['text/html'], ['image/svg+xml'], ['application/zip', 'image/png'], ['*/*']]) {
    t.same(await code(await mint(gw, { types })), [400, 'GW_BAD_REQUEST'], types.join(','))
  }
  t.same(await code(await upload(gw.url, file(10), bearer(await sign({ types: ['text/html'] })))), [401, 'GW_TOKEN_INVALID'], 'a signed token is held to the same list')
})

t.test('a gateway without GW_TOKEN_SECRETS accepts no token and mints none', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_KEYS: uploader })
  t.same(await code(await upload(gw.url, file(10), bearer(await sign()))), [401, 'GW_TOKEN_INVALID'])
  t.same(await code(await mint(gw, {})), [404, 'GW_NOT_FOUND'])
  t.equal((await upload(gw.url, file(10), keyed(uploader))).status, 202, 'static keys work as before')
})

t.test('two concurrent uploads with a max_uploads=1 token (PostgreSQL): exactly one 202', async (t) => {
  const gw = await startGateway(t, {
    GW_SCAN_CONCURRENCY: '0',
    GW_UPLOAD_KEYS: uploader,
    GW_TOKEN_SECRETS: `k2:${secrets.k2}`,
    GW_DATABASE_URL: pgUrl,
    GW_DATABASE_SCHEMA: await freshSchema(t)
  })
  for (let round = 0; round < 3; round++) {
    const token = await sign()
    const results = await Promise.all([upload(gw.url, file(30_000), bearer(token)), upload(gw.url, file(30_000), bearer(token))])
    t.same(results.map((r) => r.status).sort(), [202, 403], `round ${round}`)
    t.equal(results.find((r) => r.status === 403)?.json.error.code, 'GW_TOKEN_EXHAUSTED')
  }
})

t.test("the README's minting snippets (Node and Python) make tokens the gateway accepts", async (t) => {
  const secret = 'readme-secret-'.padEnd(48, 'r')
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_KEYS: uploader, GW_TOKEN_SECRETS: `2026-12:${secret}` })
  const readme = await readFile(join(import.meta.dirname, '../README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('### Upload tokens'))
  const block = (lang: string): string => {
    const match = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(section)
    if (!match?.[1]) throw new Error(`no ${lang} block in the README's Upload tokens section`)
    return match[1]
  }
  const python = `${block('python')}\nprint(upload_token("2026-12", ${JSON.stringify(secret)}, sub="user-42", max_size=1000, meta={"orderId": 7}))\n`
  const fromPython = (await run('python3', ['-c', python], {})).trim()
  // Beside the tests, so that `jose` resolves from the project's node_modules.
  const script = join(import.meta.dirname, `.readme-mint-${randomBytes(4).toString('hex')}.mjs`)
  await writeFile(script, `${block('js')}\nconsole.log(await uploadToken({ sub: 'user-42', maxSize: 1000, meta: { orderId: 7 } }))\n`)
  t.teardown(() => rm(script, { force: true }))
  const fromNode = (await run(process.execPath, [script], { UPLOAD_TOKEN_SECRET: secret })).trim()
  for (const [name, token] of [['python', fromPython], ['node', fromNode]] as const) {
    t.match(decodeJwt(token), { aud: audience, sub: 'user-42', max_size: 1000, max_uploads: 1, meta: { orderId: 7 } }, name)
    t.equal(decodeProtectedHeader(token).kid, '2026-12')
    t.same(await code(await upload(gw.url, file(1001), bearer(token))), [413, 'GW_PAYLOAD_TOO_LARGE'], `${name}: its max_size holds`)
    const res = await upload(gw.url, file(1000), bearer(token))
    t.equal(res.status, 202, `${name}: accepted`)
    t.match(await (await status(gw, res.json.id, bearer(token))).json(), { sub: 'user-42', meta: { orderId: 7 } })
  }
})

function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env: { ...process.env, ...env }, timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${command}: ${stderr || err.message}`)) : resolve(stdout)))
  })
}
