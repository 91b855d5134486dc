import { readdir, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { startGateway } from './helpers/gateway.ts'
import { upload, uniqueContent, uploadAndDisconnect } from './helpers/multipart.ts'

// Bad input and limits; the scan worker is off (GW_SCAN_CONCURRENCY=0), so no clamd is needed.
const maxBytes = 256 * 1024

/** Every file under a directory, recursively (the fs store's quarantine, temp files included). */
async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true })
    return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
  } catch {
    return []
  }
}

t.test('bad input', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_MAX_UPLOAD_BYTES: String(maxBytes) })
  const quarantine = join(gw.dir, 'objects', 'quarantine')
  const nothingStored = async (t: Test): Promise<void> => {
    t.same(await filesUnder(quarantine), [], 'nothing left in quarantine')
  }
  type Test = typeof t

  t.test('a body that is not multipart is refused with 415', async (t) => {
    for (const [type, body] of [
      ['application/json', '{"file":"x"}'],
      ['text/plain', 'hello'],
      ['application/octet-stream', 'raw bytes']
    ] as const) {
      const res = await fetch(`${gw.url}/v1/uploads`, { method: 'POST', body, headers: { 'content-type': type } })
      t.equal(res.status, 415, type)
      t.same(await res.json(), { error: { code: 'GW_UNSUPPORTED_MEDIA_TYPE', message: 'uploads must be multipart/form-data' } })
    }
  })

  t.test('no file field', async (t) => {
    const res = await upload(gw.url, { name: 'note', data: 'just a field' })
    t.equal(res.status, 400)
    t.equal(res.json.error.code, 'GW_MISSING_FILE')
  })

  t.test('a file in another field', async (t) => {
    const res = await upload(gw.url, { name: 'document', filename: 'a.txt', data: uniqueContent(100) })
    t.equal(res.status, 400)
    t.equal(res.json.error.code, 'GW_MISSING_FILE')
    t.match(res.json.error.message, /field 'document'/)
    await nothingStored(t)
  })

  t.test('two files: refused, and the first one is removed again', async (t) => {
    const res = await upload(gw.url, [
      { name: 'file', filename: 'one.txt', data: uniqueContent(1000) },
      { name: 'file', filename: 'two.txt', data: uniqueContent(1000) }
    ])
    t.equal(res.status, 400)
    t.equal(res.json.error.code, 'GW_TOO_MANY_FILES')
    await nothingStored(t)
  })

  t.test('an empty file', async (t) => {
    const res = await upload(gw.url, { name: 'file', filename: 'empty.txt', data: '' })
    t.equal(res.status, 400)
    t.equal(res.json.error.code, 'GW_EMPTY_FILE')
    await nothingStored(t)
  })

  t.test('a broken multipart body', async (t) => {
    const res = await fetch(`${gw.url}/v1/uploads`, {
      method: 'POST',
      body: '--abc\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nno closing boundary',
      headers: { 'content-type': 'multipart/form-data; boundary=abc' }
    })
    t.equal(res.status, 400)
    t.equal((await res.json()).error.code, 'GW_BAD_MULTIPART')
    await nothingStored(t)
  })

  t.test('hostile filenames are kept only as sanitized metadata', async (t) => {
    const cases: [string, string | null][] = [
      ['../../etc/passwd', 'passwd'],
      ['..\\..\\windows\\win.ini', 'win.ini'],
      ['a\u0000b.pdf', 'ab.pdf'],
      ['in\u0007voice\u001b[31m.pdf\r\n', 'invoice[31m.pdf'],
      ['..', null],
      ['x'.repeat(1000) + '.pdf', 'x'.repeat(255)],
      ['é'.repeat(200), 'é'.repeat(127)]
    ]
    for (const [raw, expected] of cases) {
      const res = await upload(gw.url, { name: 'file', filename: raw, data: uniqueContent(50) })
      t.equal(res.status, 202, JSON.stringify(raw))
      t.equal(res.json.filename, expected, JSON.stringify(raw))
      t.match(res.json.id, /^[0-9a-f]{32}$/)
    }
    const stored = (await filesUnder(quarantine)).map((f) => f.slice(quarantine.length + 1))
    t.ok(stored.length >= cases.length)
    t.ok(stored.every((name) => /^[0-9a-f]{32}$/.test(name)), 'object keys come from upload ids only')
  })

  t.test('a file over the limit is cut off mid-stream with 413, nothing kept', async (t) => {
    const before = await filesUnder(quarantine)
    const res = await upload(gw.url, { name: 'file', filename: 'big.bin', data: uniqueContent(maxBytes + 1) })
    t.equal(res.status, 413)
    t.equal(res.json.error.code, 'GW_PAYLOAD_TOO_LARGE')
    t.same(await filesUnder(quarantine), before, 'nothing kept')
    const exact = await upload(gw.url, { name: 'file', filename: 'exact.bin', data: uniqueContent(maxBytes) })
    t.equal(exact.status, 202, 'a file of exactly the limit is accepted')
    t.equal(exact.json.size, maxBytes)
  })

  t.test('a client that disconnects mid-upload leaves nothing behind', async (t) => {
    const before = await filesUnder(quarantine)
    const added = async (): Promise<string[]> => (await filesUnder(quarantine)).filter((f) => !before.includes(f))
    // Bounded polls (about 10 s), with no assertion on time.
    const storing = await uploadAndDisconnect(gw.url, 200 * 1024, 100 * 1024, async () => {
      for (let i = 0; i < 100; i++) {
        const sizes = await Promise.all((await added()).map(async (f) => (await stat(f).catch(() => null))?.size ?? 0))
        if (sizes.some((size) => size > 0)) return sizes
        await new Promise((r) => setTimeout(r, 100))
      }
      return []
    })
    t.ok(storing?.some((size) => size > 0), `the gateway was writing the upload when the client left (file sizes: ${storing})`)
    for (let i = 0; i < 50 && (await added()).length > 0; i++) await new Promise((r) => setTimeout(r, 100))
    t.same(await filesUnder(quarantine), before, 'no partial or temp file left')
  })

  t.test('unknown routes and malformed ids answer in the error shape', async (t) => {
    const missing = await fetch(`${gw.url}/v1/uploads/${'0'.repeat(32)}`)
    t.equal(missing.status, 404)
    t.equal((await missing.json()).error.code, 'GW_NOT_FOUND')
    const bad = await fetch(`${gw.url}/v1/uploads/not-an-id`)
    t.equal(bad.status, 400)
    t.equal((await bad.json()).error.code, 'GW_BAD_REQUEST')
    const nowhere = await fetch(`${gw.url}/v2/nothing`)
    t.equal(nowhere.status, 404)
    t.equal((await nowhere.json()).error.code, 'GW_NOT_FOUND')
  })
})

