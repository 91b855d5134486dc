import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { instream as instreamAt, type InstreamOptions } from '../src/adapters/scanner/clamd-instream.ts'
import { parseScanReply } from '../src/adapters/scanner/clamd-replies.ts'
import { ClamdScanner } from '../src/adapters/scanner/clamd-scanner.ts'
import { parseClamdEndpoint } from '../src/config/clamd-endpoints.ts'
import { ScannerError, type ScannerErrorCode } from '../src/ports/scanner.ts'
import { startFakeClamd, startUnacceptingListener, type FakeBehaviour, type FakeClamd } from './helpers/fake-clamd.ts'

// The client against clamd impostors that misbehave: every failure is a ScannerError with the
// right code, comes within its timeout, and leaves no socket open.
t.setTimeout(30_000)
const KiB = 1024
const MiB = 1024 * KiB
const opts = { connectTimeoutMs: 1000, idleTimeoutMs: 2000, totalTimeoutMs: 10_000 }
const scannerOpts = { ...opts, maxPerEndpoint: 4, healthIntervalMs: 0 }
const endpointsOf = (...urls: string[]) => urls.map(parseClamdEndpoint)
const instream = (url: string, body: Readable, options: InstreamOptions) => instreamAt(parseClamdEndpoint(url), body, options)

async function fake(t: Test, behaviour: FakeBehaviour, checks?: 'like-scans'): Promise<FakeClamd> {
  const server = await startFakeClamd(behaviour, checks ? { checks } : {})
  t.teardown(() => server.close())
  return server
}

async function rejectsWith(t: Test, p: Promise<unknown>, code: ScannerErrorCode): Promise<ScannerError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e
  )
  t.ok(err instanceof ScannerError, `a ScannerError (got ${String(err)})`)
  t.equal((err as ScannerError).code, code, (err as Error | null)?.message ?? 'no error')
  return err as ScannerError
}

/** An endless source that counts what it produced; stops at `limit` bytes. */
function endless(limit = 256 * MiB, chunk = 64 * KiB) {
  const state = { produced: 0, body: undefined as unknown as Readable }
  state.body = new Readable({
    read() {
      if (state.produced >= limit) return void this.push(null)
      state.produced += chunk
      this.push(randomBytes(chunk))
    }
  })
  return state
}

/** Sends `first`, then never another byte. */
function stalling(first: Buffer): Readable {
  let sent = false
  return new Readable({
    read() {
      if (!sent) this.push(first)
      sent = true
    }
  })
}

t.test('replies are parsed exactly, never by substring', async (t) => {
  t.same(parseScanReply('stream: OK'), { result: 'clean' })
  t.same(parseScanReply('stream: Win.Test.EICAR_HDB-1 FOUND'), { result: 'infected', signature: 'Win.Test.EICAR_HDB-1' })
  t.same(parseScanReply('stream: Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND'), {
    result: 'infected',
    signature: 'Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68)'
  })
  for (const [reply, reason] of [
    ['stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND', /scan limits exceeded: Heuristics\.Limits\.Exceeded\.MaxFileSize/],
    ['stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND', /MaxScanTime/],
    ['stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND', /MaxRecursion/],
    ['stream: Heuristics.Encrypted.Zip FOUND', /encrypted content: Heuristics\.Encrypted\.Zip/],
    ['stream: Heuristics.Encrypted.PDF FOUND', /Heuristics\.Encrypted\.PDF/],
    ['stream: Heuristics.Encrypted.RAR FOUND', /Heuristics\.Encrypted\.RAR/],
    ['stream: Heuristics.XZ.DicSizeLimit FOUND', /XZ/],
    ['INSTREAM size limit exceeded. ERROR', /stream size limit/]
  ] as const) {
    t.match(parseScanReply(reply), { result: 'unscannable', reason }, reply)
  }
  // Other heuristics are alerts the operator chose to enable: treated as detections.
  t.same(parseScanReply('stream: Heuristics.Broken.Executable FOUND'), { result: 'infected', signature: 'Heuristics.Broken.Executable' })
  for (const reply of ['Can\'t allocate memory ERROR', 'stream: Can\'t open file ERROR']) {
    t.throws(() => parseScanReply(reply), { code: 'engine_error' }, reply)
  }
  for (const reply of ['', 'stream: OK ', ' stream: OK', 'stream: OKAY', 'stream: OK\n', 'xstream: OK', 'stream: ok', 'PONG', 'stream: FOUND', 'stream:  FOUND', 'OK', 'ERROR']) {
    t.throws(() => parseScanReply(reply), { code: 'protocol' }, JSON.stringify(reply))
  }
})

