import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { HeadObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { exitWhenDone } from './helpers/exit-guard.ts'
import { startGateway } from './helpers/gateway.ts'
import { MiB, PRODUCTION, QUARANTINE } from './helpers/gateway-env.ts'
import { createBuckets, s3ClientFor, startMoto } from './helpers/moto.ts'
import { uniqueContent, upload } from './helpers/multipart.ts'
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

// What `npm run bench` saw as "socket hang up": the HTTP server's socket idle timeout (Fastify's
// connectionTimeout = GW_UPLOAD_IDLE_TIMEOUT_MS) ran while the gateway, its S3 writes backed up, did
// not read the client, and destroyed the socket unanswered: ECONNRESET while the client was still
// sending, "socket hang up" when it had sent everything and waited for the answer.
t.test('a slow store: the time the gateway does not read its clients does not count against them', async (t) => {
  const moto = await startMoto()
  t.teardown(() => moto.stop())
  await createBuckets(moto.endpoint, QUARANTINE, PRODUCTION)
  // S3 takes what its clients send at 4 MiB/s in all: four 11 MiB uploads need about 11 s of it.
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
  const answers = await Promise.all(Array.from({ length: 4 }, () => postUpload(gw.url, size, 120_000)))
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

interface Trickled {
  /** The status the gateway answered before closing, 0 when it closed without an answer, -1 when it kept the connection open. */
  status: number
  code: string | null
}

/**
 * A client that sends its upload (`body`), or its headers (`headers`), a byte every `everyMs`, and
 * keeps doing so until the gateway closes the connection or `giveUpMs` passed.
 */
function trickle(baseUrl: string, what: 'body' | 'headers', everyMs: number, giveUpMs: number): Promise<Trickled> {
  const url = new URL(baseUrl)
  const head =
    'POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n' +
    '--b\r\nContent-Disposition: form-data; name="file"; filename="trickle.bin"\r\n\r\n'
  return new Promise((resolve) => {
    let reply = ''
    let sent = 0
    const socket = connect(Number(url.port), url.hostname, () => {
      // A body trickler sends its headers at once; a header trickler only their first line.
      sent = what === 'body' ? head.length : head.indexOf('\r\n') + 2
      socket.write(head.slice(0, sent))
    })
    const timer = setInterval(() => {
      if (socket.writable && socket.readyState === 'open') socket.write(what === 'body' ? 'x' : head.charAt(sent++))
    }, everyMs)
    const giveUp = setTimeout(() => finish(-1), giveUpMs)
    const finish = (status: number): void => {
      clearInterval(timer)
      clearTimeout(giveUp)
      socket.destroy()
      resolve({ status, code: /"code":"(GW_[A-Z_]+)"/.exec(reply)?.[1] ?? null })
    }
    socket.setEncoding('utf8').on('data', (s: string) => (reply += s))
    socket.on('error', () => {})
    socket.on('close', () => finish(Number(/^HTTP\/1\.1 (\d{3}) /.exec(reply)?.[1] ?? 0)))
  })
}

t.test('200 connections trickling a byte every 2 s are answered and let go; normal uploads go through', async (t) => {
  const gw = await startGateway(t, {
    GW_SCAN_CONCURRENCY: '0',
    // The defaults (1 KiB/s over 20 s, 20 s for headers, 1024 connections), shortened for the test.
    GW_UPLOAD_MIN_RATE_BYTES: '1024',
    GW_UPLOAD_RATE_WINDOW_MS: '2000',
    GW_HEADERS_TIMEOUT_MS: '2000',
    GW_MAX_CONNECTIONS: '150'
  })
  // 150 trickle an upload's body (64 of them take every upload slot), 50 their headers (slowloris).
  const tricklers = Array.from({ length: 200 }, (_, i) => trickle(gw.url, i < 150 ? 'body' : 'headers', 2000, 40_000))
  await sleep(1000)
  const normal = await Promise.all(
    Array.from({ length: 5 }, async (_, i) => {
      // Several windows: the tricklers have had to let go long before.
      const deadline = Date.now() + 15_000
      let tries = 0
      for (;;) {
        tries++
        const answer = await upload(gw.url, { name: 'file', filename: `normal-${i}.bin`, data: uniqueContent(200_000) }).catch((err: Error) => ({ status: 0, json: { error: { code: err.message } } }))
        // A 503 says when to come back; this client comes back sooner, to keep the test short.
        if (answer.status !== 503 || Date.now() > deadline) return { status: answer.status, code: answer.json?.error?.code as string | undefined, tries }
        await sleep(250)
      }
    })
  )
  t.comment(`normal uploads: ${normal.map((n) => `${n.status}${n.code ? ` ${n.code}` : ''} after ${n.tries} tries`).join(', ')}`)
  t.same(normal.map((n) => n.status), normal.map(() => 202), 'every normal upload is accepted (after some 503s with Retry-After while the tricklers hold the slots)')
  const answers = await Promise.all(tricklers)
  const tally = new Map<string, number>()
  for (const a of answers) tally.set(`${a.status} ${a.code}`, (tally.get(`${a.status} ${a.code}`) ?? 0) + 1)
  t.comment(`tricklers: ${[...tally].map(([k, n]) => `${n} × ${k}`).join(', ')}`)
  t.same(answers.filter((a) => a.status === -1).length, 0, 'no trickling connection is kept open')
  t.same(
    answers.filter((a) => !((a.status === 408 && a.code === 'GW_TOO_SLOW') || (a.status === 503 && a.code === 'GW_BUSY'))),
    [],
    'each was answered 408 GW_TOO_SLOW or 503 GW_BUSY before its connection closed'
  )
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(metrics, /gateway_uploads_total\{outcome="too_slow"\} [1-9]/, 'the slow ones are counted')
})
