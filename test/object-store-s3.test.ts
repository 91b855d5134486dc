import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { HeadObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { S3ObjectStore, type S3ObjectStoreOptions } from '../src/adapters/object-store/s3-object-store.ts'
import { StoreUnavailableError } from '../src/ports/object-store.ts'
import { startFaultyProxy } from './helpers/faulty-proxy.ts'
import { freePort } from './helpers/free-port.ts'
import { createBuckets, listIncompleteUploads, s3ClientFor, startMoto } from './helpers/moto.ts'
import { digest, generatedBody, objectStoreContract } from './object-store-contract.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'

exitWhenDone()

const MiB = 1024 * 1024
const QUARANTINE = 'quarantine-uploads'
const PRODUCTION = 'production-uploads'

const moto = await startMoto()
t.teardown(() => moto.stop())
await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
const admin = s3ClientFor(moto.endpoint)
t.teardown(() => admin.destroy())
const incomplete = (): ReturnType<typeof listIncompleteUploads> => listIncompleteUploads(admin, QUARANTINE, PRODUCTION)

/** Small parts and queue so that a 20 MB body cannot fit in what a put may buffer (5 MiB × 3). */
function storeFor(overrides: Partial<S3ObjectStoreOptions> = {}): S3ObjectStore {
  return new S3ObjectStore({
    endpoint: moto.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    quarantineBucket: QUARANTINE,
    productionBucket: PRODUCTION,
    partSizeBytes: 5 * MiB,
    queueSize: 2,
    ...overrides
  })
}

objectStoreContract(t, 's3 (moto)', async () => {
  const store = storeFor()
  return { store, cleanup: () => store.close(), listIncomplete: incomplete }
})

t.test('objects above the threshold are copied in parts with the given content type and disposition, metadata and tags', async (t) => {
  const store = storeFor({ multipartCopyThresholdBytes: 5 * MiB, copyPartSizeBytes: 5 * MiB })
  t.teardown(() => store.close())
  const data = randomBytes(12 * MiB)
  await store.put('quarantine', 'mpc/big.bin', Readable.from([data]), { contentType: 'application/zip', metadata: { sha256: 'x' } })
  await store.copy('quarantine', 'production', 'mpc/big.bin', { verdict: 'clean' }, { contentType: 'text/html', contentDisposition: 'attachment' })
  const { body, info } = await store.get('production', 'mpc/big.bin')
  t.match(info, { size: data.length, contentType: 'text/html', contentDisposition: 'attachment', metadata: { sha256: 'x' }, version: /-3"?$/ })
  t.same(await digest(body), { sha256: createHash('sha256').update(data).digest('hex'), bytes: data.length })
  t.same(await store.getTags('production', 'mpc/big.bin'), { verdict: 'clean' })
  const head = await admin.send(new HeadObjectCommand({ Bucket: PRODUCTION, Key: 'mpc/big.bin' }))
  t.match(head.ETag, /-3"$/, 'a multipart ETag: three parts')
  t.same(await incomplete(), [])
})

t.test('a failing part copy aborts the multipart copy', async (t) => {
  const store = storeFor({ multipartCopyThresholdBytes: 5 * MiB, copyPartSizeBytes: 5 * MiB })
  t.teardown(() => store.close())
  await store.put('quarantine', 'mpc/fail.bin', generatedBody(12 * MiB, {}).stream, { contentType: 'application/zip', metadata: {} })
  let calls = 0
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'UploadPartCopyCommand' && ++calls === 2) throw new Error('injected part failure')
      return next(args)
    },
    { step: 'initialize', name: 'failSecondPartCopy' }
  )
  await t.rejects(store.copy('quarantine', 'production', 'mpc/fail.bin', { verdict: 'clean' }), /injected part failure/)
  t.equal(await store.head('production', 'mpc/fail.bin'), null)
  t.same(await incomplete(), [], 'no parts are left behind')
})

t.test('an S3 error on a part after others were stored aborts the upload: no parts are left', async (t) => {
  const store = storeFor()
  t.teardown(() => store.close())
  let parts = 0
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'UploadPartCommand' && ++parts === 3) {
        throw Object.assign(new Error('injected 503'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } })
      }
      return next(args)
    },
    { step: 'initialize', name: 'failThirdPart' }
  )
  const err = await store.put('quarantine', 'part-fail/x', generatedBody(20 * MiB, {}).stream, { contentType: 'text/plain', metadata: {} }).catch((e: unknown) => e)
  t.type(err, StoreUnavailableError, '5xx is transient')
  t.equal(await store.head('quarantine', 'part-fail/x'), null)
  t.same(await incomplete(), [])
})

