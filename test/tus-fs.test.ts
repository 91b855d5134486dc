import { createHash } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { StateUnavailableError } from '../src/ports/state-database.ts'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { eicar, uniqueContent } from './helpers/multipart.ts'
import { tusUpload } from './helpers/tus.ts'
import { typedFiles } from './helpers/typed-files.ts'

// tus on the embedded defaults (fs object store, SQLite) with a real clamd and tus-js-client.
const KEY = 'tus-test-upload-key-0123456789abcdef'
const ORIGIN = 'http://app.example'
const auth = { authorization: `Bearer ${KEY}` }
const tusHeaders = { ...auth, 'tus-resumable': '1.0.0' }
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_UPLOAD_KEYS: KEY, GW_CORS_ORIGINS: ORIGIN, GW_ALLOWED_TYPES: 'application/octet-stream,application/pdf', GW_MAX_UPLOAD_BYTES: String(4 * 1024 * 1024) })
const endpoint = `${gw.url}/v1/tus`
const quarantine = join(gw.dir, 'objects', 'quarantine')
const exists = (path: string) => stat(path).then(() => true, () => false)
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')
const idOf = (url: string) => url.split('/').pop() ?? ''

async function create(length: number, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(endpoint, { method: 'POST', headers: { ...tusHeaders, 'upload-length': String(length), ...headers } })
}

t.test('an upload interrupted at half and resumed from its offset ends clean with the right SHA-256', async (t) => {
  const content = uniqueContent(1024 * 1024)
  const first = await tusUpload(endpoint, content, { headers: auth, chunkSize: 256 * 1024, abortAt: content.length / 2, metadata: { filename: 'dir/cv.pdf', filetype: 'application/pdf' } })
  const id = idOf(first.url)
  t.match(id, /^[0-9a-f]{32}$/, 'the tus id is a gateway upload id')
  const done = await tusUpload(endpoint, content, { headers: auth, chunkSize: 256 * 1024, uploadUrl: first.url })
  t.ok(done.resumedAt !== null && done.resumedAt > 0 && done.resumedAt < content.length, `resumed from offset ${done.resumedAt}`)
  t.equal(done.statusUrl, `/v1/uploads/${id}`, 'the final PATCH names the status URL')
  const status = await waitForStatus(gw.url, id, ['clean', 'infected', 'unscannable', 'failed'], { headers: auth })
  t.match(status, { status: 'clean', size: content.length, sha256: sha256(content), filename: 'cv.pdf' })
  t.notOk(await exists(join(quarantine, `${id}.info`)), 'the tus info file is removed')
})

t.test('EICAR over tus ends infected', async (t) => {
  const done = await tusUpload(endpoint, Buffer.concat([uniqueContent(2000), eicar]), { headers: auth })
  const status = await waitForStatus(gw.url, idOf(done.url), ['clean', 'infected', 'unscannable', 'failed'], { headers: auth })
  t.match(status, { status: 'infected', verdict: { signature: 'Win.Test.EICAR_HDB-1.UNOFFICIAL' } })
})

t.test('creation-with-upload: the whole file in the POST is answered 201 with its status URL, then scanned', async (t) => {
  const content = uniqueContent(64 * 1024)
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { ...tusHeaders, origin: ORIGIN, 'upload-length': String(content.length), 'content-type': 'application/offset+octet-stream' },
    body: new Uint8Array(content)
  })
  t.equal(res.status, 201, await res.clone().text())
  const id = idOf(res.headers.get('location') ?? '')
  t.match(id, /^[0-9a-f]{32}$/, 'Location names the upload')
  t.equal(res.headers.get('upload-offset'), String(content.length))
  t.equal(res.headers.get('upload-status-url'), `/v1/uploads/${id}`)
  t.match(res.headers.get('access-control-expose-headers') ?? '', /Retry-After/i, 'a page can read Retry-After on tus answers')
  const status = await waitForStatus(gw.url, id, ['clean', 'infected', 'unscannable', 'failed'], { headers: auth })
  t.match(status, { status: 'clean', size: content.length, sha256: sha256(content) })
  t.notOk(await exists(join(quarantine, `${id}.info`)), 'the tus info file is removed once the answer is written')
})