t.test('framing: chunks are at most 64 KiB, a zero-length chunk ends the stream', async (t) => {
  const server = await fake(t, { kind: 'reply', reply: 'stream: OK\0' })
  const body = Readable.from([randomBytes(1 * MiB + 5), randomBytes(10), randomBytes(200 * KiB)])
  const result = await instream(server.url, body, opts)
  t.same(result, { outcome: { result: 'clean' }, bytes: 1 * MiB + 5 + 10 + 200 * KiB })
  const [conn] = server.connections
  t.ok(conn?.ended, 'zero-length chunk received')
  t.ok(conn?.chunkSizes.every((n) => n <= 64 * KiB), 'no chunk above 64 KiB')
  t.equal(conn?.chunkSizes.at(-1), 0)
  t.equal(conn?.bodyBytes, result.bytes)
  await server.allClosed()
})

t.test('connect timeout: a port whose accept queue is full', async (t) => {
  const listener = await startUnacceptingListener()
  t.teardown(() => listener.close())
  const started = Date.now()
  const body = Readable.from([randomBytes(100)])
  await rejectsWith(t, instream(listener.url, body, { ...opts, connectTimeoutMs: 200 }), 'connect_timeout')
  t.ok(Date.now() - started < 1500, `bounded by the connect timeout (${Date.now() - started} ms)`)
  t.ok(body.destroyed, 'body destroyed')

  // The scanner moves on to the next endpoint, since no byte of the body was read yet.
  const good = await fake(t, { kind: 'reply', reply: 'stream: OK\0' })
  const scanner = new ClamdScanner({ ...scannerOpts, connectTimeoutMs: 200, endpoints: endpointsOf(listener.url, good.url) })
  t.match(await scanner.scan(Readable.from([randomBytes(100)])), { outcome: { result: 'clean' }, endpoint: good.url })
})

t.test('idle timeout: clamd stops reading, and backpressure holds the source back', async (t) => {
  const server = await fake(t, { kind: 'no-read' })
  const source = endless()
  const started = Date.now()
  await rejectsWith(t, instream(server.url, source.body, { ...opts, idleTimeoutMs: 300 }), 'idle_timeout')
  t.ok(Date.now() - started < 5000, `bounded (${Date.now() - started} ms)`)
  t.ok(source.produced < 64 * MiB, `only what the socket buffers hold was read from the source (${source.produced} bytes)`)
  t.ok(source.body.destroyed, 'source destroyed')
  await server.allClosed()
})

t.test('idle timeout: the source stalls', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  const body = stalling(randomBytes(1000))
  await rejectsWith(t, instream(server.url, body, { ...opts, idleTimeoutMs: 300 }), 'idle_timeout')
  t.ok(body.destroyed, 'source destroyed')
  await server.allClosed()
  t.equal(server.connections[0]?.bodyBytes, 1000)
})

t.test('total timeout: clamd takes everything and never answers', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  const started = Date.now()
  // The idle timeout does not apply while clamd scans: it says nothing while it works.
  await rejectsWith(t, instream(server.url, Readable.from([randomBytes(1000)]), { ...opts, idleTimeoutMs: 200, totalTimeoutMs: 800 }), 'total_timeout')
  const elapsed = Date.now() - started
  t.ok(elapsed >= 750 && elapsed < 3000, `after the total timeout (${elapsed} ms)`)
  t.ok(server.connections[0]?.ended, 'the whole stream was sent')
  await server.allClosed()
})

