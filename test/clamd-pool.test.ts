import { randomBytes, randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { eicarTestFile } from '../src/adapters/scanner/clamd-health-checks.ts'
import { ClamdScanner, type ClamdScannerOptions } from '../src/adapters/scanner/clamd-scanner.ts'
import { parseClamdEndpoint } from '../src/config/clamd-endpoints.ts'
import { ScannerError, type EndpointHealth, type ScannerErrorCode } from '../src/ports/scanner.ts'
import { startClamd } from './helpers/clamd.ts'
import { startFakeClamd, type FakeBehaviour, type FakeClamd } from './helpers/fake-clamd.ts'
import { freePort } from './helpers/free-port.ts'

// The scanner as a pool: slots per endpoint, a line to wait in, health from connects and PINGs.
// Real clamd for verdicts; loopback impostors (in front of it, or instead of it) for what real
// clamd will not do on demand: refuse, go silent, come back on the same port.
t.setTimeout(60_000)
const [clamdA, clamdB] = await Promise.all([startClamd(), startClamd()])
t.teardown(() => Promise.all([clamdA.stop(), clamdB.stop()]))

const base = { connectTimeoutMs: 500, idleTimeoutMs: 2000, totalTimeoutMs: 10_000, maxPerEndpoint: 2, healthIntervalMs: 0 }
const eicar = eicarTestFile()

function scanner(t: Test, options: Partial<Omit<ClamdScannerOptions, 'endpoints'>> & { endpoints: string[] }): ClamdScanner {
  const s = new ClamdScanner({ ...base, ...options, endpoints: options.endpoints.map(parseClamdEndpoint) })
  t.teardown(() => s.close())
  return s
}

async function fake(t: Test, behaviour: FakeBehaviour, options: { port?: number; checks?: 'like-scans' } = {}): Promise<FakeClamd> {
  const server = await startFakeClamd(behaviour, options)
  t.teardown(() => server.close())
  return server
}

const deadUrl = async () => `tcp://127.0.0.1:${await freePort()}`
const portOf = (url: string) => Number(new URL(url).port)
const instreams = (server: FakeClamd) => server.connections.filter((c) => c.command === 'zINSTREAM').length
const health = (s: ClamdScanner, url: string) => s.endpoints().find((e) => e.endpoint === url) as EndpointHealth

/** clamd caches clean results by MD5: every file gets content of its own. */
function unique(size = 4096): Buffer {
  return Buffer.concat([Buffer.from(`unique ${randomUUID()}\n`), randomBytes(size)])
}

/** A body that records whether anyone started reading it. */
function watched(data: Buffer, onFirstRead = () => {}) {
  const state = { read: false, body: undefined as unknown as Readable }
  state.body = new Readable({
    read() {
      if (!state.read) onFirstRead()
      state.read = true
      this.push(data)
      this.push(null)
    }
  })
  return state
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

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(5)
  }
  return Date.now() - started
}

