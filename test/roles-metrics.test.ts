import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startFakeClamd } from './helpers/fake-clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { eicar, upload, uniqueContent } from './helpers/multipart.ts'

const clamd = await startClamd()
t.teardown(() => clamd.stop())
const final = ['clean', 'infected', 'unscannable', 'failed']

t.test('an api process takes uploads without scanning; a worker process on the same state scans them', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-roles-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const api = await startGateway(t, { GW_ROLE: 'api', GW_CLAMD: clamd.url }, dir)
  const res = await upload(api.url, { name: 'file', filename: 'a.txt', data: uniqueContent(2000) })
  t.equal(res.status, 202)
  await new Promise((r) => setTimeout(r, 500))
  t.equal((await waitForStatus(api.url, res.json.id, ['pending'])).status, 'pending', 'nobody scans it yet')

  const worker = await startGateway(t, { GW_ROLE: 'worker', GW_CLAMD: clamd.url }, dir)
  const refused = await upload(worker.url, { name: 'file', filename: 'b.txt', data: uniqueContent(10) })
  t.equal(refused.status, 404, 'a worker takes no uploads')
  t.equal(refused.json.error.code, 'GW_NOT_FOUND')
  t.equal((await waitForStatus(api.url, res.json.id, final)).status, 'clean', 'the worker scanned and promoted it')
  t.equal((await fetch(`${worker.url}/healthz`)).status, 200)
  t.match(await (await fetch(`${worker.url}/metrics`)).text(), /gateway_scans_total\{outcome="clean"\} 1/)
})

t.test('/metrics reports uploads, bytes, scans, the queue and clamd', async (t) => {
  const gw = await startGateway(t, { GW_CLAMD: clamd.url })
  const clean = uniqueContent(3000)
  const a = await upload(gw.url, { name: 'file', filename: 'a.txt', data: clean })
  const b = await upload(gw.url, { name: 'file', filename: 'b.txt', data: Buffer.concat([uniqueContent(100), eicar]) })
  const refused = await upload(gw.url, { name: 'file', filename: 'c.txt', data: '' })
  t.equal(refused.status, 400)
  await waitForStatus(gw.url, a.json.id, final)
  await waitForStatus(gw.url, b.json.id, final)
  const res = await fetch(`${gw.url}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await res.text()
  const value = (line: string): number => Number(new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1])
  t.equal(value('gateway_uploads_total{outcome="accepted"}'), 2)
  t.equal(value('gateway_uploads_total{outcome="refused"}'), 1)
  t.equal(value('gateway_upload_bytes_total{outcome="stored"}'), clean.length + b.json.size)
  t.equal(value('gateway_scans_total{outcome="clean"}'), 1)
  t.equal(value('gateway_scans_total{outcome="infected"}'), 1)
  t.equal(value('gateway_scan_duration_seconds_count{outcome="clean"}'), 1)
  t.equal(value('gateway_promotions_total{outcome="promoted"}'), 1)
  t.equal(value('gateway_queue_depth'), 0)
  t.equal(value('gateway_oldest_pending_upload_age_seconds'), 0)
  t.equal(value('gateway_state_store_up'), 1)
  t.equal(value(`gateway_clamd_endpoint_up{endpoint="${clamd.url}"}`), 1)
  // The test signature set has no daily database: clamd reports no version, so the gauges are unknown.
  t.match(text, /^gateway_clamd_signature_version NaN$/im)
  t.match(text, /^gateway_clamd_signature_age_seconds NaN$/im)
  t.ok(value('process_resident_memory_bytes') > 0, 'process metrics too')
})

t.test('queue depth and the age of the oldest waiting upload, while nothing scans', async (t) => {
  const gw = await startGateway(t, { GW_ROLE: 'api', GW_CLAMD: clamd.url })
  for (let i = 0; i < 3; i++) t.equal((await upload(gw.url, { name: 'file', filename: 'q.txt', data: uniqueContent(100) })).status, 202)
  await new Promise((r) => setTimeout(r, 1100))
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(text, /^gateway_queue_depth 3$/m)
  const age = Number(/^gateway_oldest_pending_upload_age_seconds (\S+)$/m.exec(text)?.[1])
  t.ok(age >= 1 && age < 30, `oldest upload is ${age} s old`)
})

t.test('signature version and age come from clamd VERSION; what cannot be read is NaN', async (t) => {
  const fake = await startFakeClamd({ kind: 'reply', reply: 'stream: OK\0' })
  t.teardown(() => fake.close())
  // Queue read on every scrape, so the second one sees the store closed at once.
  const gw = await startGateway(t, { GW_SCAN_CONCURRENCY: '0', GW_CLAMD: fake.url, GW_CLAMD_HEALTH_INTERVAL_MS: '0', GW_METRICS_QUEUE_INTERVAL_MS: '0' })
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(text, /^gateway_clamd_signature_version 27500$/m)
  const age = Number(/^gateway_clamd_signature_age_seconds (\S+)$/m.exec(text)?.[1])
  const expected = (Date.now() - Date.parse('Tue Nov 24 09:00:00 2026')) / 1000
  t.ok(Math.abs(age - expected) < 60, `age ${age} s`)
  await gw.gateway.state.close()
  const down = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(down, /^gateway_state_store_up 0$/m)
  t.match(down, /^gateway_queue_depth NaN$/im)
})
