import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startFaultyProxy } from './helpers/faulty-proxy.ts'
import { startChildGateway } from './helpers/child-gateway.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { upload, uniqueContent } from './helpers/multipart.ts'
import { exitWhenDone } from './helpers/exit-guard.ts'

// Kills and silent fakes: this file once finished every test and then hung in Node's exit (see exit-guard.ts).
exitWhenDone()

// What happens when clamd is down, silent or lying, when the quarantined bytes change, and when the gateway dies mid-scan.
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('clamd down at scan time: the upload is accepted, stays pending, and is scanned once clamd is back', async (t) => {
  const proxy = await startFaultyProxy(clamd.port, 'refuse')
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, { GW_CLAMD: `tcp://127.0.0.1:${proxy.port}`, GW_CLAMD_CONNECT_TIMEOUT_MS: '500' })
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(2000) })
  t.equal(res.status, 202, 'uploads do not wait for the scanner')
  await sleep(800)
  const waiting = await (await fetch(`${gw.url}/v1/uploads/${res.json.id}`)).json()
  t.match(waiting.status, /^(pending|scanning)$/)
  t.equal(waiting.verdict, null)
  const record = await gw.gateway.state.getUpload(res.json.id)
  t.ok((await gw.gateway.state.listScans(res.json.id)).length >= 1, 'it was tried')
  t.ok((record?.attempts ?? 0) <= 1, 'tries that could not reach the scanner are not counted (1 while one is under way)')
  t.match(record?.lastError, /ScannerError/)
  t.notOk('object' in waiting, 'nothing promoted meanwhile')
  const ready = await fetch(`${gw.url}/readyz`)
  t.equal(ready.status, 503)
  t.match(await ready.json(), { ok: false, checks: { scanner: { ok: false } } })
  await proxy.setMode('pass')
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'failed'])
  t.equal(done.status, 'clean')
  const scans = await gw.gateway.state.listScans(res.json.id)
  t.ok(scans.filter((s) => s.outcome === 'error').length >= 1, 'failed tries are in the audit')
  t.equal(scans.at(-1)?.outcome, 'clean')
})

t.test('a long clamd outage never turns uploads into failures', async (t) => {
  const proxy = await startFaultyProxy(clamd.port, 'refuse')
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, {
    GW_CLAMD: `tcp://127.0.0.1:${proxy.port}`,
    GW_SCAN_MAX_ATTEMPTS: '1',
    GW_SCANNER_MAX_BYTES: '5000',
    GW_CLAMD_CONNECT_TIMEOUT_MS: '300'
  })
  const small = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(2000) })
  const big = await upload(gw.url, { name: 'file', filename: 'b.bin', data: uniqueContent(6000) })
  await sleep(2_000)
  const waiting = await gw.gateway.state.getUpload(small.json.id)
  t.match(waiting?.status, /^(pending|scanning)$/, 'still waiting for the scanner (or being tried again), although only one try is allowed')
  t.ok((waiting?.attempts ?? 0) <= 1, 'tries that could not reach the scanner are not counted')
  t.ok((await gw.gateway.state.listScans(small.json.id)).length >= 2, 'it was tried more than once')
  const over = await waitForStatus(gw.url, big.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.match(over, { status: 'unscannable', verdict: { engine: 'not sent to the scanner' } }, 'a file over the scanner limit needs no scanner')
  await proxy.setMode('pass')
  const done = await waitForStatus(gw.url, small.json.id, ['clean', 'failed'], { timeoutMs: 30_000 })
  t.equal(done.status, 'clean')
})

t.test('a promotion that fails is retried as a promotion, never as a new scan', async (t) => {
  const proxy = await startFaultyProxy(clamd.port, 'refuse')
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, { GW_CLAMD: `tcp://127.0.0.1:${proxy.port}`, GW_CLAMD_CONNECT_TIMEOUT_MS: '300' })
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(2000) })
  t.equal(res.status, 202)
  // The production area breaks after the upload was stored: every copy to it fails.
  const production = join(gw.dir, 'objects', 'production')
  await rm(production, { recursive: true, force: true })
  await writeFile(production, 'not a directory')
  await proxy.setMode('pass')
  const deadline = Date.now() + 10_000
  let record = await gw.gateway.state.getUpload(res.json.id)
  while (!(record?.status === 'promoting' && record.lastError) && Date.now() < deadline) {
    await sleep(50)
    record = await gw.gateway.state.getUpload(res.json.id)
  }
  t.match(record, { status: 'promoting', verdict: { result: 'clean' }, lastError: /./ }, 'the clean verdict is kept')
  t.equal((await (await fetch(`${gw.url}/v1/uploads/${res.json.id}`)).json()).status, 'scanning', 'not clean before the copy exists')
  await rm(production)
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.equal(done.status, 'clean')
  t.equal((await gw.gateway.state.listScans(res.json.id)).filter((s) => s.outcome !== 'error').length, 1, 'scanned once')
})

