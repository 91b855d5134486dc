import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { GetObjectTaggingCommand, HeadObjectCommand, PutObjectCommand, PutObjectTaggingCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { sha256, objectSha256 } from './helpers/bucket-checks.ts'
import { ALL_SIGNATURES, startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { eicar, marker, upload, uniqueContent } from './helpers/multipart.ts'
import { startS3RequestProxy } from './helpers/s3-request-proxy.ts'

// Failed uploads have a way forward, releases promote only verified bytes, released uploads stay in
// rescans, and a promotion given up leaves nothing in production. S3 is moto behind a proxy that
// can fail given requests; clamd is real and knows the marker and EICAR.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const admin = 'admin-key-for-failed-uploads-01'
const final = ['clean', 'infected', 'unscannable', 'failed']
const [moto, clamd] = await Promise.all([startMoto(), startClamd({ signatures: ALL_SIGNATURES })])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, 'quarantine', 'production')
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())
const proxy = await startS3RequestProxy(moto.port)
t.teardown(() => proxy.stop())
const gw = await startGateway(t, {
  GW_STORE: 's3',
  GW_S3_ENDPOINT: proxy.endpoint,
  GW_S3_FORCE_PATH_STYLE: 'true',
  GW_CLAMD: clamd.url,
  GW_ADMIN_KEYS: admin,
  GW_SCAN_MAX_ATTEMPTS: '2',
  GW_FAILED_RETRY_AFTER: '1500ms',
  GW_FAILED_RETRY_ROUNDS: '1',
  GW_RESCAN_INTERVAL: '1h',
  GW_RESCAN_JITTER: '0'
})
const as = { authorization: `Bearer ${admin}` }
const post = (path: string, body?: unknown) =>
  fetch(`${gw.url}${path}`, { method: 'POST', headers: { ...as, 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) })
const inBucket = (Bucket: string, Key: string) => s3.send(new HeadObjectCommand({ Bucket, Key })).then(() => true, () => false)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const tagsOf = async (Bucket: string, Key: string) =>
  Object.fromEntries(((await s3.send(new GetObjectTaggingCommand({ Bucket, Key }))).TagSet ?? []).map((x) => [x.Key, x.Value]))

/** Polls the record until `ok` holds (bounded); the last record either way. */
async function until(id: string, ok: (u: Awaited<ReturnType<typeof gw.gateway.state.getUpload>>) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  let u = await gw.gateway.state.getUpload(id)
  while (!ok(u) && Date.now() < deadline) {
    await sleep(100)
    u = await gw.gateway.state.getUpload(id)
  }
  return u
}

function ops(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const env = { ...process.env, GW_URL: gw.url, GW_ADMIN_KEY: admin }
    execFile(process.execPath, ['scripts/ops.ts', ...args], { cwd: resolve(import.meta.dirname, '..'), env }, (err, stdout, stderr) =>
      done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr })
    )
  })
}

t.test('a store outage fails an upload; it gets an automatic round later, then an operator rescan (CLI) brings it back', async (t) => {
  const restore = proxy.fail((c) => c.method === 'GET' && c.bucket === 'quarantine' && c.key !== '')
  const content = uniqueContent(3000)
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: content })
  const failed = await waitForStatus(gw.url, res.json.id, final, { timeoutMs: 30_000 })
  t.equal(failed.status, 'failed')
  const first = await gw.gateway.state.getUpload(res.json.id)
  t.ok(first?.failedRetryAt && first.failedRetryAt > Date.now() - 1500, 'an infrastructure failure is scheduled for another round')
  const again = await until(res.json.id, (u) => u?.status === 'failed' && u.failedRounds === 1)
  t.match(again, { status: 'failed', failedRounds: 1, failedRetryAt: null }, 'tried once more on its own, then it waits for an operator')
  t.ok((await gw.gateway.state.listScans(res.json.id)).length >= 4, 'two rounds of two tries')

  restore()
  const cli = await ops('rescan-upload', res.json.id)
  t.equal(cli.code, 0, cli.out)
  t.equal((await waitForStatus(gw.url, res.json.id, ['clean'], { timeoutMs: 30_000 })).status, 'clean')
  t.equal(await objectSha256(s3, 'production', res.json.id), sha256(content))
})

