import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { GatewayError } from '../src/domain/errors.ts'
import { TransferGuard } from '../src/services/transfer-guard.ts'
import { UploadAdmission } from '../src/services/upload-admission.ts'
import { startGateway } from './helpers/gateway.ts'
import { holdUpload, upload, uniqueContent } from './helpers/multipart.ts'

const overhead = UploadAdmission.requestOverheadBytes

t.test('admission bounds uploads at once and reserved memory', async (t) => {
  const admission = new UploadAdmission({ maxUploads: 3, memoryBytes: 1_000_000, perUploadBytes: 400_000 })
  const a = admission.admit(null)
  t.equal(a?.bytes, 400_000 + overhead, 'an upload of unknown size reserves all its store may buffer')
  const small = admission.admit(10_000)
  t.equal(small?.bytes, 10_000 + overhead, 'a declared small upload reserves only its size')
  t.equal(admission.admit(null), null, 'a third large one would pass the memory budget')
  const c = admission.admit(5_000)
  t.ok(c)
  t.equal(admission.admit(1), null, 'at the bound of uploads at once')
  t.same([admission.uploads, admission.reservedBytes], [3, 415_000 + 3 * overhead])
  a!.done()
  a!.done() // a second done gives nothing back twice
  t.same([admission.uploads, admission.reservedBytes], [2, 15_000 + 2 * overhead])
  small!.done()
  c!.done()
  const huge = new UploadAdmission({ maxUploads: 2, memoryBytes: 1, perUploadBytes: 10 })
  t.ok(huge.admit(null), 'one upload runs alone whatever the budget, or it never could')
  t.equal(huge.admit(null), null)
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

t.test('past the memory budget: uploads of unknown size are refused, small declared ones still fit', async (t) => {
  // fs store: 256 KiB of buffers per upload plus the request overhead; 1 MiB holds two of unknown size.
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_MEMORY_BYTES: String(1024 * 1024) })
  const held = [holdUpload(gw.url, uniqueContent(200_000)), holdUpload(gw.url, uniqueContent(200_000))]
  await waitFor(() => busy(gw.url))
  const chunked = holdUpload(gw.url, uniqueContent(200_000))
  const answer = await chunked.early
  t.equal(answer.status, 503)
  t.equal(answer.json.error.code, 'GW_BUSY')
  t.equal(answer.headers.connection, 'close', 'the refused body is not read to its end')
  const small = await upload(gw.url, { name: 'file', filename: 's.txt', data: uniqueContent(10_000) })
  t.equal(small.status, 202, 'an upload whose Content-Length says it is small still fits')
  for (const h of held) t.equal((await h.finish()).status, 202)
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
