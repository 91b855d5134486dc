import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FsObjectStore } from '../src/adapters/object-store/fs-object-store.ts'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import { startGateway } from './helpers/gateway.ts'

// The orphan sweeper, on the fs store and SQLite: what no committed record names goes once older
// than GW_ORPHAN_AFTER (or at once when its upload was abandoned); nothing committed, nothing young.

const HOUR = 3_600_000

t.test('the sweeper removes uncommitted uploads, stray objects and temp files, and nothing else', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'gw-orphans-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const objects = new FsObjectStore({ root: join(root, 'objects') })
  const state = sqliteStateStore(join(root, 'state.db'))
  await state.migrate()
  const quarantine = join(root, 'objects', 'quarantine')
  const old = Date.now() - 2 * HOUR
  const put = (key: string): Promise<void> => objects.put('quarantine', key, Readable.from([randomBytes(100)]), { contentType: 'text/plain', metadata: {} })
  const age = (key: string): Promise<void> => utimes(join(quarantine, key), old / 1000, old / 1000)
  const intent = async (createdAt: number): Promise<{ id: string; objectKey: string; size: number; sha256: string; filename: null; contentType: string; createdAt: number }> => {
    const id = randomBytes(16).toString('hex')
    await state.beginUpload({ id, objectKey: id, createdAt }, null, createdAt)
    await put(id)
    await age(id)
    return { id, objectKey: id, size: 100, sha256: 'a'.repeat(64), filename: null, contentType: 'text/plain', createdAt }
  }
  // A gateway killed between storing and committing: an old intent with its object.
  const killed = await intent(old)
  // A refused upload whose delete failed: abandoned, young.
  const refused = await intent(Date.now())
  await state.abandonUpload(refused.id, Date.now())
  // Committed uploads, old and young: never touched.
  const committedOld = await intent(old)
  await state.commitUpload(committedOld)
  // An upload in flight: young intent, not committed yet.
  const inFlight = await intent(Date.now())
  await put(inFlight.id) // written just now
  // From before intents existed: an old object nothing names, and a young one.
  const strayOld = randomBytes(16).toString('hex')
  await put(strayOld)
  await age(strayOld)
  const strayYoung = randomBytes(16).toString('hex')
  await put(strayYoung)
  // A temp file a killed process left (an open upload), and one being written now.
  const tempOld = `.${randomBytes(16).toString('hex')}.${randomUUID()}.tmp`
  const tempYoung = `.${randomBytes(16).toString('hex')}.${randomUUID()}.tmp`
  await writeFile(join(quarantine, tempOld), 'partial')
  await utimes(join(quarantine, tempOld), old / 1000, old / 1000)
  await writeFile(join(quarantine, tempYoung), 'partial')
  await state.close()

  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '1', GW_ORPHAN_AFTER: '1h', GW_ORPHAN_SWEEP_INTERVAL_MS: '100', GW_CLAMD: 'tcp://127.0.0.1:1' }, root)
  const expected = [committedOld.id, inFlight.id, strayYoung, tempYoung].sort()
  const files = async (): Promise<string[]> => (await readdir(quarantine)).sort()
  for (let i = 0; i < 100 && (await files()).join() !== expected.join(); i++) await sleep(100)
  t.same(await files(), expected, 'left: the committed upload, the upload in flight, the young stray object and the young temp file')
  const { state: live } = gw.gateway
  t.same(await live.knownKeys([killed.id, refused.id, inFlight.id]), new Set([inFlight.id]), 'the swept intents are gone; the one in flight stays')
  await t.rejects(live.commitUpload(killed), { name: 'UploadIntentLostError' }, 'a late commit of a swept upload is refused')
  await live.commitUpload(inFlight)
  // Its commit wakes the gateway's worker, which may claim it before this read: pending or scanning.
  t.match(await live.getUpload(inFlight.id), { status: /^(pending|scanning)$/ }, 'the upload in flight commits normally')
  t.equal((await fetch(`${gw.url}/v1/uploads/${killed.id}`)).status, 404, 'a swept upload was never an upload')
})

t.test('an upload that outlives GW_ORPHAN_AFTER is swept and refused with 503, not accepted without its object', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '1', GW_ORPHAN_AFTER: '300ms', GW_ORPHAN_SWEEP_INTERVAL_MS: '100', GW_CLAMD: 'tcp://127.0.0.1:1' })
  const boundary = 'x' + randomUUID()
  const head = `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="slow.txt"\r\ncontent-type: text/plain\r\n\r\n`
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(Buffer.from(head + 'first half '))
      await sleep(1_500) // well past GW_ORPHAN_AFTER and several sweeps
      controller.enqueue(Buffer.from(`second half\r\n--${boundary}--\r\n`))
      controller.close()
    }
  })
  const res = await fetch(`${gw.url}/v1/uploads`, { method: 'POST', body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, duplex: 'half' } as RequestInit)
  t.equal(res.status, 503)
  t.equal((await res.json()).error.code, 'GW_STORE_UNAVAILABLE')
  t.ok(res.headers.get('retry-after'), 'with Retry-After')
  const quarantine = join(gw.dir, 'objects', 'quarantine')
  for (let i = 0; i < 50 && (await readdir(quarantine)).length > 0; i++) await sleep(100)
  t.same(await readdir(quarantine), [], 'nothing left in quarantine')
})
