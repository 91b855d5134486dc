import { GetObjectTaggingCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import t, { type Test } from 'tap'
import { objectSha256, sha256 } from './helpers/bucket-checks.ts'
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.ts'
import { ALL_SIGNATURES, startClamd } from './helpers/clamd.ts'
import { waitForStatus } from './helpers/gateway.ts'
import { s3PgEnv } from './helpers/gateway-env.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { eicar, upload, uniqueContent } from './helpers/multipart.ts'
import { freshSchema, pgQuery } from './helpers/postgres.ts'
import { startS3RequestProxy, type S3Match } from './helpers/s3-request-proxy.ts'

// A worker paused past its lease (SIGSTOP) at a precise step must write nothing when it wakes up:
// another worker has finished its job and an operator has acted meanwhile. Worker 1 reaches S3
// through a proxy that lets one request through to moto and holds its answer back: worker 1 is
// stopped right after that step, before its next write. Worker 2 talks to moto directly.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const admin = 'admin-key-for-lease-fences-01'
const final = ['clean', 'infected', 'unscannable', 'failed']
const [moto, clamd] = await Promise.all([startMoto(), startClamd({ signatures: ALL_SIGNATURES })])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, 'quarantine', 'production')
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())
const proxy = await startS3RequestProxy(moto.port)
t.teardown(() => proxy.stop())

const inBucket = (Bucket: string, Key: string) => s3.send(new HeadObjectCommand({ Bucket, Key })).then(() => true, () => false)
const tagsOf = async (Bucket: string, Key: string) =>
  Object.fromEntries(((await s3.send(new GetObjectTaggingCommand({ Bucket, Key }))).TagSet ?? []).map((x) => [x.Key, x.Value]))
const post = (gw: ChildGateway, path: string, body: unknown = {}) =>
  fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
/** Lines in which a worker says it stopped a job: its lease was lost, or the job was aborted. */
const stops = (gw: ChildGateway) => (gw.output().match(/lease lost|job stopped before it finished/g) ?? []).length

/** Worker 1 and, once it is paused, worker 2 (a loaded machine may take long to start one). */
async function workers(t: Test) {
  const schema = await freshSchema(t)
  const env = (s3Endpoint: string) => ({
    ...s3PgEnv({ s3Endpoint, schema, clamd: clamd.url }),
    GW_SCAN_LEASE_MS: '1500',
    GW_ADMIN_KEYS: admin,
    GW_RESCAN_INTERVAL: '1h',
    GW_RESCAN_JITTER: '0'
  })
  // Other test processes on this machine may take the free port it picked: try another one then.
  const start = async (e: Record<string, string>): Promise<ChildGateway> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startChildGateway(t, e, 60_000)
      } catch (err) {
        if (attempt === 3 || !/EADDRINUSE/.test(String(err))) throw err
      }
    }
  }
  const w1 = await start(env(proxy.endpoint))
  /** Waits (bounded) until the stored status is `status`: the public one hides the internal steps. */
  const stored = async (id: string, status: string) => {
    let now = ''
    for (let i = 0; i < 600 && now !== status; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50))
      now = String((await pgQuery(`SELECT status FROM "${schema}".uploads WHERE id = $1`, [id])).rows[0]?.status)
    }
    return now
  }
  return { w1, stored, startW2: () => start(env(moto.endpoint)) }
}