t.test('a client that stalls mid-upload is answered 408 GW_TOO_SLOW and cut off after the idle timeout', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_IDLE_TIMEOUT_MS: '500' })
  const quarantine = join(gw.dir, 'objects', 'quarantine')
  const url = new URL(`${gw.url}/v1/uploads`)
  const result = await new Promise<{ closed: boolean; reply: string }>((resolve) => {
    let reply = ''
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(
        'POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n' +
          '--b\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\nfirst bytes, then nothing'
      )
    })
    socket.setEncoding('utf8').on('data', (s: string) => (reply += s))
    socket.on('error', () => {})
    socket.on('close', () => resolve({ closed: true, reply }))
    setTimeout(() => {
      socket.destroy()
      resolve({ closed: false, reply })
    }, 10_000)
  })
  t.ok(result.closed, 'the gateway closed the stalled connection, well before the test gives up')
  t.match(result.reply, /^HTTP\/1\.1 408 /, 'with an answer')
  t.match(result.reply, /GW_TOO_SLOW/)
  t.match(result.reply, /connection: close/i)
  await new Promise((r) => setTimeout(r, 200))
  t.same(await filesUnder(quarantine), [], 'nothing left in quarantine')
})

t.test('an oversized upload is refused before its whole body has been sent', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_MAX_UPLOAD_BYTES: String(1024 * 1024) })
  const url = new URL(`${gw.url}/v1/uploads`)
  const total = 64 * 1024 * 1024
  const result = await new Promise<{ reply: string; sent: number }>((resolve) => {
    let reply = ''
    let sent = 0
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(
        `POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: ${total + 200}\r\n\r\n` +
          '--b\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n\r\n'
      )
      const chunk = Buffer.alloc(256 * 1024, 7)
      const pump = (): void => {
        while (sent < total && !socket.destroyed) {
          sent += chunk.length
          if (!socket.write(chunk)) return void socket.once('drain', pump)
        }
      }
      pump()
    })
    socket.setEncoding('utf8').on('data', (s: string) => (reply += s))
    socket.on('error', () => {})
    socket.on('close', () => resolve({ reply, sent }))
    setTimeout(() => socket.destroy(), 20_000)
  })
  t.match(result.reply, /^HTTP\/1\.1 413 /, 'answered 413')
  t.match(result.reply, /GW_PAYLOAD_TOO_LARGE/)
  t.ok(result.sent < total / 2, `the connection closed after ${(result.sent / 1024 / 1024).toFixed(1)} of 64 MiB`)
})

t.test('upload keys', async (t) => {
  const key = 'upload-key-0123456789'
  const admin = 'admin-key-0123456789ab'
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_UPLOAD_KEYS: key, GW_ADMIN_KEYS: admin })
  const file = () => ({ name: 'file', filename: 'a.txt', data: uniqueContent(20) })
  const none = await upload(gw.url, file())
  t.equal(none.status, 401)
  t.equal(none.json.error.code, 'GW_UNAUTHORIZED')
  t.equal(none.headers['www-authenticate'], 'Bearer')
  const wrong = await upload(gw.url, file(), { authorization: 'Bearer not-the-key-at-all' })
  t.equal(wrong.status, 403)
  t.equal(wrong.json.error.code, 'GW_FORBIDDEN')
  const ok = await upload(gw.url, file(), { authorization: `Bearer ${key}` })
  t.equal(ok.status, 202)
  t.equal(ok.headers.location, `/v1/uploads/${ok.json.id}`)
  const byAdmin = await upload(gw.url, file(), { authorization: `Bearer ${admin}` })
  t.equal(byAdmin.status, 202, 'admin keys may upload too')
  t.equal((await fetch(`${gw.url}/v1/uploads/${ok.json.id}`)).status, 401, 'statuses need a key too')
  const status = await fetch(`${gw.url}/v1/uploads/${ok.json.id}`, { headers: { authorization: `Bearer ${key}` } })
  t.equal(status.status, 200)
  t.equal((await fetch(`${gw.url}/healthz`)).status, 200, 'health needs no key')
})

t.test('state store down: 503 with Retry-After, and the stored object is removed', async (t) => {
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0' })
  await gw.gateway.state.close()
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(100) })
  t.equal(res.status, 503)
  t.equal(res.json.error.code, 'GW_STATE_UNAVAILABLE')
  t.equal(res.headers['retry-after'], '5')
  t.same(await filesUnder(join(gw.dir, 'objects', 'quarantine')), [])
})
