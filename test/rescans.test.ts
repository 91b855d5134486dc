import { copyFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { GetObjectCommand, GetObjectTaggingCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { SIGNATURES_DIR, startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { marker, upload, uniqueContent } from './helpers/multipart.ts'

// Rolling rescans with a short interval, against moto and a clamd whose signatures improve.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const admin = 'admin-key-for-rescans-0001'
const uploader = 'upload-key-for-rescans-001'
const final = ['clean', 'infected', 'unscannable', 'failed']
// The marker rule (test.ldb) is not loaded yet: files holding the marker scan clean at first.
const [moto, clamd] = await Promise.all([startMoto(), startClamd({ signatures: ['test.ndb', 'test.hdb'] })])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, 'quarantine', 'production')
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())
const gw = await startGateway(t, {
  GW_STORE: 's3',
  GW_S3_ENDPOINT: moto.endpoint,
  GW_S3_FORCE_PATH_STYLE: 'true',
  GW_CLAMD: clamd.url,
  GW_RESCAN_INTERVAL: '1500ms',
  GW_RESCAN_JITTER: '0',
  GW_UPLOAD_KEYS: uploader,
  GW_ADMIN_KEYS: admin
})
const as = (key: string) => ({ authorization: `Bearer ${key}` })
const readable = (Key: string) =>
  s3.send(new GetObjectCommand({ Bucket: 'production', Key })).then(
    async (r) => (await r.Body?.transformToByteArray())?.length,
    () => null
  )

t.test('a clean object is rescanned when due; once signatures detect it, it is taken out of production', async (t) => {
  const innocent = uniqueContent(4000)
  const later = Buffer.concat([uniqueContent(3000), Buffer.from(marker), uniqueContent(100)])
  const a = await upload(gw.url, { name: 'file', filename: 'a.txt', data: innocent }, as(uploader))
  const b = await upload(gw.url, { name: 'file', filename: 'b.doc', data: later }, as(uploader))
  for (const r of [a, b]) t.equal((await waitForStatus(gw.url, r.json.id, final, { headers: as(uploader) })).status, 'clean')
  t.equal(await readable(b.json.id), later.length, 'served while it looks clean')
  const first = await gw.gateway.state.getUpload(a.json.id)
  t.ok(first?.nextScanAt && first.nextScanAt - (first.scannedAt ?? 0) === 1500, 'next scan one interval after the scan (no jitter here)')

  // Signatures improve: the marker rule arrives.
  await copyFile(join(SIGNATURES_DIR, 'test.ldb'), join(clamd.dbDir, 'test.ldb'))
  await clamd.reload()
  const found = await waitForStatus(gw.url, b.json.id, ['infected'], { headers: as(uploader), timeoutMs: 15_000 })
  t.match(found.verdict, { result: 'infected', signature: /Marker/ })
  t.notOk('object' in found)
  // Its status says infected as soon as the detection is recorded; the move follows at once.
  let served = await readable(b.json.id)
  for (let i = 0; i < 50 && served !== null; i++) {
    await new Promise((r) => setTimeout(r, 100))
    served = await readable(b.json.id)
  }
  t.equal(served, null, 'no longer readable in production')
  const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: 'quarantine', Key: b.json.id }))
  t.match(Object.fromEntries((tags.TagSet ?? []).map((x) => [x.Key, x.Value])), { 'av-status': 'infected' }, 'back in quarantine, tagged')

  // The innocent file was rescanned too, and stays clean and served.
  await new Promise((r) => setTimeout(r, 2000))
  const scans = await (await fetch(`${gw.url}/v1/uploads/${a.json.id}/scans`, { headers: as(uploader) })).json()
  t.ok(scans.scans.length >= 2, `rescanned ${scans.scans.length} times`)
  t.ok(scans.scans.every((s: { outcome: string }) => s.outcome === 'clean'))
  t.match(scans.scans[0], { startedAt: String, durationMs: Number, engine: /ClamAV/, signature: null })
  t.equal((await waitForStatus(gw.url, a.json.id, final, { headers: as(uploader) })).status, 'clean')
  t.equal(await readable(a.json.id), innocent.length)
  const history = await (await fetch(`${gw.url}/v1/uploads/${b.json.id}/scans`, { headers: as(uploader) })).json()
  t.same(history.scans.map((s: { outcome: string }) => s.outcome).slice(-1), ['infected'])

  // An operator can still release what a rescan took back: exactly the bytes now in quarantine.
  const release = await fetch(`${gw.url}/v1/uploads/${b.json.id}/release`, {
    method: 'POST',
    headers: { ...as(admin), 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'the marker is expected in this document' })
  })
  t.equal(release.status, 202)
  t.match(await waitForStatus(gw.url, b.json.id, ['clean', 'failed'], { headers: as(uploader) }), { status: 'clean', released: { reason: /expected/ } })
  t.equal(await readable(b.json.id), later.length, 'served again, on the record')
})

