import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import t, { type Test } from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'
import { startGateway, waitForStatus, type RunningGateway } from './helpers/gateway.ts'
import { createBuckets, listIncompleteUploads, s3ClientFor, startMoto } from './helpers/moto.ts'
import { upload } from './helpers/multipart.ts'
import { typedFiles } from './helpers/typed-files.ts'

exitWhenDone()

// Type checks on multipart uploads, against an S3 API (moto) and a real clamd: judged from the
// content, refused with 415 before anything is recorded, promoted with the detected type.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
const MiB = 1024 * 1024
const [moto, clamd] = await Promise.all([startMoto(), startClamd()])
t.teardown(() => Promise.all([moto.stop(), clamd.stop()]))
await createBuckets(moto.endpoint, 'quarantine', 'production')
const s3 = s3ClientFor(moto.endpoint)
t.teardown(() => s3.destroy())

const env = (prefix: string, allowed: string | null) => ({
  GW_STORE: 's3',
  GW_S3_ENDPOINT: moto.endpoint,
  GW_S3_FORCE_PATH_STYLE: 'true',
  GW_S3_PART_SIZE_BYTES: String(5 * MiB),
  GW_QUARANTINE_BUCKET: 'quarantine',
  GW_PRODUCTION_BUCKET: 'production',
  GW_CLAMD: clamd.url,
  GW_MAX_UPLOAD_BYTES: String(32 * MiB),
  GW_KEY_PREFIX: `${prefix}/`,
  ...(allowed === null ? {} : { GW_ALLOWED_TYPES: allowed })
})
// Three gateways on the same buckets, each under its own key prefix and with its own state.
const images = await startGateway(t, env('images', 'image/*,text/csv,application/zip'))
const svg = await startGateway(t, env('svg', 'image/*,image/svg+xml,text/plain'))
const any = await startGateway(t, env('any', null))

const send = (gw: RunningGateway, data: Buffer, filename: string, contentType: string) => upload(gw.url, { name: 'file', filename, contentType, data })
const keysUnder = async (Bucket: string, prefix: string) => ((await s3.send(new ListObjectsV2Command({ Bucket, Prefix: `${prefix}/` }))).Contents ?? []).map((o) => o.Key)
const records = (gw: RunningGateway): number => {
  const db = new DatabaseSync(join(gw.dir, 'state.db'), { readOnly: true })
  try {
    return Number((db.prepare('SELECT count(*) AS n FROM uploads').get() as { n: number }).n)
  } finally {
    db.close()
  }
}
const promoted = async (gw: RunningGateway, id: string, prefix: string) => {
  const done = await waitForStatus(gw.url, id, ['clean', 'infected', 'unscannable', 'failed'])
  const head = await s3.send(new HeadObjectCommand({ Bucket: 'production', Key: `${prefix}/${id}` }))
  return { done, head }
}

/** A refusal: 415 naming the detected type, and nothing kept (no record, no object, no open multipart upload). */
async function refused(t: Test, gw: RunningGateway, prefix: string, data: Buffer, filename: string, declared: string, detected: string): Promise<void> {
  const before = records(gw)
  const res = await send(gw, data, filename, declared)
  t.equal(res.status, 415, `${filename} declared ${declared}: refused`)
  t.equal(res.json.error.code, 'GW_TYPE_NOT_ALLOWED')
  t.match(res.json.error.message, detected, 'the message names the detected type')
  t.equal(records(gw), before, 'no record')
  t.same(await keysUnder('quarantine', prefix), [], 'no object in quarantine')
  t.same((await listIncompleteUploads(s3, 'quarantine')).filter((u) => u.key.startsWith(`${prefix}/`)), [], 'no open multipart upload')
}

t.test('a PDF renamed .png is application/pdf: refused where only images are allowed, accepted as a PDF where anything is', async (t) => {
  const pdf = typedFiles.pdf()
  await refused(t, images, 'images', pdf, 'photo.png', 'image/png', 'application/pdf')
  const res = await send(any, pdf, 'photo.png', 'image/png')
  t.equal(res.status, 202)
  const { done, head } = await promoted(any, res.json.id, 'any')
  t.match(done, { status: 'clean', contentType: 'application/pdf', filename: 'photo.png' })
  t.equal(head.ContentType, 'application/pdf', 'promoted with the detected type')
  t.notOk(head.ContentDisposition, 'a PDF is not active content')
})

t.test('executables declared image/jpeg are refused', async (t) => {
  await refused(t, images, 'images', typedFiles.elf(), 'cat.jpg', 'image/jpeg', 'application/x-elf')
  await refused(t, images, 'images', typedFiles.exe(), 'cat.jpg', 'image/jpeg', 'application/x-msdownload')
})

t.test('a large refused upload is stopped at its first bytes and leaves no parts behind', async (t) => {
  // Three S3 parts' worth: the refusal comes from the first 4100 bytes, the multipart upload is aborted.
  await refused(t, images, 'images', typedFiles.exe(12 * MiB), 'big.jpg', 'image/jpeg', 'application/x-msdownload')
})

t.test('HTML declared text/plain is text/html: refused unless text/html is named; promoted as an attachment', async (t) => {
  await refused(t, svg, 'svg', typedFiles.html(), 'notes.txt', 'text/plain', 'text/html')
  const res = await send(any, typedFiles.html(), 'notes.txt', 'text/plain')
  t.equal(res.status, 202, 'accepted where no list is set')
  const { done, head } = await promoted(any, res.json.id, 'any')
  t.match(done, { status: 'clean', contentType: 'text/html' })
  t.equal(head.ContentType, 'text/html')
  t.equal(head.ContentDisposition, 'attachment', 'active content is never rendered inline')
})

t.test('an SVG with a script: image/* does not cover it; named, it passes and is promoted as an attachment', async (t) => {
  await refused(t, images, 'images', typedFiles.svg(), 'logo.svg', 'image/svg+xml', 'image/svg+xml')
  const res = await send(svg, typedFiles.svg(), 'logo.png', 'image/png')
  t.equal(res.status, 202)
  const { done, head } = await promoted(svg, res.json.id, 'svg')
  t.match(done, { status: 'clean', contentType: 'image/svg+xml' })
  t.equal(head.ContentType, 'image/svg+xml')
  t.equal(head.ContentDisposition, 'attachment')
  const object = await s3.send(new GetObjectCommand({ Bucket: 'production', Key: `svg/${res.json.id}` }))
  t.equal(object.ContentDisposition, 'attachment', 'served as a download')
  t.match(object.Metadata, { 'upload-id': res.json.id }, 'the metadata survives the new content type')
})

t.test('a UTF-8 CSV is text/csv, accepted where listed; a zip is application/zip', async (t) => {
  const csv = await send(images, typedFiles.csv(), 'report.csv', 'application/vnd.ms-excel')
  t.equal(csv.status, 202)
  const { done, head } = await promoted(images, csv.json.id, 'images')
  t.match(done, { status: 'clean', contentType: 'text/csv' })
  t.equal(head.ContentType, 'text/csv')
  t.notOk(head.ContentDisposition)
  await refused(t, svg, 'svg', typedFiles.csv(), 'report.csv', 'text/csv', 'text/csv')

  const zipped = await send(images, typedFiles.zip(), 'archive.bin', 'application/octet-stream')
  t.equal(zipped.status, 202)
  const z = await promoted(images, zipped.json.id, 'images')
  t.match(z.done, { status: 'clean', contentType: 'application/zip' })
  t.equal(z.head.ContentType, 'application/zip')
})