t.test('20 concurrent scans on 2 endpoints: at most maxPerEndpoint each, waiting bodies untouched, right verdicts', async (t) => {
  // Proxies in front of two real clamds hold each reply back, so the slots stay full for a while.
  const [a, b] = await Promise.all([fake(t, { kind: 'proxy', port: clamdA.port, delayMs: 30 }), fake(t, { kind: 'proxy', port: clamdB.port, delayMs: 30 })])
  const s = scanner(t, { endpoints: [a.url, b.url], maxPerEndpoint: 2 })
  // One scan each first: with VERSION cached, a scan settles as soon as it frees its slot.
  t.same([(await s.scan(Readable.from([unique()]))).endpoint, (await s.scan(Readable.from([unique()]))).endpoint], [a.url, b.url])
  let reading = 0
  let peakReading = 0
  let overLimit = 0
  const files = Array.from({ length: 20 }, (_, i) => {
    const infected = i % 4 === 0
    const data = infected ? Buffer.concat([unique(), eicar]) : unique(64 * 1024)
    const body = watched(data, () => {
      reading++
      peakReading = Math.max(peakReading, reading)
      if (s.endpoints().some((e) => e.inFlight > e.limit)) overLimit++
    })
    return { infected, body }
  })
  const scans = files.map((f) => s.scan(f.body.body).finally(() => reading--))
  // Slots are handed out at once, before any connect: fewest in flight first fills both evenly.
  t.same(
    s.endpoints().map((e) => [e.inFlight, e.limit]),
    [
      [2, 2],
      [2, 2]
    ],
    'both endpoints full, the rest wait'
  )
  const results = await Promise.all(scans)
  for (const [i, r] of results.entries()) {
    t.equal(r.outcome.result, files[i]?.infected ? 'infected' : 'clean', `scan ${i}`)
  }
  t.ok(a.peakScans <= 2 && b.peakScans <= 2, `never more than 2 scans at one endpoint (${a.peakScans}, ${b.peakScans})`)
  t.equal(a.peakScans + b.peakScans, 4, 'both endpoints were used up to their limit')
  t.equal(instreams(a) + instreams(b), 22, 'one connection per scan')
  t.ok(instreams(a) >= 5 && instreams(b) >= 5, `work spread (${instreams(a)} / ${instreams(b)})`)
  t.ok(peakReading <= 4, `only scans holding a slot read their body (${peakReading} read at once)`)
  t.equal(overLimit, 0, 'endpoints() never showed more in flight than the limit')
  t.same(
    s.endpoints().map((e) => ({ ...e, checkedAt: typeof e.checkedAt })),
    [a.url, b.url].map((endpoint) => ({ endpoint, healthy: true, inFlight: 0, limit: 2, checkedAt: 'number', detail: null, verified: true })),
    'all slots released; a finished scan counts as evidence of health'
  )
})

t.test('the endpoint with the fewest scans in flight is preferred over plain round-robin', async (t) => {
  const slow = await fake(t, { kind: 'reply', reply: 'stream: OK\0', delayMs: 800 })
  const s = scanner(t, { endpoints: [slow.url, clamdA.url] })
  t.ok((await s.readiness()).ok, 'both passed their first EICAR check')
  const long = s.scan(Readable.from([unique()]))
  t.equal(health(s, slow.url).inFlight, 1, 'the first scan went to the first endpoint')
  for (let i = 0; i < 4; i++) {
    t.equal((await s.scan(Readable.from([unique()]))).endpoint, clamdA.url, `scan ${i} went to the idle endpoint`)
  }
  t.equal((await long).endpoint, slow.url)
})

t.test('a refused endpoint is marked down and avoided, and used again once a health check sees it back', async (t) => {
  const dead = await deadUrl()
  const interval = 200
  const s = scanner(t, { endpoints: [dead, clamdA.url], healthIntervalMs: interval })
  for (let i = 0; i < 4; i++) {
    t.equal((await s.scan(Readable.from([unique()]))).endpoint, clamdA.url, `scan ${i} went to the live endpoint`)
  }
  t.match(health(s, dead), { healthy: false, inFlight: 0, limit: 2, detail: /ECONNREFUSED/, checkedAt: Number })
  t.match(health(s, clamdA.url), { healthy: true, detail: null })

  const back = await fake(t, { kind: 'proxy', port: clamdB.port }, { port: portOf(dead) })
  const took = await until('healthy again', () => health(s, dead).healthy, 5 * interval)
  t.ok(took <= 2 * interval + 100, `healthy within about two intervals (${took} ms)`)
  t.equal(health(s, dead).detail, null)
  const used = []
  for (let i = 0; i < 4; i++) used.push((await s.scan(Readable.from([unique()]))).endpoint)
  t.ok(used.includes(dead), `scans reach it again (${used.join(', ')})`)
  t.ok(instreams(back) > 0, 'the server on that port received them')
})

