import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { eicar, marker, upload, uniqueContent } from './helpers/multipart.ts'

// The whole flow on the embedded defaults (fs object store, SQLite) with a real clamd.
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_SCANNER_MAX_BYTES: String(2 * 1024 * 1024), GW_MAX_UPLOAD_BYTES: String(4 * 1024 * 1024) })
const objects = join(gw.dir, 'objects')
const exists = (path: string) => stat(path).then(() => true, () => false)
const sidecar = async (area: string, key: string) => {
  const dir = join(objects, `${area}.meta`)
  const names = await readdir(dir, { recursive: true })
  const name = names.find((n) => String(n).startsWith(key))
  return name ? JSON.parse(await readFile(join(dir, String(name)), 'utf8')) : null
}

t.test('a clean file is promoted to production and reported clean', async (t) => {
  const content = uniqueContent(300 * 1024)
  const res = await upload(gw.url, { name: 'file', filename: 'report.pdf', contentType: 'application/pdf', data: content })
  t.equal(res.status, 202)
  t.match(res.json, { status: 'pending', size: content.length, filename: 'report.pdf', statusUrl: `/v1/uploads/${res.json.id}` })
  t.match(res.json.sha256, /^[0-9a-f]{64}$/)
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  // Declared a PDF, but random bytes: the record has the detected type.
  t.match(done, { status: 'clean', contentType: 'application/octet-stream', verdict: { result: 'clean', signature: null, engine: /^ClamAV / } })
  t.ok(Date.parse(done.scannedAt) >= Date.parse(done.createdAt))
  t.same(done.object, { bucket: join(objects, 'production'), key: res.json.id })
  t.same(await readFile(join(objects, 'production', res.json.id)), content, 'production holds the same bytes')
  t.notOk(await exists(join(objects, 'quarantine', res.json.id)), 'gone from quarantine')
  const scans = await gw.gateway.state.listScans(res.json.id)
  t.equal(scans.length, 1)
  t.match(scans[0], { outcome: 'clean', bytes: content.length, engine: /^ClamAV / })
})

t.test('EICAR and the marker stay in quarantine as infected', async (t) => {
  for (const [data, signature] of [
    [Buffer.concat([uniqueContent(1000), eicar]), 'Win.Test.EICAR_HDB-1.UNOFFICIAL'],
    [Buffer.concat([uniqueContent(5000), Buffer.from(marker), uniqueContent(100)]), 'Custom.Test.Marker.UNOFFICIAL']
  ] as const) {
    const res = await upload(gw.url, { name: 'file', filename: 'cv.doc', data })
    t.equal(res.status, 202)
    const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
    t.match(done, { status: 'infected', verdict: { result: 'infected', signature } })
    t.notOk('object' in done)
    t.notOk(await exists(join(objects, 'production', res.json.id)), 'never copied to production')
    t.ok(await exists(join(objects, 'quarantine', res.json.id)), 'kept in quarantine')
    t.match((await sidecar('quarantine', res.json.id))?.tags, { 'av-status': 'infected', 'av-signature': signature })
  }
})

t.test('a file larger than the scanner limit is unscannable without being sent', async (t) => {
  const res = await upload(gw.url, { name: 'file', filename: 'huge.bin', data: uniqueContent(3 * 1024 * 1024) })
  t.equal(res.status, 202)
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.match(done, { status: 'unscannable', verdict: { result: 'unscannable', reason: /larger than the scanner limit/ } })
  t.notOk(await exists(join(objects, 'production', res.json.id)))
  const scans = await gw.gateway.state.listScans(res.json.id)
  t.match(scans, [{ outcome: 'unscannable', bytes: 0 }])
})

t.test('status polling: ETag and 304', async (t) => {
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) })
  await waitForStatus(gw.url, res.json.id, ['clean'])
  const first = await fetch(`${gw.url}/v1/uploads/${res.json.id}`)
  const etag = first.headers.get('etag')
  t.ok(etag)
  t.equal(first.headers.get('cache-control'), 'no-cache')
  const again = await fetch(`${gw.url}/v1/uploads/${res.json.id}`, { headers: { 'if-none-match': etag! } })
  t.equal(again.status, 304)
  t.equal(await again.text(), '')
  const weak = await fetch(`${gw.url}/v1/uploads/${res.json.id}`, { headers: { 'if-none-match': `"other", W/${etag}` } })
  t.equal(weak.status, 304)
  const other = await fetch(`${gw.url}/v1/uploads/${res.json.id}`, { headers: { 'if-none-match': '"stale"' } })
  t.equal(other.status, 200)
})

t.test('readyz and healthz', async (t) => {
  const ready = await fetch(`${gw.url}/readyz`)
  t.equal(ready.status, 200)
  t.match(await ready.json(), { ok: true, checks: { state: { ok: true }, quarantine: { ok: true }, production: { ok: true }, scanner: { ok: true, detail: /EICAR/ } } })
  t.same(await (await fetch(`${gw.url}/healthz`)).json(), { ok: true })
})