t.test('a slow answer within the total timeout is fine', async (t) => {
  const server = await fake(t, { kind: 'reply', reply: 'stream: OK\0', delayMs: 600 })
  const result = await instream(server.url, Readable.from([randomBytes(1000)]), { ...opts, idleTimeoutMs: 200 })
  t.same(result.outcome, { result: 'clean' })
  await server.allClosed()
})

t.test('garbage replies are protocol errors, never a verdict', async (t) => {
  for (const reply of ['HELLO\0', 'stream: OKAY\0', 'stream: OK', '\0', Buffer.alloc(70 * KiB, 'x')]) {
    const server = await fake(t, { kind: 'reply', reply })
    await rejectsWith(t, instream(server.url, Readable.from([randomBytes(1000)]), opts), 'protocol')
    await server.allClosed()
  }
  const server = await fake(t, { kind: 'reply', reply: 'stream: OK', keepOpen: true })
  await rejectsWith(t, instream(server.url, Readable.from([randomBytes(1000)]), { ...opts, totalTimeoutMs: 500 }), 'total_timeout')
  await server.allClosed()
})

t.test('an ERROR reply is an engine error', async (t) => {
  const server = await fake(t, { kind: 'reply', reply: "Can't allocate memory ERROR\0" })
  await rejectsWith(t, instream(server.url, Readable.from([randomBytes(1000)]), opts), 'engine_error')
})

t.test('a connection closed without a reply is an error, never clean', async (t) => {
  for (const behaviour of [
    { kind: 'close', afterBytes: 0 },
    { kind: 'close', afterBytes: 100 * KiB },
    { kind: 'reply', reply: '' }
  ] as const) {
    const server = await fake(t, behaviour)
    const body = Readable.from([randomBytes(512 * KiB), randomBytes(512 * KiB)])
    await rejectsWith(t, instream(server.url, body, opts), 'unavailable')
    t.ok(body.destroyed, 'body destroyed')
    await server.allClosed()
  }
})

t.test('a reply mid-stream wins, and sending stops', async (t) => {
  const server = await fake(t, { kind: 'reply', reply: 'INSTREAM size limit exceeded. ERROR\0', after: 256 * KiB })
  const source = endless(64 * MiB)
  const result = await instream(server.url, source.body, opts)
  t.same(result.outcome, { result: 'unscannable', reason: 'stream size limit: larger than clamd StreamMaxLength' })
  t.ok(result.bytes < 64 * MiB, `stopped sending (${result.bytes} bytes)`)
  await server.allClosed()
})

t.test('a source error mid-scan is a source_error, and the socket is closed', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  let n = 0
  const body = new Readable({
    read() {
      if (++n <= 3) this.push(randomBytes(16 * KiB))
      else this.destroy(new Error('object store connection reset'))
    }
  })
  const err = await rejectsWith(t, instream(server.url, body, opts), 'source_error')
  t.match(err.message, /object store connection reset/)
  await server.allClosed()

  // Also while the pump waits for clamd to drain: no waiting for the idle timeout.
  const stuck = await fake(t, { kind: 'no-read' })
  const source = endless()
  setTimeout(() => source.body.destroy(new Error('late failure')), 300).unref()
  const started = Date.now()
  await rejectsWith(t, instream(stuck.url, source.body, { ...opts, idleTimeoutMs: 5000 }), 'source_error')
  t.ok(Date.now() - started < 2000, `at once (${Date.now() - started} ms)`)
  await stuck.allClosed()
})

t.test('a source that yields something other than bytes is a source_error', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  await rejectsWith(t, instream(server.url, Readable.from([{ not: 'bytes' }]), opts), 'source_error')
  await server.allClosed()
})