t.test('clamd that goes silent: timeouts, retries, then failed (never clean)', async (t) => {
  const proxy = await startFaultyProxy(clamd.port, 'pass')
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, {
    GW_CLAMD: `tcp://127.0.0.1:${proxy.port}`,
    GW_CLAMD_IDLE_TIMEOUT_MS: '300',
    // clamd is silent while it scans, so once the whole file is sent only the total timeout applies.
    GW_CLAMD_TOTAL_TIMEOUT_MS: '800',
    GW_SCAN_MAX_ATTEMPTS: '2'
  })
  // It passes its first EICAR check (no scan goes to a clamd before that), then goes silent.
  t.equal((await fetch(`${gw.url}/readyz`)).status, 200)
  await proxy.setMode('hang')
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(2000) })
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.match(done, { status: 'failed', verdict: null })
  const scans = await gw.gateway.state.listScans(res.json.id)
  t.equal(scans.length, 2)
  t.ok(scans.every((s) => s.outcome === 'error' && /not finished within 800 ms/.test(s.detail ?? '')), 'each try timed out')
  t.match(await gw.gateway.objects.getTags('quarantine', res.json.id), { 'av-status': 'failed' })
  t.equal(await gw.gateway.objects.head('production', res.json.id), null)
})

t.test('bytes changed in quarantine after upload: never reported clean', async (t) => {
  const proxy = await startFaultyProxy(clamd.port, 'refuse')
  t.teardown(() => proxy.stop())
  const gw = await startGateway(t, { GW_CLAMD: `tcp://127.0.0.1:${proxy.port}`, GW_SCAN_MAX_ATTEMPTS: '2', GW_CLAMD_CONNECT_TIMEOUT_MS: '300' })
  const res = await upload(gw.url, { name: 'file', filename: 'a.txt', data: uniqueContent(4000) })
  const path = join(gw.dir, 'objects', 'quarantine', res.json.id)
  const bytes = await readFile(path)
  bytes[100] = bytes[100]! ^ 0xff
  await writeFile(path, bytes)
  await proxy.setMode('pass')
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'])
  t.equal(done.status, 'failed')
  const scans = await gw.gateway.state.listScans(res.json.id)
  t.ok(scans.some((s) => /expected 4000 bytes with sha256/.test(s.detail ?? '')), 'the mismatch is recorded')
  t.equal(await gw.gateway.objects.head('production', res.json.id), null)
})

t.test('a gateway killed mid-scan: another one takes the upload over once the lease expires', async (t) => {
  const proxy = await startFaultyProxy(clamd.port, 'hang')
  t.teardown(() => proxy.stop())
  const dir = await mkdtemp(join(tmpdir(), 'gw-crash-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { url, child, output } = await startChildGateway(t, {
    GW_FS_ROOT: join(dir, 'objects'),
    GW_DATABASE_URL: `sqlite:${join(dir, 'state.db')}`,
    GW_SCAN_LEASE_MS: '1500',
    GW_POLL_INTERVAL_MS: '50',
    GW_CLAMD: `tcp://127.0.0.1:${proxy.port}`
  })
  const res = await upload(url, { name: 'file', filename: 'a.txt', data: uniqueContent(3000) })
  t.equal(res.status, 202)
  await waitForStatus(url, res.json.id, ['scanning'])
  child.kill('SIGKILL')
  await once(child, 'exit')
  t.match(output(), /"uploadId":"[0-9a-f]{32}"/, 'logs carry the upload id')

  const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_SCAN_LEASE_MS: '1500' }, dir)
  const done = await waitForStatus(gw.url, res.json.id, ['clean', 'infected', 'unscannable', 'failed'], { timeoutMs: 15_000 })
  t.equal(done.status, 'clean')
  const record = await gw.gateway.state.getUpload(res.json.id)
  t.equal(record?.attempts, 0, 'the promotion step started afresh')
  const scans = await gw.gateway.state.listScans(res.json.id)
  t.equal(scans.at(-1)?.outcome, 'clean')
})
