import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { FsObjectStore } from '../src/adapters/object-store/fs-object-store.ts'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import { rejection } from '../src/ports/upload-record.ts'
import { rejectionReason } from '../src/services/content-type-check.ts'
import { IngestService, type UploadRequest } from '../src/services/ingest-service.ts'
import { UploadAdmission } from '../src/services/upload-admission.ts'
import { UploadEvents } from '../src/services/upload-events.ts'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { upload } from './helpers/multipart.ts'
import { RecordingMetrics } from './helpers/recording-metrics.ts'
import { typedFiles } from './helpers/typed-files.ts'

// Type checks on the embedded defaults (fs object store, SQLite) with a real clamd, and the
// token's types at the ingest service (the route fills them from a token's claims).
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const admin = 'admin-key-type-checks-0001'
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_ALLOWED_TYPES: 'image/*,image/svg+xml,application/pdf', GW_ADMIN_KEYS: admin })
const objects = join(gw.dir, 'objects')
const records = (): number => {
  const db = new DatabaseSync(join(gw.dir, 'state.db'), { readOnly: true })
  try {
    return Number((db.prepare('SELECT count(*) AS n FROM uploads').get() as { n: number }).n)
  } finally {
    db.close()
  }
}

t.test('a 415 leaves no file in quarantine and no record', async (t) => {
  const before = records()
  const res = await upload(gw.url, { name: 'file', filename: 'page.html', contentType: 'image/png', data: typedFiles.html() })
  t.equal(res.status, 415)
  t.match(res.json.error, { code: 'GW_TYPE_NOT_ALLOWED', message: /text\/html/ })
  t.equal(records(), before)
  t.same(await readdir(join(objects, 'quarantine')).catch(() => []), [], 'nothing in quarantine')
})

t.test('an SVG named in the list is promoted with its type and Content-Disposition: attachment (fs sidecar)', async (t) => {
  const res = await upload(gw.url, { name: 'file', filename: 'logo.svg', contentType: 'text/plain', data: typedFiles.svg() })
  t.equal(res.status, 202)
  t.match(await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed']), { status: 'clean', contentType: 'image/svg+xml' })
  const sidecar = JSON.parse(await readFile(join(objects, 'production.meta', res.json.id), 'utf8'))
  t.match(sidecar, { contentType: 'image/svg+xml', contentDisposition: 'attachment', metadata: { 'upload-id': res.json.id } })
  const png = await upload(gw.url, { name: 'file', filename: 'a.png', contentType: 'image/png', data: Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(64, 1)]) })
  t.equal(png.status, 202)
  await waitForStatus(gw.url, png.json.id, ['clean'])
  const pngSidecar = JSON.parse(await readFile(join(objects, 'production.meta', png.json.id), 'utf8'))
  t.equal(pngSidecar.contentType, 'image/png')
  t.notOk('contentDisposition' in pngSidecar && pngSidecar.contentDisposition, 'a PNG is shown inline')
})

t.test('a rejected upload shows as rejected, with its reason; it is neither released nor rescanned', async (t) => {
  const state = gw.gateway.state
  const id = 'ab'.repeat(16)
  const now = Date.now()
  await state.beginUpload({ id, objectKey: id, createdAt: now }, null, now)
  const u = { id, objectKey: id, size: 10, sha256: 'c'.repeat(64), filename: 'x.png', contentType: 'text/html', createdAt: now }
  await state.commitRejectedUpload(u, rejectionReason('text/html'))
  const view = await (await fetch(`${gw.url}/v1/uploads/${id}`)).json()
  t.match(view, { status: 'rejected', contentType: 'text/html', verdict: { result: 'rejected', reason: /text\/html/, engine: 'content-type' } })
  t.notOk(view.object, 'no object to fetch')
  const post = (path: string, body: unknown) =>
    fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  t.equal((await post(`/v1/uploads/${id}/release`, { reason: 'trust me' })).status, 409, 'bytes never scanned are never released')
  t.equal((await post(`/v1/uploads/${id}/rescan`, {})).status, 409)
})

t.test('upload.rejected events name the detected type, only when webhooks are on', async (t) => {
  const u = { id: 'u1', objectKey: 'k/u1', size: 3, sha256: 'd'.repeat(64), filename: 'a.png', contentType: 'text/html', createdAt: 1 }
  const [event] = new UploadEvents(true).rejected(u, rejectionReason('text/html'), 5)
  t.match(event, { type: 'upload.rejected', createdAt: 5, data: { uploadId: 'u1', contentType: 'text/html', verdict: rejection(rejectionReason('text/html')) } })
  t.same(new UploadEvents(false).rejected(u, 'x', 5), [])
})

t.test("a token's types narrow GW_ALLOWED_TYPES and never widen it", async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'gw-types-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const state = sqliteStateStore(join(root, 'state.db'))
  await state.migrate()
  t.teardown(() => state.close())
  const store = new FsObjectStore({ root: join(root, 'objects') })
  const deps = { objects: store, intake: state, uploads: state, admission: new UploadAdmission({ maxUploads: 10 }), metrics: new RecordingMetrics() }
  const log = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} } as never
  const ingestWith = (allowedTypes: string[]) => new IngestService(deps, { maxBytes: 1e7, keyPrefix: '', storeTimeoutMs: 5000, allowedTypes })
  const request = (data: Buffer, allowedTypes: string[] | null): UploadRequest => ({
    files: (async function* () {
      // Chunks of 1000 bytes: the sample (4100 bytes) is complete before the file ends.
      yield { body: Readable.from(Array.from({ length: Math.ceil(data.length / 1000) }, (_, i) => data.subarray(i * 1000, (i + 1) * 1000))), filename: 'f', contentType: 'image/png' }
    })(),
    signal: new AbortController().signal,
    allowedTypes
  })
  const any = ingestWith([])
  await t.rejects(any.accept(request(typedFiles.pdf(), ['image/png']), log), { code: 'GW_TYPE_NOT_ALLOWED', message: /application\/pdf/ })
  t.match(await any.accept(request(typedFiles.pdf(), ['image/png', 'application/pdf']), log), { contentType: 'application/pdf', status: 'pending' })
  t.match(await any.accept(request(typedFiles.elf(20_000), null), log), { contentType: 'application/x-elf' }, 'no list and no token types: anything')
  const images = ingestWith(['image/*'])
  await t.rejects(images.accept(request(typedFiles.pdf(), ['application/pdf']), log), { code: 'GW_TYPE_NOT_ALLOWED' }, 'a token cannot widen the gateway list')
  await t.rejects(images.accept(request(typedFiles.exe(50_000), ['image/*']), log), { code: 'GW_TYPE_NOT_ALLOWED' }, 'refused mid-stream')
  t.same(await readdir(join(root, 'objects', 'quarantine')).then((names) => names.length), 2, 'only the two accepted uploads are stored')
  t.equal(await state.claimIntents(Date.now(), 0, Date.now() + 60_000, 10).then((i) => i.length), 3, 'the refused ones were abandoned: the sweeper finishes them')
})
