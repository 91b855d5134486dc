import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import t, { type Test } from 'tap'
import { openPage, screenshot, startBrowser } from './helpers/browser.ts'
import { startClamd } from './helpers/clamd.ts'
import { startGateway } from './helpers/gateway.ts'

// A page on another origin (another port) uploads to the gateway with tus-js-client's browser
// bundle and a token its backend minted, then long-polls the status: the preflights, and the
// headers the page must read (Location, Upload-Offset, Upload-Status-Url, ETag), only work
// because GW_CORS_ORIGINS names that origin. The same page on an origin not named fails.
const tusBundle = await readFile(createRequire(import.meta.url).resolve('tus-js-client/dist/tus.min.js'), 'utf8')

const page = `<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,"><title>An application on another origin</title>
<script src="/tus.min.js"></script>
<h1>Another origin</h1><p id="result">idle</p>
<script>
  // Upload with tus, then follow the status until a verdict (GET ?wait=25 with If-None-Match).
  async function uploadAndFollow(gateway, token, text, how) {
    const show = (s) => (document.querySelector('#result').textContent = s)
    const auth = { authorization: 'Bearer ' + token }
    const upload = how === 'multipart' ? await multipart(gateway, auth, text) : await new Promise((resolve, reject) => {
      const u = new tus.Upload(new Blob([text], { type: 'text/plain' }), {
        endpoint: gateway + '/v1/tus',
        headers: auth,
        metadata: { filename: 'cross-origin.txt', filetype: 'text/plain' },
        retryDelays: [],
        onError: (err) => reject(new Error(String(err))),
        onSuccess: ({ lastResponse }) => resolve({ url: u.url, statusUrl: lastResponse.getHeader('Upload-Status-Url') })
      })
      u.start()
    })
    show('uploaded: ' + upload.statusUrl)
    let etag = null
    const deadline = Date.now() + 60000
    while (Date.now() < deadline) {
      const res = await fetch(gateway + upload.statusUrl + '?wait=25', { headers: { ...auth, ...(etag ? { 'if-none-match': etag } : {}) } })
      if (res.status === 200) {
        etag = res.headers.get('etag')
        const view = await res.json()
        show(location.origin + ' uploaded ' + view.filename + ' to ' + gateway + ': ' + view.status)
        if (view.status !== 'pending' && view.status !== 'scanning') return { ...upload, etag, view }
      } else if (res.status !== 304) {
        throw new Error('status answered ' + res.status)
      } else {
        await new Promise((r) => setTimeout(r, 300))
      }
    }
    throw new Error('no verdict within 60 s')
  }
  // The README's plain fetch: one multipart POST (with an Idempotency-Key, which must pass the preflight).
  async function multipart(gateway, auth, text) {
    const body = new FormData()
    body.append('file', new Blob([text], { type: 'text/plain' }), 'multipart.txt')
    const res = await fetch(gateway + '/v1/uploads', { method: 'POST', headers: { ...auth, 'idempotency-key': crypto.randomUUID() }, body })
    if (res.status !== 202) throw new Error('upload answered ' + res.status)
    return { url: res.headers.get('location'), statusUrl: (await res.json()).statusUrl }
  }
</script>`

/** The other origin: this page and tus-js-client's bundle, on a port of its own. */
async function startOrigin(t: Test): Promise<string> {
  const server: Server = createServer((req, res) => {
    if (req.url === '/tus.min.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(tusBundle)
    if (req.url === '/') return res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page)
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('no address')
  return `http://127.0.0.1:${address.port}`
}

t.test('a page on an allowed origin uploads with a token and follows its status', async (t) => {
  const clamd = await startClamd()
  t.teardown(() => clamd.stop())
  const allowed = await startOrigin(t)
  const other = await startOrigin(t)
  const uploadKey = randomBytes(16).toString('hex')
  const { url: gateway } = await startGateway(t, {
    GW_CLAMD: clamd.url,
    GW_UPLOAD_KEYS: uploadKey,
    GW_TOKEN_SECRETS: `app:${randomBytes(32).toString('hex')}`,
    GW_CORS_ORIGINS: allowed
  })
  // The application's backend mints the token with its upload key and hands it to its page.
  const mint = async () => {
    const res = await fetch(`${gateway}/v1/upload-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${uploadKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ sub: 'user-42' })
    })
    t.equal(res.status, 201, 'the backend mints a token')
    return ((await res.json()) as { token: string }).token
  }
  const browser = await startBrowser(t)

  const { page, problems } = await openPage(browser)
  t.teardown(() => {
    if (problems.length > 0) console.log(`# browser: ${problems.join('\n# browser: ')}`)
  })
  await page.goto(`${allowed}/`, { timeout: 30_000 })
  const text = `cross-origin ${randomBytes(8).toString('hex')}\n`
  try {
    const result = await page.evaluate(([g, token, body]) => (globalThis as any).uploadAndFollow(g, token, body), [gateway, await mint(), text]) // eslint-disable-line @typescript-eslint/no-explicit-any
    t.match(result.url, new RegExp(`^${gateway}/v1/tus/[0-9a-f]{32}$`), 'Location was readable: the upload URL')
    t.match(result.statusUrl, /^\/v1\/uploads\/[0-9a-f]{32}$/, 'Upload-Status-Url was readable')
    t.equal(result.statusUrl.split('/').pop(), result.url.split('/').pop(), 'the tus id is the upload id')
    t.ok(result.etag, 'ETag was readable')
    t.match(result.view, { status: 'clean', size: Buffer.byteLength(text) })
    const plain = await page.evaluate(([g, token, body]) => (globalThis as any).uploadAndFollow(g, token, body, 'multipart'), [gateway, await mint(), text]) // eslint-disable-line @typescript-eslint/no-explicit-any
    t.equal(plain.url, plain.statusUrl, 'a multipart upload from the page: Location was readable')
    t.match(plain.view, { status: 'clean', filename: 'multipart.txt', size: Buffer.byteLength(text) })
  } finally {
    await screenshot(page, 'browser-cors')
  }

  // The same page on an origin the gateway does not name: the browser refuses to let it read anything.
  const { page: stranger } = await openPage(browser)
  await stranger.goto(`${other}/`, { timeout: 30_000 })
  const refused = await stranger
    .evaluate(([g, token]) => (globalThis as any).uploadAndFollow(g, token, 'x').then(() => 'uploaded', (err: Error) => err.message), [gateway, await mint()]) // eslint-disable-line @typescript-eslint/no-explicit-any
  t.not(refused, 'uploaded', `an origin not in GW_CORS_ORIGINS cannot upload (${refused})`)
})
