import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FsObjectStore } from '../src/adapters/object-store/fs-object-store.ts'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import { StateUnavailableError } from '../src/ports/state-database.ts'
import type { StateStore } from '../src/ports/state-store.ts'
import type { NewUpload, UploadRecord } from '../src/ports/upload-record.ts'
import { IngestService } from '../src/services/ingest-service.ts'
import { UploadAdmission } from '../src/services/upload-admission.ts'
import { startGateway } from './helpers/gateway.ts'
import { holdUpload, uniqueContent, upload } from './helpers/multipart.ts'
import { RecordingMetrics } from './helpers/recording-metrics.ts'

// Idempotency-Key on POST /v1/uploads: a retry gets the first answer, never a second upload.

const file = (data: Buffer, filename = 'a.txt') => ({ name: 'file', filename, data })

t.test('Idempotency-Key over HTTP', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0' })
  const quarantine = join(gw.dir, 'objects', 'quarantine')
  const records = (): number => {
    const db = new DatabaseSync(join(gw.dir, 'state.db'), { readOnly: true })
    try {
      return Number((db.prepare('SELECT count(*) AS n FROM uploads').get() as { n: number }).n)
    } finally {
      db.close()
    }
  }

  t.test('a retry with the same key and file gets the same answer, and nothing new is stored', async (t) => {
    const data = uniqueContent(5000)
    const first = await upload(gw.url, file(data), { 'idempotency-key': 'order-1' })
    t.equal(first.status, 202)
    const before = records()
    const again = await upload(gw.url, file(data), { 'idempotency-key': 'order-1' })
    t.equal(again.status, 202)
    t.same(again.json, first.json, 'same 202 body, same upload id')
    t.equal(again.headers.location, first.headers.location)
    t.equal(records(), before, 'no second record')
    t.same((await readdir(quarantine)).filter((k) => k === first.json.id), [first.json.id])
    t.equal((await readdir(quarantine)).length, before, 'no second object')
    const other = await upload(gw.url, file(data), { 'idempotency-key': 'order-2' })
    t.not(other.json.id, first.json.id, 'another key is another upload')
    const none = await upload(gw.url, file(data))
    t.not(none.json.id, first.json.id, 'no key: a new upload')
  })

  t.test('the same key with another file is a conflict', async (t) => {
    const first = await upload(gw.url, file(uniqueContent(3000)), { 'idempotency-key': 'conflict-1' })
    t.equal(first.status, 202)
    const before = records()
    for (const data of [uniqueContent(3000), uniqueContent(3001)]) {
      const res = await upload(gw.url, file(data), { 'idempotency-key': 'conflict-1' })
      t.equal(res.status, 409)
      t.equal(res.json.error.code, 'GW_IDEMPOTENCY_CONFLICT')
    }
    t.equal(records(), before, 'nothing recorded')
    t.equal((await readdir(quarantine)).length, before, 'nothing stored')
  })

  t.test('a malformed key is refused with 400 GW_BAD_REQUEST', async (t) => {
    for (const key of ['x'.repeat(256), 'has space', 'tab\there', 'ünïcode']) {
      const res = await fetch(`${gw.url}/v1/uploads`, {
        method: 'POST',
        body: new Uint8Array(Buffer.from('--b\r\ncontent-disposition: form-data; name="file"; filename="a"\r\n\r\nx\r\n--b--\r\n')),
        headers: { 'content-type': 'multipart/form-data; boundary=b', 'idempotency-key': encodeURI(key) === key ? key : Buffer.from(key).toString('latin1') }
      })
      t.equal(res.status, 400, JSON.stringify(key))
      t.equal((await res.json()).error.code, 'GW_BAD_REQUEST')
    }
    t.equal((await upload(gw.url, file(uniqueContent(10)), { 'idempotency-key': 'x'.repeat(255) })).status, 202, '255 characters are fine')
  })

  t.test('a retry while the first is still being received gets 409 with Retry-After, then the first answer', async (t) => {
    const data = uniqueContent(200_000)
    const held = holdUpload(gw.url, data, { headers: { 'idempotency-key': 'slow-1' } })
    // Once its temp file exists, the held upload is being received.
    for (let i = 0; i < 200 && !(await readdir(quarantine)).some((f) => f.endsWith('.tmp')); i++) await sleep(20)
    let retry = await upload(gw.url, file(data, 'held.bin'), { 'idempotency-key': 'slow-1' })
    t.equal(retry.status, 409)
    t.equal(retry.json.error.code, 'GW_IDEMPOTENCY_IN_PROGRESS')
    t.ok(Number(retry.headers['retry-after']) > 0, 'with Retry-After')
    const first = await held.finish()
    t.equal(first.status, 202)
    retry = await upload(gw.url, file(data, 'held.bin'), { 'idempotency-key': 'slow-1' })
    t.equal(retry.status, 202)
    t.equal(retry.json.id, first.json.id, 'once accepted, the retry gets its id')
  })

  t.test('a first attempt that was refused leaves the key to the retry', async (t) => {
    const empty = await upload(gw.url, file(Buffer.alloc(0)), { 'idempotency-key': 'refused-1' })
    t.equal(empty.status, 400)
    const data = uniqueContent(1000)
    const retry = await upload(gw.url, file(data), { 'idempotency-key': 'refused-1' })
    t.equal(retry.status, 202)
    t.same((await upload(gw.url, file(data), { 'idempotency-key': 'refused-1' })).json, retry.json)
  })
})