/** Stops w1 (SIGSTOP) once the held request was answered by S3, and lets it go on (SIGCONT) afterwards. */
async function pauseAt(w1: ChildGateway, match: S3Match, start: () => Promise<unknown>) {
  const hold = proxy.holdResponse(match)
  await start()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([hold.held, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the step was never reached')), 30_000)))])
  clearTimeout(timer)
  w1.child.kill('SIGSTOP')
  return async () => {
    const before = stops(w1)
    w1.child.kill('SIGCONT')
    hold.release()
    // Bounded: until worker 1 says what it did with its stale job.
    for (let i = 0; i < 300 && stops(w1) === before; i++) await new Promise((r) => setTimeout(r, 50))
    // Whatever it would write next, it would write now: give it a moment on a loaded machine.
    await new Promise((r) => setTimeout(r, 500))
  }
}

t.test('paused before its delete from production (requarantine): the released copy stays', async (t) => {
  const { w1, stored, startW2 } = await workers(t)
  const res = await upload(w1.url, { name: 'file', filename: 'a.txt', data: uniqueContent(3000) })
  t.equal((await waitForStatus(w1.url, res.json.id, final)).status, 'clean')
  const id = res.json.id as string
  // The served bytes turn out infected: a rescan takes them out. Worker 1 is stopped after its copy back to quarantine.
  await s3.send(new PutObjectCommand({ Bucket: 'production', Key: id, Body: eicar }))
  const resume = await pauseAt(w1, (c) => c.method === 'PUT' && c.bucket === 'quarantine' && c.copySource === `production/${id}`, () => post(w1, `/v1/uploads/${id}/rescan`))

  const w2 = await startW2()
  t.equal(await stored(id, 'infected'), 'infected', 'worker 2 took it out')
  const release = await post(w2, `/v1/uploads/${id}/release`, { reason: 'reviewed: a test file' })
  t.equal(release.status, 202, await release.clone().text())
  t.equal((await waitForStatus(w2.url, id, ['clean'], { timeoutMs: 30_000 })).status, 'clean')

  await resume()
  t.equal((await waitForStatus(w2.url, id, final)).status, 'clean')
  t.ok(await inBucket('production', id), 'the released production copy is still there')
  t.equal(await objectSha256(s3, 'production', id), sha256(eicar))
  t.match(await tagsOf('production', id), { 'av-status': 'clean', 'av-released-by': /^admin-/ })
  t.notOk(await inBucket('quarantine', id), 'nothing left in quarantine')
})

t.test('paused before its delete from quarantine (promotion): the requarantined copy stays', async (t) => {
  const { w1, stored, startW2 } = await workers(t)
  const content = uniqueContent(3000)
  let id = ''
  const resume = await pauseAt(
    w1,
    (c) => c.method === 'PUT' && c.bucket === 'production' && (c.copySource?.startsWith('quarantine/') ?? false),
    async () => (id = (await upload(w1.url, { name: 'file', filename: 'b.txt', data: content })).json.id)
  )
  const w2 = await startW2()
  t.equal((await waitForStatus(w2.url, id, final, { timeoutMs: 30_000 })).status, 'clean')
  // Then the served bytes turn out infected: worker 2 takes them back to quarantine.
  await s3.send(new PutObjectCommand({ Bucket: 'production', Key: id, Body: eicar }))
  t.equal((await post(w2, `/v1/uploads/${id}/rescan`)).status, 202)
  t.equal(await stored(id, 'infected'), 'infected', 'worker 2 took it out')

  await resume()
  t.equal((await waitForStatus(w2.url, id, final)).status, 'infected')
  t.ok(await inBucket('quarantine', id), 'the requarantined copy is still there')
  t.match(await tagsOf('quarantine', id), { 'av-status': 'infected' })
  t.notOk(await inBucket('production', id), 'nothing in production')
  const release = await post(w2, `/v1/uploads/${id}/release`, { reason: 'reviewed: a test file' })
  t.equal(release.status, 202, await release.clone().text())
  t.equal((await waitForStatus(w2.url, id, ['clean'], { timeoutMs: 30_000 })).status, 'clean')
  t.equal(await objectSha256(s3, 'production', id), sha256(eicar))
})

t.test('paused before its copy and its tag (scan): no stale tag on the released copy', async (t) => {
  const { w1, startW2 } = await workers(t)
  let id = ''
  const resume = await pauseAt(
    w1,
    (c) => c.method === 'GET' && c.bucket === 'quarantine' && c.key !== '',
    async () => (id = (await upload(w1.url, { name: 'file', filename: 'c.txt', data: eicar })).json.id)
  )
  const w2 = await startW2()
  t.equal((await waitForStatus(w2.url, id, final, { timeoutMs: 30_000 })).status, 'infected')
  const release = await post(w2, `/v1/uploads/${id}/release`, { reason: 'reviewed: a test file' })
  t.equal(release.status, 202, await release.clone().text())
  t.equal((await waitForStatus(w2.url, id, ['clean'], { timeoutMs: 30_000 })).status, 'clean')

  await resume()
  t.equal((await waitForStatus(w2.url, id, final)).status, 'clean')
  t.match(await tagsOf('production', id), { 'av-status': 'clean' }, 'no stale infected tag')
  t.notOk(await inBucket('quarantine', id))
})
