import { GetObjectCommand, GetObjectTaggingCommand, HeadObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startFaultyProxy } from './helpers/faulty-proxy.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { createBuckets, listIncompleteUploads, s3ClientFor, startMoto } from './helpers/moto.ts'
import { eicar, upload, uniqueContent, uploadAndDisconnect } from './helpers/multipart.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'
import { startS3RequestProxy } from './helpers/s3-request-proxy.ts'

exitWhenDone()

// The whole flow against an S3 API (moto) and a real clamd.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const MiB = 1024 * 1024
const [moto, clamd] = await Promise.all([startMoto(), startClamd()])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, 'quarantine', 'production')
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())
const s3Env = (endpoint: string) => ({
  GW_STORE: 's3',
  GW_S3_ENDPOINT: endpoint,
  GW_S3_FORCE_PATH_STYLE: 'true',
  GW_S3_PART_SIZE_BYTES: String(5 * MiB),
  GW_QUARANTINE_BUCKET: 'quarantine',
  GW_PRODUCTION_BUCKET: 'production',
  GW_CLAMD: clamd.url,
  GW_MAX_UPLOAD_BYTES: String(16 * MiB),
  GW_KEY_PREFIX: 'uploads/'
})
const gw = await startGateway(t, s3Env(moto.endpoint))
const missing = (Bucket: string, Key: string) =>
  s3.send(new HeadObjectCommand({ Bucket, Key })).then(() => false, (err: { name?: string }) => err.name === 'NotFound')
const tagsOf = async (Bucket: string, Key: string) =>
  Object.fromEntries(((await s3.send(new GetObjectTaggingCommand({ Bucket, Key }))).TagSet ?? []).map((x) => [x.Key, x.Value]))

t.test('a clean multipart upload is promoted and readable from the production bucket', async (t) => {
  const content = uniqueContent(11 * MiB)
  const res = await upload(gw.url, { name: 'file', filename: 'scan.pdf', contentType: 'application/pdf', data: content })
  t.equal(res.status, 202)
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.equal(done.status, 'clean')
  const key = `uploads/${res.json.id}`
  t.same(done.object, { bucket: 'production', key })
  const object = await s3.send(new GetObjectCommand({ Bucket: 'production', Key: key }))
  t.equal(object.ContentType, 'application/octet-stream', 'the detected type (random bytes declared a PDF)')
  t.same(Buffer.from(await object.Body!.transformToByteArray()), content)
  t.match(await tagsOf('production', key), { 'av-status': 'clean', 'av-upload-id': res.json.id, 'av-engine': /^ClamAV / })
  t.ok(await missing('quarantine', key), 'deleted from quarantine')
})

t.test('an infected upload stays in quarantine, tagged, and never reaches production', async (t) => {
  const res = await upload(gw.url, { name: 'file', filename: 'x.txt', data: Buffer.concat([uniqueContent(100), eicar]) })
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.equal(done.status, 'infected')
  const key = `uploads/${res.json.id}`
  t.ok(await missing('production', key))
  t.match(await tagsOf('quarantine', key), { 'av-status': 'infected', 'av-signature': 'Win.Test.EICAR_HDB-1.UNOFFICIAL' })
})

t.test('disconnects and oversized uploads leave no multipart parts behind', async (t) => {
  const before = new Set((await listIncompleteUploads(s3, 'quarantine')).map((u) => u.key))
  // Bounded poll (about 15 s), with no assertion on time: parts stored before the client left.
  const storing = await uploadAndDisconnect(gw.url, 14 * MiB, 11 * MiB, async () => {
    for (let i = 0; i < 150; i++) {
      const open = (await listIncompleteUploads(s3, 'quarantine')).filter((u) => !before.has(u.key) && u.bytes > 0)
      if (open.length > 0) return open
      await new Promise((r) => setTimeout(r, 100))
    }
    return []
  })
  t.equal(storing?.length, 1, `the gateway had stored parts when the client left (${JSON.stringify(storing)})`)
  const big = await upload(gw.url, { name: 'file', filename: 'big.bin', data: uniqueContent(16 * MiB + 1) })
  t.equal(big.status, 413)
  const deadline = Date.now() + 5_000
  let incomplete = await listIncompleteUploads(s3, 'quarantine')
  while (incomplete.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
    incomplete = await listIncompleteUploads(s3, 'quarantine')
  }
  t.same(incomplete, [], 'every multipart upload was aborted')
})