t.test('abort via AbortSignal', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  const controller = new AbortController()
  const body = stalling(randomBytes(1000))
  setTimeout(() => controller.abort(), 100).unref()
  await rejectsWith(t, instream(server.url, body, { ...opts, signal: controller.signal }), 'aborted')
  t.ok(body.destroyed, 'body destroyed')
  await server.allClosed()

  const untouched = await fake(t, { kind: 'silent' })
  await rejectsWith(t, instream(untouched.url, Readable.from([randomBytes(10)]), { ...opts, signal: AbortSignal.abort() }), 'aborted')
  t.equal(untouched.connections.length, 0, 'an aborted signal does not even connect')
})

t.test('scanner: no failover once the body is being sent', async (t) => {
  const broken = await fake(t, { kind: 'close', afterBytes: 100 * KiB })
  const good = await fake(t, { kind: 'reply', reply: 'stream: OK\0' })
  const scanner = new ClamdScanner({ ...scannerOpts, endpoints: endpointsOf(broken.url, good.url) })
  await rejectsWith(t, scanner.scan(Readable.from([randomBytes(512 * KiB)])), 'unavailable')
  t.equal(good.connections.length, 0, 'the next endpoint was not tried: the body cannot be rewound')
  await broken.allClosed()
})

t.test('scanner: VERSION is cached per endpoint and carried by every result', async (t) => {
  const server = await fake(t, { kind: 'reply', reply: 'stream: OK\0' })
  const scanner = new ClamdScanner({ ...scannerOpts, endpoints: endpointsOf(server.url) })
  for (let i = 0; i < 3; i++) {
    const result = await scanner.scan(Readable.from([randomBytes(100)]))
    t.same(result.engine, { engine: 'ClamAV 1.4.6', signatureVersion: 27500, signatureDate: 'Tue Nov 24 09:00:00 2026' })
  }
  t.equal(server.connections.length, 4, 'one VERSION for three scans')

  const uncached = await fake(t, { kind: 'reply', reply: 'stream: OK\0' })
  const eager = new ClamdScanner({ ...scannerOpts, endpoints: endpointsOf(uncached.url), versionCacheMs: 0 })
  for (let i = 0; i < 2; i++) await eager.scan(Readable.from([randomBytes(100)]))
  t.equal(uncached.connections.length, 4, 'with no cache, one VERSION per scan')
  await Promise.all([server.allClosed(), uncached.allClosed()])
})

t.test('scanner: a failed scan leaves no VERSION request behind', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  const scanner = new ClamdScanner({ ...scannerOpts, totalTimeoutMs: 300, endpoints: endpointsOf(server.url) })
  await rejectsWith(t, scanner.scan(Readable.from([randomBytes(100)])), 'total_timeout')
  await server.allClosed(500)
})

t.test('scanner: close() aborts scans in flight and refuses new ones', async (t) => {
  const server = await fake(t, { kind: 'silent' })
  const scanner = new ClamdScanner({ ...scannerOpts, endpoints: endpointsOf(server.url) })
  const inFlight = scanner.scan(stalling(randomBytes(100)))
  setTimeout(() => void scanner.close(), 100).unref()
  await rejectsWith(t, inFlight, 'aborted')
  const refused = Readable.from([randomBytes(100)])
  await rejectsWith(t, scanner.scan(refused), 'aborted')
  t.ok(refused.destroyed, 'the refused body is let go too')
  await server.allClosed()
})

t.test('scanner: readiness reports garbage and silence per endpoint', async (t) => {
  const garbage = await fake(t, { kind: 'reply', reply: 'WHAT\0' }, 'like-scans')
  const clean = await fake(t, { kind: 'reply', reply: 'stream: OK\0' }, 'like-scans')
  const scanner = new ClamdScanner({ ...scannerOpts, endpoints: endpointsOf(garbage.url, clean.url) })
  const result = await scanner.readiness()
  t.equal(result.ok, false)
  t.match(result.detail, `${garbage.url}: unexpected reply from clamd`)
  t.match(result.detail, `${clean.url}: answered OK to the EICAR test file`)
})
