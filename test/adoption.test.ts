import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { startChildGateway } from './helpers/child-gateway.ts'
import { startClamd } from './helpers/clamd.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { eicar, uniqueContent } from './helpers/multipart.ts'

// Objects stored in the production bucket before the gateway existed: adopted, resumably.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const admin = 'admin-key-for-adoption-01'
const COUNT = 2000
const [moto, clamd] = await Promise.all([startMoto(), startClamd()])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, 'quarantine', 'production')
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())

t.test('an adoption killed half-way resumes, registers each object once and scans them all', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-adopt-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // Thousands of documents uploaded straight to the bucket, one of them infected, plus others outside the prefix.
  const keys = Array.from({ length: COUNT }, (_, i) => `legacy/docs/${String(i).padStart(5, '0')}.txt`)
  const infectedKey = keys[1234] as string
  for (let i = 0; i < keys.length; i += 50) {
    await Promise.all(
      keys.slice(i, i + 50).map((Key) =>
        s3.send(new PutObjectCommand({ Bucket: 'production', Key, Body: Key === infectedKey ? Buffer.concat([uniqueContent(200), eicar]) : uniqueContent(200) }))
      )
    )
  }
  await s3.send(new PutObjectCommand({ Bucket: 'production', Key: 'other/keep.txt', Body: uniqueContent(10) }))

  const env = {
    GW_STORE: 's3',
    GW_S3_ENDPOINT: moto.endpoint,
    GW_S3_FORCE_PATH_STYLE: 'true',
    GW_DATABASE_URL: `sqlite:${join(dir, 'state.db')}`,
    GW_CLAMD: clamd.url,
    GW_ADMIN_KEYS: admin,
    GW_ADOPT_PAGE_SIZE: '100',
    GW_SCAN_LEASE_MS: '2000',
    GW_POLL_INTERVAL_MS: '50',
    GW_SCAN_CONCURRENCY: '8'
  }
  const first = await startChildGateway(t, env)
  const res = await fetch(`${first.url}/v1/rescans`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ scope: { adopt: { prefix: 'legacy/' } } })
  })
  t.equal(res.status, 202)
  const { id } = await res.json()
  const view = async (url: string) => (await fetch(`${url}/v1/rescans/${id}`, { headers: { authorization: `Bearer ${admin}` } })).json()
  let seen = await view(first.url)
  while (seen.total < COUNT / 2) {
    await new Promise((r) => setTimeout(r, 20))
    seen = await view(first.url)
  }
  first.child.kill('SIGKILL')
  await once(first.child, 'exit')
  t.equal(seen.state, 'listing', `killed half-way: ${seen.total} of ${COUNT} registered`)

  const second = await startChildGateway(t, env)
  const deadline = Date.now() + 180_000
  while (!(seen.state === 'done') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200))
    seen = await view(second.url)
  }
  t.match(seen, { state: 'done', total: COUNT, done: COUNT, clean: COUNT - 1, infected: 1, failed: 0 })
  t.comment(`adoption of ${COUNT} objects: ${seen.ratePerSecond} objects/s`)
  second.child.kill('SIGTERM')
  await once(second.child, 'exit')

  const db = (await import('node:sqlite')).DatabaseSync
  const raw = new db(join(dir, 'state.db'), { readOnly: true })
  t.teardown(() => raw.close())
  const rows = raw.prepare('SELECT object_key, status, location, count(*) OVER (PARTITION BY object_key) AS n FROM uploads').all() as { object_key: string; status: string; location: string; n: number }[]
  t.equal(rows.length, COUNT, 'each listed object registered, none outside the prefix')
  t.ok(rows.every((r) => r.n === 1), 'each exactly once')
  t.same(rows.filter((r) => r.status !== 'clean').map((r) => [r.object_key, r.status, r.location]), [[infectedKey, 'infected', 'quarantine']])
})
