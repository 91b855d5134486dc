import { readFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createRequire } from 'node:module'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import t from 'tap'
import { startGateway } from './helpers/gateway.ts'

// The demo's routes without a browser: the page and its assets as shipped, the token route's
// answer, and its refusals. test/browser-demo.test.ts drives the page itself in Chromium.
const secrets = `demo:${'d'.repeat(40)}`
const uppyDist = (name: string) => readFile(createRequire(import.meta.url).resolve(`uppy/dist/${name}`), 'utf8')

/** A POST with a Host header of our choosing (fetch does not allow setting it). */
function postWithHost(url: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = request(url, { method: 'POST', headers: { host }, timeout: 5_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (s: string) => (body += s))
      res.on('end', () => done({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')))
    req.on('error', fail)
    req.end()
  })
}

t.test('GW_DEMO=true: the page, its assets and a token', async (t) => {
  const { url } = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_DEMO: 'true', GW_TOKEN_SECRETS: secrets, GW_UPLOAD_KEYS: 'u'.repeat(16) })

  const page = await fetch(`${url}/demo`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.match(page.headers.get('content-security-policy'), /default-src 'self'/, 'no script from elsewhere')
  const html = await page.text()
  for (const asset of ['uppy.min.js', 'uppy.min.css', 'demo.js', 'demo.css']) t.match(html, `/demo/assets/${asset}`, `the page loads ${asset} from the gateway`)
  t.notMatch(html, /https?:\/\//, 'no CDN')

  const uppy = await fetch(`${url}/demo/assets/uppy.min.js`)
  t.match(uppy.headers.get('content-type'), /^text\/javascript/)
  t.equal(await uppy.text(), await uppyDist('uppy.min.js'), "Uppy's bundled build, as installed")
  const css = await fetch(`${url}/demo/assets/uppy.min.css`)
  t.match(css.headers.get('content-type'), /^text\/css/)
  t.equal(await css.text(), await uppyDist('uppy.min.css'))
  t.equal((await fetch(`${url}/demo/assets/demo.js`)).status, 200)
  t.equal((await fetch(`${url}/demo/assets/..%2Fpackage.json`)).status, 400, 'only the listed assets')
  t.equal((await fetch(`${url}/demo/assets/index.ts`)).status, 400)

  const minted = await fetch(`${url}/demo/token`, { method: 'POST' })
  t.equal(minted.status, 201)
  const { token, expiresAt } = (await minted.json()) as { token: string; expiresAt: string }
  t.equal(decodeProtectedHeader(token).kid, 'demo')
  t.match(decodeJwt(token), { sub: 'demo', max_uploads: 1, aud: 'upload-gateway' })
  const ttl = Date.parse(expiresAt) - Date.now()
  t.ok(ttl > 590_000 && ttl <= 600_000, `lives ten minutes (${ttl} ms)`)
  const status = await fetch(`${url}/v1/uploads/${'0'.repeat(32)}`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(status.status, 404, 'the gateway accepts the token (an unknown upload, not a refused token)')

  const rebound = await postWithHost(`${url}/demo/token`, 'evil.example:8080')
  t.equal(rebound.status, 403, 'a name other than a loopback one in Host is refused (DNS rebinding)')
  t.match(JSON.parse(rebound.body), { error: { code: 'GW_FORBIDDEN' } })
  t.equal((await postWithHost(`${url}/demo/token`, 'localhost:8080')).status, 201)
})

t.test('without GW_DEMO there is no demo', async (t) => {
  const { url } = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_TOKEN_SECRETS: secrets })
  t.equal((await fetch(`${url}/demo`)).status, 404)
  t.equal((await fetch(`${url}/demo/assets/uppy.min.js`)).status, 404)
  t.equal((await fetch(`${url}/demo/token`, { method: 'POST' })).status, 404)
})

t.test('POST /demo/token counts against GW_RATE_LIMIT_TOKENS_PER_MINUTE', async (t) => {
  const { url } = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_DEMO: 'true', GW_TOKEN_SECRETS: secrets, GW_RATE_LIMIT_TOKENS_PER_MINUTE: '2' })
  const mint = () => fetch(`${url}/demo/token`, { method: 'POST' })
  t.equal((await mint()).status, 201)
  t.equal((await mint()).status, 201)
  const limited = await mint()
  t.equal(limited.status, 429)
  t.ok(Number(limited.headers.get('retry-after')) > 0, 'with Retry-After')
  t.match(await limited.json(), { error: { code: 'GW_RATE_LIMITED' } })
})