t.test('a silent endpoint is marked down by the health check, naming the timeout; checks never overlap', async (t) => {
  const silent = await fake(t, { kind: 'silent' }, { checks: 'like-scans' })
  const s = scanner(t, { endpoints: [silent.url, clamdA.url], healthIntervalMs: 50, idleTimeoutMs: 300 })
  let peakOpen = 0
  const sampler = setInterval(() => {
    peakOpen = Math.max(peakOpen, silent.connections.filter((c) => !c.closed).length)
  }, 5)
  t.teardown(() => clearInterval(sampler))
  const took = await until('marked down', () => /did not answer PING/.test(health(s, silent.url).detail ?? ''), 2000)
  t.equal(health(s, silent.url).healthy, false)
  t.ok(took >= 250, `only once the PING timed out (${took} ms)`)
  t.match(health(s, silent.url).detail, /did not answer PING within 300 ms/)
  for (let i = 0; i < 3; i++) t.equal((await s.scan(Readable.from([unique()]))).endpoint, clamdA.url, 'scans avoid it')
  await sleep(800)
  t.equal(instreams(silent), 0, 'no scan was sent there')
  t.ok(silent.connections.length >= 2, `checked repeatedly (${silent.connections.length} PINGs)`)
  t.equal(peakOpen, 1, 'never two checks at once')

  await s.close()
  const checks = silent.connections.length
  await silent.allClosed(1000)
  await sleep(200)
  t.equal(silent.connections.length, checks, 'no checks after close()')
})

t.test('every endpoint down: a prompt "unavailable"; a clamd that is back is used before any health check', async (t) => {
  const [down1, down2] = [await deadUrl(), await deadUrl()]
  const s = scanner(t, { endpoints: [down1, down2] })
  for (let i = 0; i < 2; i++) {
    const started = Date.now()
    const body = Readable.from([unique()])
    const err = await rejectsWith(t, s.scan(body), 'unavailable')
    t.ok(Date.now() - started < 300, `prompt (${Date.now() - started} ms)`)
    t.match(err.message, new RegExp(`no clamd endpoint reachable.*${down1}.*ECONNREFUSED.*${down2}.*ECONNREFUSED`))
    t.ok(body.destroyed, 'body let go')
    // Health checks are off: the failed connects alone marked them down.
    t.same(s.endpoints().map((e) => e.healthy), [false, false])
  }
  t.same(
    s.endpoints().map((e) => [e.healthy, e.inFlight]),
    [
      [false, 0],
      [false, 0]
    ]
  )

  // Both come back; periodic checks are off. Neither ever passed an EICAR check, so the next
  // scan has them checked once (not before: each failed scan above had its own check) and then runs.
  const back1 = await fake(t, { kind: 'proxy', port: clamdA.port }, { port: portOf(down1) })
  const back2 = await fake(t, { kind: 'proxy', port: clamdB.port }, { port: portOf(down2) })
  t.equal(back1.eicarChecks + back2.eicarChecks, 0)
  const result = await s.scan(Readable.from([unique()]))
  t.match(result, { outcome: { result: 'clean' } })
  t.same([back1.eicarChecks, back2.eicarChecks], [1, 1], 'one EICAR check each, before the first scan')
  t.equal(instreams(back1) + instreams(back2), 1, 'then the scan')

  // An endpoint that passed its check and then went down is used again as soon as it is back,
  // before any health check: its signatures were seen, only the connection failed.
  await back1.close()
  await back2.close()
  await rejectsWith(t, s.scan(Readable.from([unique()])), 'unavailable')
  t.same(s.endpoints().map((e) => [e.healthy, e.verified]), [[false, true], [false, true]])
  const again = await fake(t, { kind: 'proxy', port: clamdA.port }, { port: portOf(down1) })
  t.equal((await s.scan(Readable.from([unique()]))).endpoint, down1, 'the one that failed longest ago is tried first')
  t.equal(again.eicarChecks, 0, 'no new check')
  t.equal(instreams(again), 1)
})