t.test('a later clean scan of an infected object never releases it; an operator release does, on the record', async (t) => {
  const res = await upload(gw.url, { name: 'file', filename: 'm.txt', data: Buffer.concat([uniqueContent(500), Buffer.from(marker)]) }, as(uploader))
  t.equal((await waitForStatus(gw.url, res.json.id, final, { headers: as(uploader) })).status, 'infected')
  // The signature is withdrawn: a rescan now finds the file clean.
  await rm(join(clamd.dbDir, 'test.ldb'))
  await clamd.reload()
  const rescan = await fetch(`${gw.url}/v1/uploads/${res.json.id}/rescan`, { method: 'POST', headers: as(admin) })
  t.equal(rescan.status, 202)
  const deadline = Date.now() + 10_000
  let outcomes: string[] = []
  while (Date.now() < deadline && outcomes.at(-1) !== 'clean') {
    await new Promise((r) => setTimeout(r, 100))
    outcomes = (await gw.gateway.state.listScans(res.json.id)).map((s) => s.outcome)
  }
  t.same(outcomes, ['infected', 'clean'], 'rescanned clean')
  t.match(await waitForStatus(gw.url, res.json.id, final, { headers: as(uploader) }), { status: 'infected', verdict: { result: 'infected' } }, 'a clean rescan never releases')
  t.equal(await readable(res.json.id), null)

  const noReason = await fetch(`${gw.url}/v1/uploads/${res.json.id}/release`, { method: 'POST', headers: { ...as(admin), 'content-type': 'application/json' }, body: '{}' })
  t.equal(noReason.status, 400, 'a reason is required')
  const byUploader = await fetch(`${gw.url}/v1/uploads/${res.json.id}/release`, {
    method: 'POST',
    headers: { ...as(uploader), 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'trust me' })
  })
  t.equal(byUploader.status, 403, 'upload keys cannot release')
  const released = await fetch(`${gw.url}/v1/uploads/${res.json.id}/release`, {
    method: 'POST',
    headers: { ...as(admin), 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'marker is a test string, reviewed by security' })
  })
  t.equal(released.status, 202)
  const done = await waitForStatus(gw.url, res.json.id, ['clean'], { headers: as(uploader) })
  t.match(done, { status: 'clean', released: { by: /^admin-[0-9a-f]{12}$/, reason: /reviewed by security/, at: String }, verdict: { result: 'infected' } })
  t.ok(await readable(res.json.id), 'in production')
  const again = await fetch(`${gw.url}/v1/uploads/${res.json.id}/release`, {
    method: 'POST',
    headers: { ...as(admin), 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'twice' })
  })
  t.equal(again.status, 409)
  const audit = await (await fetch(`${gw.url}/v1/audit`, { headers: as(admin) })).json()
  t.match(audit.entries.map((e: { action: string }) => e.action), ['upload.release', 'upload.rescan'])
  t.match(audit.entries[0], { actor: /^admin-/, target: res.json.id, detail: { reason: /reviewed by security/ } })
})
