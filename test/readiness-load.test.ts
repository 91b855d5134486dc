import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startFakeClamd } from './helpers/fake-clamd.ts'
import { freePort } from './helpers/free-port.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { upload, uniqueContent } from './helpers/multipart.ts'

// What /readyz and /metrics cost the parts behind them: readiness comes from the clamd pool's
// cached health checks, the queue figures from one query per interval, and neither needs the
// main port (GW_OPS_PORT).
const clamd = await startClamd()
t.teardown(() => clamd.stop())

/** Each endpoint: a fake in front of the real clamd that answers (and counts) the EICAR checks and forwards scans. */
async function countingClamd(t: Test) {
  const server = await startFakeClamd({ kind: 'proxy', port: clamd.port })
  t.teardown(() => server.close())
  return server
}

t.test('100 concurrent /readyz cost no EICAR scan beyond the health checks: one per endpoint per interval', async (t) => {
  const [a, b] = [await countingClamd(t), await countingClamd(t)]
  const intervalMs = 2000
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_CLAMD: `${a.url},${b.url}`, GW_CLAMD_HEALTH_INTERVAL_MS: String(intervalMs) })
  // Ready once a check passed (on a loaded machine the first one may time out: the next comes an interval later).
  for (let i = 0; i < 60 && (await fetch(`${gw.url}/readyz`)).status !== 200; i++) await sleep(500)
  const before = [a.eicarChecks, b.eicarChecks]
  const started = Date.now()
  for (let round = 0; round < 2; round++) {
    const answers = await Promise.all(Array.from({ length: 50 }, () => fetch(`${gw.url}/readyz`).then(async (r) => ({ status: r.status, body: await r.json() }))))
    t.same(new Set(answers.map((r) => r.status)), new Set([200]), `round ${round}: all ready`)
    t.match(answers[0]?.body.checks.scanner, { ok: true, detail: new RegExp(`${a.url}: detected the EICAR test file.*${b.url}: detected the EICAR test file`) })
  }
  // The periodic checks go on meanwhile: at most one per endpoint per interval that began.
  const allowed = Math.floor((Date.now() - started) / intervalMs) + 1
  const added = [a.eicarChecks - before[0]!, b.eicarChecks - before[1]!]
  t.ok(added.every((n) => n <= allowed), `EICAR scans per endpoint during 100 /readyz: ${added.join(', ')} (at most ${allowed} allowed by the interval)`)
})

t.test('with health checks off, a worker whose only clamd never passed an EICAR check scans nothing; uploads stay pending', async (t) => {
  // A clamd without signatures: it answers OK to everything, EICAR included.
  const blind = await startFakeClamd({ kind: 'reply', reply: 'stream: OK\0' }, { checks: 'like-scans' })
  t.teardown(() => blind.close())
  const gw = await startGateway(t, { GW_CLAMD: blind.url, GW_CLAMD_HEALTH_INTERVAL_MS: '0', GW_SCAN_CONCURRENCY: '1' })
  const data = uniqueContent(1000)
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data })
  t.equal(res.status, 202)
  // The worker polls every 50 ms and retries an outage after 100-500 ms: give it many chances.
  await sleep(2000)
  const view = await waitForStatus(gw.url, res.json.id, ['pending', 'scanning', 'clean', 'failed'])
  // Between two of its checks the worker may hold the claim (shown as scanning); it never gets a verdict.
  t.ok(view.status === 'pending' || view.status === 'scanning', `not scanned, never clean (status ${view.status})`)
  t.equal(view.verdict ?? null, null, 'no verdict was drawn')
  const instreams = blind.connections.filter((c) => c.command === 'zINSTREAM')
  t.ok(instreams.length >= 1, `the endpoint was checked (${instreams.length} INSTREAMs)`)
  t.same(instreams.map((c) => c.bodyBytes).filter((n) => n !== 68), [], 'every INSTREAM was a 68-byte EICAR check: no file was sent')
  const ready = await fetch(`${gw.url}/readyz`)
  t.equal(ready.status, 503)
  t.match((await ready.json()).checks.scanner, { ok: false, detail: /answered OK to the EICAR test file/ })
})

t.test('/readyz of an api process does not need clamd; one that scans does', async (t) => {
  const dead = `tcp://127.0.0.1:${await freePort()}`
  const api = await startGateway(t, { GW_ROLE: 'api', GW_CLAMD: dead })
  const res = await fetch(`${api.url}/readyz`)
  const body = await res.json()
  t.equal(res.status, 200, JSON.stringify(body))
  t.same(Object.keys(body.checks).sort(), ['production', 'quarantine', 'state'], 'clamd is not its business')
  const all = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_CLAMD: dead })
  const scanning = await fetch(`${all.url}/readyz`)
  t.equal(scanning.status, 503)
  t.match((await scanning.json()).checks.scanner, { ok: false, detail: /ECONNREFUSED/ })
})

t.test('20 concurrent scrapes read the queue from the state store once per interval', async (t) => {
  const gw = await startGateway(t, { GW_ROLE: 'api', GW_CLAMD: clamd.url, GW_METRICS_QUEUE_INTERVAL_MS: '600000' })
  for (let i = 0; i < 2; i++) t.equal((await upload(gw.url, { name: 'file', filename: 'q.txt', data: uniqueContent(100) })).status, 202)
  // A counting wrapper of the real store, on the instance the metrics read from.
  const state = gw.gateway.state
  const real = state.queueStats.bind(state)
  let queries = 0
  state.queueStats = () => {
    queries++
    return real()
  }
  for (let round = 0; round < 2; round++) {
    const texts = await Promise.all(Array.from({ length: 20 }, () => fetch(`${gw.url}/metrics`).then((r) => r.text())))
    for (const text of texts) t.match(text, /^gateway_queue_depth 2$/m)
  }
  t.equal(queries, 1, `queue queries for 40 scrapes: ${queries}`)
})

t.test('GW_OPS_PORT: /metrics and /readyz on their own port, not on the main one; stopped with the gateway', async (t) => {
  const opsPort = await freePort()
  const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_OPS_PORT: String(opsPort) })
  const ops = `http://127.0.0.1:${opsPort}`
  t.equal((await fetch(`${ops}/readyz`)).status, 200)
  const metrics = await fetch(`${ops}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /^gateway_queue_depth 0$/m)
  t.same(await (await fetch(`${ops}/healthz`)).json(), { ok: true })
  t.equal((await fetch(`${ops}/v1/uploads/${'0'.repeat(32)}`)).status, 404, 'no client routes on the ops port')
  t.equal((await fetch(`${gw.url}/metrics`)).status, 404, 'not on the main port')
  t.equal((await fetch(`${gw.url}/readyz`)).status, 404)
  t.equal((await fetch(`${gw.url}/healthz`)).status, 200, '/healthz stays on the main port (container health checks)')
  await gw.stop()
  // A new connection (fetch would reuse its kept-alive one, which stop() closed).
  const after = await new Promise<string>((resolve) => {
    const socket = connect(opsPort, '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
  t.equal(after, 'ECONNREFUSED', 'the ops listener is closed by stop()')
})
