import { createHash } from 'node:crypto'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { GatewayError } from '../src/domain/errors.ts'
import { TransferGuard } from '../src/services/transfer-guard.ts'
import { UploadAdmission } from '../src/services/upload-admission.ts'
import { startGateway } from './helpers/gateway.ts'
import { MiB, PRODUCTION, QUARANTINE } from './helpers/gateway-env.ts'
import { createBuckets, startMoto } from './helpers/moto.ts'
import { holdUpload, upload, uniqueContent } from './helpers/multipart.ts'

// The in-process gateway's SDK reads its credentials from the environment.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'

t.test('admission bounds the number of uploads at once', async (t) => {
  const admission = new UploadAdmission({ maxUploads: 2 })
  const a = admission.admit()
  const b = admission.admit()
  t.ok(a && b)
  t.equal(admission.admit(), null, 'at the bound of uploads at once')
  a!.done()
  a!.done() // a second done gives nothing back twice
  t.equal(admission.uploads, 1)
  t.ok(admission.admit(), 'a slot freed is taken again')
  b!.done()
})

t.test('transfer guard: a client is timed only while the gateway reads it', async (t) => {
  const guard = new TransferGuard({ minBytesPerSecond: 1000, windowMs: 400, idleTimeoutMs: 200 })
  const watch = (stream: PassThrough, bytes: () => number): { failure: () => GatewayError | null; stop: () => void } => {
    let failure: GatewayError | null = null
    const stop = guard.watch({ stream, bytesReceived: bytes, complete: () => false }, (err) => (failure = err))
    return { failure: () => failure, stop }
  }
  const until = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 250 && !check(); i++) await sleep(20)
  }

  const held = new PassThrough().resume()
  held.pause() // backpressure: the store is slow, the gateway stops reading
  const idle = watch(held, () => 0)
  await sleep(1000)
  t.equal(idle.failure(), null, 'five idle timeouts without reading the client: none of it counts')
  held.resume()
  await until(() => idle.failure() !== null)
  t.match(idle.failure(), { code: 'GW_TOO_SLOW', message: /nothing for 200 ms/ }, 'once the gateway reads again, a silent client is cut off')

  const trickling = new PassThrough().resume()
  let sent = 0
  const feed = setInterval(() => (sent += 5), 40) // about 125 bytes per second
  const slow = watch(trickling, () => sent)
  await until(() => slow.failure() !== null)
  clearInterval(feed)
  t.match(slow.failure(), { code: 'GW_TOO_SLOW', message: /less than the minimum of 1000 bytes per second/ }, 'a trickle below the rate is cut off')

  const fast = new PassThrough().resume()
  let plenty = 0
  const pour = setInterval(() => (plenty += 1000), 40)
  const quick = watch(fast, () => plenty)
  await sleep(1000)
  clearInterval(pour)
  quick.stop()
  t.equal(quick.failure(), null, 'a client above the rate is left alone')
})

t.test('past the bound of uploads at once: 503 GW_BUSY with Retry-After, then uploads go through again', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_MAX_CONCURRENT_UPLOADS: '2' })
  const held = [holdUpload(gw.url, uniqueContent(200_000)), holdUpload(gw.url, uniqueContent(200_000))]
  await waitFor(() => busy(gw.url))
  const refused = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) })
  t.equal(refused.status, 503)
  t.equal(refused.json.error.code, 'GW_BUSY')
  t.equal(refused.headers['retry-after'], '5')
  for (const h of held) t.equal((await h.finish()).status, 202, 'the uploads in flight are not disturbed')
  t.equal((await upload(gw.url, { name: 'file', filename: 'b.txt', data: uniqueContent(100) })).status, 202)
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(metrics, /gateway_uploads_total\{outcome="busy"\} [1-9]/)
  t.match(metrics, /gateway_uploads_total\{outcome="accepted"\} 3/)
})

t.test('past the upload memory: uploads wait for a part buffer (the gateway reads them more slowly), none is refused', async (t) => {
  const moto = await startMoto()
  t.teardown(() => moto.stop())
  await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
  const gw = await startGateway(t, {
    GW_STORE: 's3',
    GW_S3_ENDPOINT: moto.endpoint,
    GW_S3_FORCE_PATH_STYLE: 'true',
    GW_QUARANTINE_BUCKET: QUARANTINE,
    GW_PRODUCTION_BUCKET: PRODUCTION,
    GW_S3_PART_SIZE_BYTES: String(5 * MiB),
    GW_S3_QUEUE_SIZE: '1',
    // Two part buffers for the whole process: four uploads of three parts each must share them.
    GW_UPLOAD_MEMORY_BYTES: String(10 * MiB),
    GW_SCAN_CONCURRENCY: '0'
  })
  let highest = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const text = await (await fetch(`${gw.url}/metrics`)).text()
      highest = Math.max(highest, Number(/^gateway_upload_memory_reserved_bytes (\d+)/m.exec(text)?.[1] ?? 0))
      await sleep(50)
    }
  })()
  const files = Array.from({ length: 4 }, () => uniqueContent(12 * MiB))
  const answers = await Promise.all(files.map((data, i) => upload(gw.url, { name: 'file', filename: `f${i}.bin`, data })))
  sampling = false
  await sampler
  t.same(answers.map((a) => a.status), [202, 202, 202, 202], 'every upload is accepted')
  t.same(
    answers.map((a) => a.json.sha256),
    files.map((f) => createHash('sha256').update(f).digest('hex')),
    'each stored exactly as sent'
  )
  t.ok(highest > 0 && highest <= 10 * MiB, `the part buffers held never passed GW_UPLOAD_MEMORY_BYTES (at most ${highest} bytes seen)`)
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(metrics, /gateway_upload_memory_reserved_bytes 0\b/, 'every buffer is given back')
  t.notMatch(metrics, /gateway_uploads_total\{outcome="busy"\} [1-9]/)
})

/** Both held uploads have been admitted once the metrics say so. */
async function busy(url: string): Promise<boolean> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return /gateway_uploads_in_flight 2\b/.test(text)
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}
