import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { HeadObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { exitWhenDone } from './helpers/exit-guard.ts'
import { startGateway } from './helpers/gateway.ts'
import { MiB, PRODUCTION, QUARANTINE } from './helpers/gateway-env.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { startThrottledProxy } from './helpers/throttled-proxy.ts'

exitWhenDone()

// In-process gateways read credentials from the SDK's chain, i.e. this process's environment.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'

interface Answer {
  status: number
  /** The error code of a refusal, the upload id of a 202, or the transport error ("socket hang up"). */
  detail: string
}

/**
 * Streams one multipart upload of `size` random bytes with a Content-Length, as browsers and the
 * benchmark send it, and reads the answer. Never throws: a connection that ends without an answer is status 0.
 */
function postUpload(baseUrl: string, size: number, timeoutMs: number): Promise<Answer> {
  const boundary = `----slow${randomBytes(8).toString('hex')}`
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`)
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
  const url = new URL('/v1/uploads', baseUrl)
  return new Promise((resolve) => {
    let settled = false
    const done = (answer: Answer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve(answer)
    }
    const timer = setTimeout(() => done({ status: -1, detail: `no answer within ${timeoutMs} ms` }), timeoutMs)
    const req = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(head.length + size + tail.length) }
    })
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (s: string) => (text += s))
      res.on('end', () => {
        let detail = text
        try {
          const body = JSON.parse(text) as { id?: string; error?: { code?: string } }
          detail = body.id ?? body.error?.code ?? text
        } catch {
          // not JSON: keep the text
        }
        done({ status: res.statusCode ?? 0, detail })
      })
    })
    req.on('error', (err) => done({ status: 0, detail: err.message }))
    req.write(head)
    let sent = 0
    const pump = (): void => {
      while (sent < size && !req.destroyed) {
        const n = Math.min(256 * 1024, size - sent)
        sent += n
        if (!req.write(randomBytes(n))) return void req.once('drain', pump)
      }
      if (sent >= size) req.end(tail)
    }
    pump()
  })
}

t.test('a slow store: the time the gateway does not read its clients does not count against them', async (t) => {
  const moto = await startMoto()
  t.teardown(() => moto.stop())
  await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
  // S3 takes what its clients send at 4 MiB/s in all: six 11 MiB uploads need about 17 s of it.
  const proxy = await startThrottledProxy(moto.port, 4 * MiB)
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, {
    GW_STORE: 's3',
    GW_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
    GW_S3_FORCE_PATH_STYLE: 'true',
    GW_QUARANTINE_BUCKET: QUARANTINE,
    GW_PRODUCTION_BUCKET: PRODUCTION,
    // One part in flight and one filling: past 10 MiB the gateway stops reading each client while S3 is slow.
    GW_S3_PART_SIZE_BYTES: String(5 * MiB),
    GW_S3_QUEUE_SIZE: '1',
    GW_SCAN_CONCURRENCY: '0',
    // Far shorter than the store's pauses, and a rate that a client blamed for them would miss.
    GW_UPLOAD_IDLE_TIMEOUT_MS: '1000',
    GW_UPLOAD_MIN_RATE_BYTES: String(256 * 1024),
    GW_UPLOAD_RATE_WINDOW_MS: '1000'
  })
  const size = 11 * MiB
  const answers = await Promise.all(Array.from({ length: 6 }, () => postUpload(gw.url, size, 120_000)))
  t.comment(`answers: ${answers.map((a) => `${a.status} ${a.status === 202 ? 'accepted' : a.detail}`).join(', ')}`)
  t.same(
    answers.map((a) => a.status),
    answers.map(() => 202),
    'every upload is accepted: slow is fine, and no client is dropped without an answer'
  )
  const s3 = s3ClientFor(moto.endpoint)
  t.teardown(() => s3.destroy())
  for (const a of answers.filter((a) => a.status === 202)) {
    const head = await s3.send(new HeadObjectCommand({ Bucket: QUARANTINE, Key: a.detail }))
    t.equal(head.ContentLength, size, `upload ${a.detail} is stored whole`)
  }
})
