import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import t from 'tap'
import { objectSha256, sha256 } from './helpers/bucket-checks.ts'
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.ts'
import { startClamd } from './helpers/clamd.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { MiB, PRODUCTION, QUARANTINE, s3PgEnv } from './helpers/gateway-env.ts'
import { createBuckets, listIncompleteUploads, s3ClientFor, startMoto } from './helpers/moto.ts'
import { freshSchema } from './helpers/postgres.ts'
import { uniqueContent } from './helpers/multipart.ts'
import { tusUpload } from './helpers/tus.ts'

exitWhenDone()

// tus on S3 (moto) with a real clamd: in one process on SQLite, and across two replicas on PostgreSQL.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const [moto, clamd] = await Promise.all([startMoto(), startClamd()])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())
const idOf = (url: string) => url.split('/').pop() ?? ''
const TERMINAL = ['clean', 'infected', 'unscannable', 'failed']

async function quarantineKeys(prefix: string): Promise<string[]> {
  const page = await s3.send(new ListObjectsV2Command({ Bucket: QUARANTINE, Prefix: prefix }))
  return (page.Contents ?? []).map((o) => o.Key ?? '')
}

t.test('an upload interrupted at half and resumed ends clean with the right SHA-256, its helper objects gone', async (t) => {
  const gw = await startGateway(t, {
    GW_STORE: 's3',
    GW_S3_ENDPOINT: moto.endpoint,
    GW_S3_FORCE_PATH_STYLE: 'true',
    GW_S3_PART_SIZE_BYTES: String(5 * MiB),
    GW_QUARANTINE_BUCKET: QUARANTINE,
    GW_PRODUCTION_BUCKET: PRODUCTION,
    GW_CLAMD: clamd.url,
    GW_MAX_UPLOAD_BYTES: String(16 * MiB),
    GW_KEY_PREFIX: 'tus/'
  })
  const content = uniqueContent(11 * MiB)
  // Chunks below S3's 5 MiB part minimum: the store keeps the rest of each PATCH as `<key>.part`.
  const chunkSize = 3 * MiB
  const first = await tusUpload(`${gw.url}/v1/tus`, content, { chunkSize, abortAt: content.length / 2, metadata: { filename: 'big.bin' } })
  const id = idOf(first.url)
  t.ok((await quarantineKeys(`tus/${id}`)).includes(`tus/${id}.info`), 'the tus info object is beside the upload')
  const done = await tusUpload(`${gw.url}/v1/tus`, content, { chunkSize, uploadUrl: first.url })
  t.ok(done.resumedAt !== null && done.resumedAt > 0 && done.resumedAt < content.length, `resumed from offset ${done.resumedAt}`)
  t.equal(done.statusUrl, `/v1/uploads/${id}`)
  const status = await waitForStatus(gw.url, id, TERMINAL, { timeoutMs: 60_000 })
  t.match(status, { status: 'clean', size: content.length, sha256: sha256(content), filename: 'big.bin', object: { bucket: PRODUCTION, key: `tus/${id}` } })
  t.equal(await objectSha256(s3, PRODUCTION, `tus/${id}`), sha256(content), 'production holds the same bytes')
  t.same(await quarantineKeys(`tus/${id}`), [], 'no object, .info or .part left in quarantine')
  t.same((await listIncompleteUploads(s3, QUARANTINE)).filter((u) => u.key.includes(id)), [], 'no open multipart upload left')
})

t.test('two replicas taking alternate chunks of one upload: it ends clean with the right SHA-256', async (t) => {
  const schema = await freshSchema(t)
  const env = { ...s3PgEnv({ s3Endpoint: moto.endpoint, schema, clamd: clamd.url }), GW_MAX_UPLOAD_BYTES: String(16 * MiB) }
  const replicas: ChildGateway[] = []
  // One at a time: both migrate the same fresh schema.
  for (let i = 0; i < 2; i++) replicas.push(await startChildGateway(t, env))
  const content = uniqueContent(13 * MiB)
  const headers = { 'tus-resumable': '1.0.0' }
  const created = await fetch(`${replicas[0]?.url}/v1/tus`, { method: 'POST', headers: { ...headers, 'upload-length': String(content.length) } })
  t.equal(created.status, 201)
  const path = created.headers.get('location') ?? ''
  const id = idOf(path)
  const chunk = 3 * MiB
  let statusUrl: string | null = null
  for (let offset = 0, n = 0; offset < content.length; offset += chunk, n++) {
    const replica = replicas[n % 2] as ChildGateway
    const head = await fetch(`${replica.url}${path}`, { method: 'HEAD', headers })
    t.equal(head.headers.get('upload-offset'), String(offset), `replica ${n % 2} sees offset ${offset}`)
    const res = await fetch(`${replica.url}${path}`, {
      method: 'PATCH',
      headers: { ...headers, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
      body: new Uint8Array(content.subarray(offset, offset + chunk))
    })
    t.equal(res.status, 204, `PATCH ${n} on replica ${n % 2}`)
    t.equal(res.headers.get('upload-offset'), String(Math.min(offset + chunk, content.length)))
    statusUrl = res.headers.get('upload-status-url')
  }
  t.equal(statusUrl, `/v1/uploads/${id}`, 'the final PATCH names the status URL')
  const status = await waitForStatus(replicas[0]?.url ?? '', id, TERMINAL, { timeoutMs: 60_000 })
  t.match(status, { status: 'clean', size: content.length, sha256: sha256(content) })
  t.equal(await objectSha256(s3, PRODUCTION, id), sha256(content))
})