t.test('bytes that do not match their upload: no automatic round, and a release is refused until they match', async (t) => {
  const id = 'f1'.repeat(16)
  const uploaded = uniqueContent(2000)
  const changed = uniqueContent(2000)
  await s3.send(new PutObjectCommand({ Bucket: 'quarantine', Key: id, Body: changed }))
  await gw.gateway.state.insertUpload({ id, objectKey: id, size: uploaded.length, sha256: sha256(uploaded), filename: 'b.txt', contentType: 'text/plain', createdAt: Date.now() })
  const failed = await until(id, (u) => u?.status === 'failed')
  t.match(failed, { status: 'failed', failedRetryAt: null, lastError: /does not match/ }, 'an integrity failure waits for an operator')

  const refused = await post(`/v1/uploads/${id}/release`, { reason: 'checked by hand, it is fine' })
  t.equal(refused.status, 409)
  t.match(await refused.json(), { error: { code: 'GW_CONFLICT', message: /has 2000 bytes with SHA-256 [0-9a-f]{64}, but 2000 bytes with SHA-256 [0-9a-f]{64} were uploaded/ } })
  t.equal((await gw.gateway.state.getUpload(id))?.status, 'failed')
  t.notOk(await inBucket('production', id), 'nothing promoted')

  await s3.send(new PutObjectCommand({ Bucket: 'quarantine', Key: id, Body: uploaded }))
  t.equal((await post(`/v1/uploads/${id}/release`, { reason: 'checked by hand, it is fine' })).status, 202)
  t.match(await waitForStatus(gw.url, id, ['clean']), { released: { reason: 'checked by hand, it is fine' } })
  t.equal(await objectSha256(s3, 'production', id), sha256(uploaded), 'exactly the verified bytes')
})

t.test('a released upload stays in rescans: the same signature leaves it, another one takes it out', async (t) => {
  const content = Buffer.concat([uniqueContent(1500), Buffer.from(marker)])
  const res = await upload(gw.url, { name: 'file', filename: 'c.txt', data: content })
  const infected = await waitForStatus(gw.url, res.json.id, final)
  t.match(infected, { status: 'infected', verdict: { signature: /Marker/ } })
  t.equal((await post(`/v1/uploads/${res.json.id}/release`, { reason: 'the marker is expected here' })).status, 202)
  await waitForStatus(gw.url, res.json.id, ['clean'])
  t.ok((await gw.gateway.state.getUpload(res.json.id))?.nextScanAt, 'scheduled for rolling rescans')

  const scans = (await gw.gateway.state.listScans(res.json.id)).length
  t.equal((await post(`/v1/uploads/${res.json.id}/rescan`)).status, 202)
  const same = await until(res.json.id, (u) => u?.nextScanAt !== null && u!.nextScanAt! > Date.now() + 60_000)
  t.equal((await gw.gateway.state.listScans(res.json.id)).length, scans + 1)
  t.match(same, { status: 'clean', location: 'production', released: { reason: 'the marker is expected here' } }, 'the released signature again: left')
  t.ok(await inBucket('production', res.json.id))

  // The served bytes now carry another signature.
  await s3.send(new PutObjectCommand({ Bucket: 'production', Key: res.json.id, Body: eicar }))
  t.equal((await post(`/v1/uploads/${res.json.id}/rescan`)).status, 202)
  const out = await waitForStatus(gw.url, res.json.id, ['infected'], { timeoutMs: 30_000 })
  t.match(out.verdict, { signature: /Eicar/i })
  const record = await until(res.json.id, (u) => u?.location === 'quarantine')
  t.match(record, { status: 'infected', location: 'quarantine', released: null }, 'no longer released')
  t.notOk(await inBucket('production', res.json.id), 'taken out of production')

  // A tag written out of turn (a worker that woke up late) is repaired by the next rescan.
  await s3.send(new PutObjectTaggingCommand({ Bucket: 'quarantine', Key: res.json.id, Tagging: { TagSet: [{ Key: 'av-status', Value: 'clean' }] } }))
  const before = (await gw.gateway.state.listScans(res.json.id)).length
  t.equal((await post(`/v1/uploads/${res.json.id}/rescan`)).status, 202)
  await until(res.json.id, (u) => u?.nextScanAt === null)
  for (let i = 0; i < 100 && (await gw.gateway.state.listScans(res.json.id)).length === before; i++) await sleep(100)
  await until(res.json.id, (u) => u?.nextScanAt === null)
  t.match(await tagsOf('quarantine', res.json.id), { 'av-status': 'infected', 'av-signature': /Eicar/i }, 'its tag set again')
})

t.test('a promotion given up after its copy leaves no copy in production', async (t) => {
  const restore = proxy.fail((c) => c.method === 'DELETE' && c.bucket === 'quarantine')
  const content = uniqueContent(2500)
  const res = await upload(gw.url, { name: 'file', filename: 'd.txt', data: content })
  const failed = await waitForStatus(gw.url, res.json.id, final, { timeoutMs: 30_000 })
  t.equal(failed.status, 'failed')
  t.notOk(await inBucket('production', res.json.id), 'a failed upload is not readable in production')
  t.ok(await inBucket('quarantine', res.json.id), 'kept in quarantine')
  restore()
  // A store error is an infrastructure failure: the automatic round promotes it.
  t.equal((await waitForStatus(gw.url, res.json.id, ['clean'], { timeoutMs: 30_000 })).status, 'clean')
  t.equal(await objectSha256(s3, 'production', res.json.id), sha256(content))
})