t.test('keys are scoped to the caller', async (t) => {
  const keys = ['upload-key-aaaaaaaaaaaa', 'upload-key-bbbbbbbbbbbb']
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_KEYS: keys.join(',') })
  const data = uniqueContent(1000)
  const [a, b] = await Promise.all(keys.map((k) => upload(gw.url, file(data), { 'idempotency-key': 'same', authorization: `Bearer ${k}` })))
  t.equal(a?.status, 202)
  t.equal(b?.status, 202)
  t.not(a?.json.id, b?.json.id, 'two callers, two uploads')
})

/** A real SQLite store whose commit loses its answer after committing, and whose next lookup fails too. */
function lostAnswerStore(path: string): StateStore & { failures: number } {
  const real = sqliteStateStore(path)
  const store = {
    ...real,
    failures: 0,
    async commitUpload(u: NewUpload): Promise<void> {
      await real.commitUpload(u)
      if (store.failures-- > 0) throw new StateUnavailableError('state store: connection terminated (answer lost)')
    },
    async getUpload(id: string): Promise<UploadRecord | null> {
      if (store.failures-- > 0) throw new StateUnavailableError('state store: connection terminated')
      return real.getUpload(id)
    }
  }
  return store
}

t.test('an upload recorded although the client got 503 (answer and lookup lost) is found again by its key', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'gw-idem-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const state = lostAnswerStore(join(root, 'state.db'))
  await state.migrate()
  t.teardown(() => state.close())
  const objects = new FsObjectStore({ root: join(root, 'objects') })
  const admission = new UploadAdmission({ maxUploads: 10 })
  const ingest = new IngestService({ objects, intake: state, uploads: state, admission, metrics: new RecordingMetrics() }, { maxBytes: 1e6, keyPrefix: '', storeTimeoutMs: 5000 })
  const log = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} } as never
  const data = uniqueContent(2000)
  const send = async (key: string): Promise<UploadRecord> =>
    ingest.accept(
      {
        files: (async function* () {
          yield { body: Readable.from([data]), filename: 'a.txt', contentType: 'text/plain' }
        })(),
        signal: new AbortController().signal,
        idempotency: { scope: 'anonymous', key }
      },
      log
    )

  state.failures = 2
  await t.rejects(send('lost-1'), StateUnavailableError, 'the client is told 503')
  const stored = await readdir(join(root, 'objects', 'quarantine'))
  t.equal(stored.length, 1, 'the object stays: the store could not tell whether its record was committed')
  const id = stored[0] as string
  t.match(await state.getUpload(id), { status: 'pending' }, 'and the upload was recorded (and will be scanned)')
  const retry = await send('lost-1')
  t.equal(retry.id, id, 'the retry is answered with the recorded upload: no duplicate')
  t.same(await readdir(join(root, 'objects', 'quarantine')), [id], 'one object in quarantine')
  t.equal(admission.uploads, 0, 'both admissions are done')
})