t.test('a complete upload of a type that is not allowed ends rejected and stays in quarantine', async (t) => {
  const done = await tusUpload(endpoint, typedFiles.elf(), { headers: auth, metadata: { filename: 'photo.jpg', filetype: 'image/jpeg' } })
  const id = idOf(done.url)
  t.equal(done.statusUrl, `/v1/uploads/${id}`)
  const status = await waitForStatus(gw.url, id, ['rejected', 'clean', 'infected'], { headers: auth })
  t.match(status, { status: 'rejected', contentType: 'application/x-elf', verdict: { result: 'rejected', reason: /application\/x-elf/ } })
  t.ok(await exists(join(quarantine, id)), 'kept in quarantine')
  t.notOk(await exists(join(quarantine, `${id}.info`)))
})

t.test('refusals: no credentials, deferred length, over the size limit, GET', async (t) => {
  const anonymous = await fetch(endpoint, { method: 'POST', headers: { 'tus-resumable': '1.0.0', 'upload-length': '10' } })
  t.equal(anonymous.status, 401)
  const deferred = await fetch(endpoint, { method: 'POST', headers: { ...tusHeaders, 'upload-defer-length': '1' } })
  t.equal(deferred.status, 400)
  t.match(await deferred.json(), { error: { code: 'GW_BAD_REQUEST', message: /Upload-Length is required/ } })
  const tooLarge = await create(4 * 1024 * 1024 + 1)
  t.equal(tooLarge.status, 413)
  t.match(await tooLarge.json(), { error: { code: 'GW_PAYLOAD_TOO_LARGE' } })
  const created = await create(10)
  t.equal(created.status, 201)
  const got = await fetch(`${gw.url}${created.headers.get('location')}`, { headers: auth })
  t.equal(got.status, 405)
  t.match(await got.json(), { error: { code: 'GW_METHOD_NOT_ALLOWED' } })
})

t.test('HEAD echoes the offset; DELETE terminates and the sweeper removes what is left', async (t) => {
  const created = await create(100, { 'upload-metadata': `filename ${Buffer.from('a.txt').toString('base64')}` })
  const url = `${gw.url}${created.headers.get('location')}`
  const id = idOf(url)
  const patched = await fetch(url, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(uniqueContent(40)) })
  t.equal(patched.status, 204)
  t.equal(patched.headers.get('upload-offset'), '40')
  t.ok(patched.headers.get('upload-expires'), 'the expiry is announced')
  const head = await fetch(url, { method: 'HEAD', headers: tusHeaders })
  t.equal(head.status, 200)
  t.equal(head.headers.get('upload-offset'), '40')
  t.equal(head.headers.get('upload-length'), '100')
  t.match(head.headers.get('upload-metadata'), /filename /)
  t.ok(await exists(join(quarantine, id)))
  const deleted = await fetch(url, { method: 'DELETE', headers: tusHeaders })
  t.equal(deleted.status, 204)
  t.equal((await fetch(url, { method: 'HEAD', headers: tusHeaders })).status, 404)
  t.notOk(await exists(join(quarantine, id)), 'its file is gone')
  t.notOk(await exists(join(quarantine, `${id}.info`)), 'its info is gone')
})

t.test('a final PATCH whose record could not be written is recorded at the next HEAD', async (t) => {
  const state = gw.gateway.state
  const commit = state.commitUpload
  state.commitUpload = async () => {
    state.commitUpload = commit
    throw new StateUnavailableError('state store down (test)')
  }
  t.teardown(() => {
    state.commitUpload = commit
  })
  const created = await create(50)
  const url = `${gw.url}${created.headers.get('location')}`
  const content = uniqueContent(50)
  const patched = await fetch(url, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(content) })
  t.equal(patched.status, 503)
  t.match(await patched.json(), { error: { code: 'GW_STATE_UNAVAILABLE' } })
  const head = await fetch(url, { method: 'HEAD', headers: tusHeaders })
  t.equal(head.status, 200)
  t.equal(head.headers.get('upload-offset'), '50', 'complete, as a client resuming sees it')
  const status = await waitForStatus(gw.url, idOf(url), ['clean', 'infected', 'unscannable', 'failed'], { headers: auth })
  t.match(status, { status: 'clean', size: 50, sha256: sha256(content) })
})