t.test('check() names a missing bucket', async (t) => {
  const store = storeFor({ productionBucket: 'no-such-bucket' })
  t.teardown(() => store.close())
  t.same(await store.check(), [
    { area: 'quarantine', ok: true },
    { area: 'production', ok: false, detail: 'bucket no-such-bucket does not exist' }
  ])
  await t.rejects(store.put('production', 'k', Readable.from([Buffer.from('x')]), { contentType: 'text/plain', metadata: {} }), StoreUnavailableError)
})

t.test('check() reports an unreachable endpoint promptly', async (t) => {
  const store = storeFor({ endpoint: `http://127.0.0.1:${await freePort()}` })
  t.teardown(() => store.close())
  const started = Date.now()
  const health = await store.check()
  t.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`)
  t.same(health.map((h) => h.ok), [false, false])
  t.match(health[0]?.detail, /^bucket quarantine-uploads is unreachable: .*ECONNREFUSED/)
})

t.test('check() is bounded when the endpoint accepts and never answers', async (t) => {
  const proxy = await startFaultyProxy(moto.port, 'hang')
  t.teardown(() => proxy.stop())
  const store = storeFor({ endpoint: `http://127.0.0.1:${proxy.port}`, checkTimeoutMs: 500 })
  t.teardown(() => store.close())
  const started = Date.now()
  const health = await store.check()
  t.ok(Date.now() - started < 3000, `answered in ${Date.now() - started} ms`)
  t.same(health[1], { area: 'production', ok: false, detail: 'bucket production-uploads did not answer within 500 ms' })
})

for (const mode of ['refuse', 'reset'] as const) {
  t.test(`an S3 that fails connections (${mode}) fails the put with StoreUnavailableError and leaves no parts`, async (t) => {
    const proxy = await startFaultyProxy(moto.port)
    t.teardown(() => proxy.stop())
    const store = storeFor({ endpoint: `http://127.0.0.1:${proxy.port}` })
    t.teardown(() => store.close())
    await store.put('quarantine', 'faulty/ok', Readable.from([Buffer.from('fine')]), { contentType: 'text/plain', metadata: {} })
    await proxy.setMode(mode)
    const err = await store.put('quarantine', 'faulty/x', generatedBody(12 * MiB, {}).stream, { contentType: 'text/plain', metadata: {} }).catch((e: unknown) => e)
    t.type(err, StoreUnavailableError)
    t.match((err as Error).message, mode === 'refuse' ? /ECONNREFUSED/ : /ECONNRESET|socket hang up/)
    t.ok((err as Error).cause, 'the SDK error is kept as cause')
    t.same(await incomplete(), [])
    t.same(await store.check().then((h) => h.map((a) => a.ok)), [false, false])
    await proxy.setMode('pass')
    t.same(await store.check().then((h) => h.map((a) => a.ok)), [true, true], 'recovers when S3 is back')
  })
}

t.test('an S3 that stops answering fails the put after the idle timeout', async (t) => {
  const proxy = await startFaultyProxy(moto.port, 'hang')
  t.teardown(() => proxy.stop())
  const store = storeFor({ endpoint: `http://127.0.0.1:${proxy.port}`, idleTimeoutMs: 300 })
  t.teardown(() => store.close())
  const started = Date.now()
  await t.rejects(store.put('quarantine', 'hang/x', Readable.from([Buffer.from('x')]), { contentType: 'text/plain', metadata: {} }), StoreUnavailableError)
  t.ok(Date.now() - started < 10_000, `failed in ${Date.now() - started} ms`)
})