t.test('S3 unreachable: 503 with Retry-After, never a 202', async (t) => {
  const proxy = await startFaultyProxy(moto.port, 'pass')
  t.teardown(() => proxy.stop())
  const flaky = await startGateway(t, { ...s3Env(`http://127.0.0.1:${proxy.port}`), GW_SCAN_CONCURRENCY: '0' })
  await proxy.setMode('refuse')
  const res = await upload(flaky.url, { name: 'file', filename: 'a.txt', data: uniqueContent(1000) })
  t.equal(res.status, 503)
  t.equal(res.json.error.code, 'GW_STORE_UNAVAILABLE')
  t.equal(res.headers['retry-after'], '5')
  const ready = await fetch(`${flaky.url}/readyz`)
  t.equal(ready.status, 503)
  t.match(await ready.json(), { ok: false, checks: { quarantine: { ok: false }, production: { ok: false }, state: { ok: true } } })
  await proxy.setMode('pass')
  const later = await upload(flaky.url, { name: 'file', filename: 'a.txt', data: uniqueContent(1000) })
  t.equal(later.status, 202, 'accepted again once S3 is back')
})

t.test('readyz names a missing bucket', async (t) => {
  const other = await startGateway(t, { ...s3Env(moto.endpoint), GW_PRODUCTION_BUCKET: 'no-such-bucket', GW_SCAN_CONCURRENCY: '0' })
  const ready = await fetch(`${other.url}/readyz`)
  t.equal(ready.status, 503)
  t.match(await ready.json(), { ok: false, checks: { quarantine: { ok: true }, production: { ok: false, detail: /no-such-bucket/ }, scanner: { ok: true } } })
})

t.test('a promotion held up by S3 does not keep clamd from the next upload, and sends no HEAD before its copy', async (t) => {
  const proxy = await startS3RequestProxy(moto.port)
  t.teardown(() => proxy.stop())
  // One scan slot: the second upload can only be scanned if the first gave its scan slot back when
  // clamd answered, and promoted (in the after-scan pool) while the first one's copy is held.
  const one = await startGateway(t, { ...s3Env(proxy.endpoint), GW_SCAN_CONCURRENCY: '1', GW_PROMOTE_CONCURRENCY: '2' })
  const held = proxy.holdResponse((c) => c.method === 'PUT' && c.bucket === 'production' && c.copySource !== null)
  const first = await upload(one.url, { name: 'file', filename: 'a.bin', data: uniqueContent(64 * 1024) })
  await held.held
  const second = await upload(one.url, { name: 'file', filename: 'b.bin', data: uniqueContent(64 * 1024) })
  const state = one.gateway.state
  const deadline = Date.now() + 30_000
  while ((await state.getUpload(second.json.id))?.status !== 'clean') {
    if (Date.now() > deadline) throw new Error('the second upload was not scanned and promoted while the first one was being copied')
    await new Promise((r) => setTimeout(r, 20))
  }
  t.equal((await state.getUpload(first.json.id))?.status, 'promoting', 'the first copy is still held')
  held.release()
  for (const res of [first, second]) t.equal((await waitForStatus(one.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])).status, 'clean')
  const keys = new Set([first, second].map((res) => `uploads/${res.json.id}`))
  const heads = proxy.calls.filter((c) => c.method === 'HEAD' && keys.has(c.key))
  t.same(heads, [], 'the scan read the object: the copy needs no HEAD')
  t.equal(proxy.calls.filter((c) => c.copySource !== null && keys.has(c.key)).length, 2, 'one copy each, with its tags')
  t.equal(proxy.calls.filter((c) => c.method === 'PUT' && c.query.has('tagging')).length, 0, 'no separate tagging call')
  await one.stop()
})