t.test('CORS: a preflight needs no credentials; tus answers carry the CORS headers', async (t) => {
  const created = await create(5, { origin: ORIGIN })
  for (const [url, method] of [[endpoint, 'POST'], [`${gw.url}${created.headers.get('location')}`, 'PATCH']] as const) {
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': method, 'access-control-request-headers': 'authorization, tus-resumable, upload-offset, upload-length, upload-metadata, content-type' }
    })
    t.equal(preflight.status, 204, `preflight of ${method}`)
    t.equal(preflight.headers.get('access-control-allow-origin'), ORIGIN)
    t.match(preflight.headers.get('access-control-allow-methods'), method)
    t.match(preflight.headers.get('access-control-allow-headers'), /Upload-Offset/i)
  }
  t.equal(created.headers.get('access-control-allow-origin'), ORIGIN)
  const patched = await fetch(`${gw.url}${created.headers.get('location')}`, {
    method: 'PATCH',
    headers: { ...tusHeaders, origin: ORIGIN, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
    body: new Uint8Array(uniqueContent(5))
  })
  t.equal(patched.status, 204)
  t.equal(patched.headers.get('access-control-allow-origin'), ORIGIN)
  const exposed = (patched.headers.get('access-control-expose-headers') ?? '').toLowerCase()
  for (const h of ['location', 'upload-offset', 'upload-length', 'tus-resumable', 'upload-status-url']) t.match(exposed, h, `exposes ${h}`)
  t.ok(patched.headers.get('upload-status-url'))
  t.ok(patched.headers.get('x-request-id'), 'tus answers name their request too')
  const refused = await fetch(endpoint, { method: 'POST', headers: { origin: ORIGIN, 'tus-resumable': '1.0.0', 'upload-length': '5' } })
  t.equal(refused.status, 401)
  t.equal(refused.headers.get('access-control-allow-origin'), ORIGIN, 'a refusal is readable by the page')
})

t.test('a live upload older than GW_ORPHAN_AFTER is no orphan while within GW_TUS_EXPIRY', async (t) => {
  const long = await startGateway(t, { GW_CLAMD: clamd.url, GW_TUS_EXPIRY: '1h', GW_ORPHAN_AFTER: '1s', GW_ORPHAN_SWEEP_INTERVAL_MS: '100' })
  const content = uniqueContent(64 * 1024)
  const first = await tusUpload(`${long.url}/v1/tus`, content, { chunkSize: 16 * 1024, abortAt: content.length / 2 })
  const id = idOf(first.url)
  await new Promise((r) => setTimeout(r, 2500))
  const dir = join(long.dir, 'objects', 'quarantine')
  t.ok(await exists(join(dir, id)) && (await exists(join(dir, `${id}.info`))), 'its file and info are kept')
  const done = await tusUpload(`${long.url}/v1/tus`, content, { chunkSize: 16 * 1024, uploadUrl: first.url })
  t.ok(done.resumedAt !== null && done.resumedAt > 0, `resumed from ${done.resumedAt}`)
  t.match(await waitForStatus(long.url, id, ['clean', 'infected', 'unscannable', 'failed']), { status: 'clean', sha256: sha256(content) })
})

t.test('an expired upload is refused and removed with its intent', async (t) => {
  const short = await startGateway(t, { GW_CLAMD: clamd.url, GW_TUS_EXPIRY: '1s', GW_ORPHAN_AFTER: '1s', GW_ORPHAN_SWEEP_INTERVAL_MS: '100' })
  const created = await fetch(`${short.url}/v1/tus`, { method: 'POST', headers: { 'tus-resumable': '1.0.0', 'upload-length': '100' } })
  const url = `${short.url}${created.headers.get('location')}`
  const id = idOf(url)
  const dir = join(short.dir, 'objects', 'quarantine')
  t.ok(await exists(join(dir, `${id}.info`)))
  await new Promise((r) => setTimeout(r, 2500))
  const patched = await fetch(url, { method: 'PATCH', headers: { 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(uniqueContent(10)) })
  t.ok([404, 410].includes(patched.status), `refused (${patched.status})`)
  t.same((await readdir(dir)).filter((n) => n.startsWith(id)), [], 'its file and info are removed')
  t.same(await short.gateway.state.claimIntents(Date.now(), Date.now(), Date.now(), 10), [], 'no intent is left')
})