t.test('part buffer pool: many puts at once share a pool of two buffers; all complete and it is never exceeded', async (t) => {
  const store = storeFor({ queueSize: 1, bufferPoolBytes: 10 * MiB })
  t.teardown(() => store.close())
  let highest = 0
  const watching = setInterval(() => (highest = Math.max(highest, store.poolUsage.taken)), 5)
  t.teardown(() => clearInterval(watching))
  const bodies = Array.from({ length: 6 }, (_, i) => ({ key: `pool/many-${i}`, body: generatedBody((i % 2 === 0 ? 12 : 1) * MiB, {}) }))
  let waits = 0
  await Promise.all(
    bodies.map(({ key, body }) =>
      store.put('quarantine', key, body.stream, { contentType: 'application/octet-stream', metadata: {}, onBufferWait: (waiting) => void (waiting && waits++) })
    )
  )
  clearInterval(watching)
  for (const { key, body } of bodies) t.same(await digest((await store.get('quarantine', key)).body), { sha256: body.sha256(), bytes: body.produced() }, key)
  t.ok(waits > 0, `puts waited for a buffer (${waits} times)`)
  t.ok(highest <= 2, `never more than two buffers taken (${highest})`)
  t.same(store.poolUsage, { taken: 0, allocated: 2, capacity: 2 }, 'every buffer given back; no more ever allocated')
  t.same(await incomplete(), [])
})

t.test('part buffer pool: a put aborted while it waits for a buffer ends at once and releases everything', async (t) => {
  const store = storeFor({ queueSize: 1, bufferPoolBytes: 5 * MiB })
  t.teardown(() => store.close())
  // Holds the one buffer: stalls with a part half filled.
  const holder = generatedBody(20 * MiB, { stallAt: 2 * MiB })
  const holding = new AbortController()
  const held = store.put('quarantine', 'pool/holder', holder.stream, { contentType: 'text/plain', metadata: {}, signal: holding.signal }).catch((err: unknown) => err)
  await waitUntil(() => store.poolUsage.taken === 1)
  const waiter = generatedBody(8 * MiB, {})
  const ac = new AbortController()
  let waiting = false
  const put = store.put('quarantine', 'pool/waiter', waiter.stream, { contentType: 'text/plain', metadata: {}, signal: ac.signal, onBufferWait: (w) => void (waiting = w) })
  await waitUntil(() => waiting)
  t.ok(waiter.produced() < 1 * MiB, 'the waiting put reads no more than the streams in between hold')
  ac.abort(new Error('client went away'))
  await t.rejects(put, { name: 'AbortError' })
  t.equal(waiting, false, 'no longer waiting')
  t.ok(waiter.stream.destroyed, 'its body is released')
  holding.abort(new Error('done'))
  t.match(await held, { name: 'AbortError' })
  t.same(store.poolUsage.taken, 0, 'no buffer is held')
  t.equal(await store.head('quarantine', 'pool/waiter'), null)
  t.same(await incomplete(), [])
  // The pool still serves: a put after all that completes.
  await store.put('quarantine', 'pool/after', Readable.from([Buffer.from('after')]), { contentType: 'text/plain', metadata: {} })
  t.match(await store.head('quarantine', 'pool/after'), { size: 5 })
})

t.test('part buffer pool: a body that fails while its put waits for a buffer ends the put at once, with its own error', async (t) => {
  const store = storeFor({ queueSize: 1, bufferPoolBytes: 5 * MiB })
  t.teardown(() => store.close())
  const holder = generatedBody(20 * MiB, { stallAt: 2 * MiB })
  const holding = new AbortController()
  const held = store.put('quarantine', 'pool/holder-2', holder.stream, { contentType: 'text/plain', metadata: {}, signal: holding.signal }).catch((err: unknown) => err)
  await waitUntil(() => store.poolUsage.taken === 1)
  const waiter = generatedBody(8 * MiB, {})
  let waiting = false
  const put = store.put('quarantine', 'pool/refused', waiter.stream, { contentType: 'text/plain', metadata: {}, onBufferWait: (w) => void (waiting = w) })
  await waitUntil(() => waiting)
  // As the meter does for a refused type or a size limit: the body is destroyed with the reason.
  waiter.stream.destroy(new Error('type not allowed'))
  // The one buffer is still held by the stalled put: only the body's failure can end this wait.
  await t.rejects(put, { message: 'type not allowed' })
  t.equal(waiting, false, 'no longer waiting')
  t.equal(store.poolUsage.taken, 1, 'the holder still has its buffer')
  holding.abort(new Error('done'))
  await held
  t.same(store.poolUsage.taken, 0)
  t.same(await incomplete(), [])
})

async function waitUntil(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