t.test('a waiting scan aborted by its signal gives up its place only; close() rejects the waiting ones', async (t) => {
  const server = await fake(t, { kind: 'reply', reply: 'stream: OK\0', delayMs: 400 })
  const s = scanner(t, { endpoints: [server.url], maxPerEndpoint: 1 })
  t.ok((await s.readiness()).ok)
  const first = s.scan(Readable.from([unique()]))
  const controller = new AbortController()
  const waiting = watched(unique())
  const aborted = s.scan(waiting.body, controller.signal)
  const third = s.scan(Readable.from([unique()]))
  t.equal(health(s, server.url).inFlight, 1)

  await sleep(50)
  const started = Date.now()
  controller.abort()
  const err = await rejectsWith(t, aborted, 'aborted')
  t.ok(Date.now() - started < 50, 'at once')
  t.match(err.message, /waiting for a clamd slot/)
  t.notOk(waiting.read, 'its body was never read')
  t.ok(waiting.body.destroyed, 'and is let go')
  t.equal(health(s, server.url).inFlight, 1, 'the slot of the running scan is still held')
  await sleep(50)
  t.equal(instreams(server), 1, 'the scan behind it still waits')

  t.equal((await first).outcome.result, 'clean')
  t.equal((await third).outcome.result, 'clean')
  t.equal(instreams(server), 2, 'the aborted scan never connected')
  t.equal(health(s, server.url).inFlight, 0)
  await rejectsWith(t, s.scan(Readable.from([unique()]), AbortSignal.abort()), 'aborted')
  t.equal(health(s, server.url).inFlight, 0, 'an already aborted signal takes no slot')

  // close(): the running scan and every waiting one are rejected, every slot is free.
  const silent = await fake(t, { kind: 'silent' })
  const closing = scanner(t, { endpoints: [silent.url], maxPerEndpoint: 1 })
  const running = closing.scan(Readable.from([unique()]))
  const queued = [watched(unique()), watched(unique())]
  const waits = queued.map((q) => closing.scan(q.body))
  await sleep(100)
  await closing.close()
  await rejectsWith(t, running, 'aborted')
  for (const w of waits) await rejectsWith(t, w, 'aborted')
  t.ok(queued.every((q) => !q.read && q.body.destroyed), 'waiting bodies never read, and let go')
  t.equal(health(closing, silent.url).inFlight, 0)
  await silent.allClosed()
})

t.test('options are checked', async (t) => {
  t.throws(() => new ClamdScanner({ ...base, endpoints: [parseClamdEndpoint(clamdA.url)], maxPerEndpoint: 0 }), /maxPerEndpoint/)
  t.throws(() => new ClamdScanner({ ...base, endpoints: [parseClamdEndpoint(clamdA.url)], maxPerEndpoint: 1.5 }), /maxPerEndpoint/)
  t.throws(() => new ClamdScanner({ ...base, endpoints: [parseClamdEndpoint(clamdA.url)], healthIntervalMs: -1 }), /healthIntervalMs/)
})

t.test('an endpoint that does not detect EICAR (no signatures) gets no scans at all, not even as a last resort', async (t) => {
  const blind = await fake(t, { kind: 'reply', reply: 'stream: OK\0' }, { checks: 'like-scans' })
  const s = scanner(t, { endpoints: [blind.url, clamdA.url], healthIntervalMs: 100 })
  const isBlind = (scanner: ClamdScanner) => /answered OK to the EICAR test file/.test(health(scanner, blind.url).detail ?? '')
  await until('found blind', () => isBlind(s), 2000)
  t.equal(health(s, blind.url).healthy, false)
  for (let i = 0; i < 4; i++) t.equal((await s.scan(Readable.from([unique()]))).endpoint, clamdA.url)
  // Its periodic checks go on meanwhile: every INSTREAM it got is the 68-byte EICAR test file.
  const files = blind.connections.filter((c) => c.command === 'zINSTREAM' && c.ended && c.bodyBytes !== eicar.length)
  t.equal(files.length, 0, 'only the health checks reached it')

  const alone = scanner(t, { endpoints: [blind.url], healthIntervalMs: 100 })
  await until('found blind', () => isBlind(alone), 2000)
  await t.rejects(alone.scan(Readable.from([unique()])), { name: 'ScannerError', code: 'unavailable' }, 'an outage, never a clean verdict')
})
