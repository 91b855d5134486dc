import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startFakeClamd } from './helpers/fake-clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { upload, uniqueContent } from './helpers/multipart.ts'

// New uploads are scanned first, and rescans never take more than their share of the scanner.
const admin = 'admin-key-for-priority-01'
const final = ['clean', 'infected', 'unscannable', 'failed']
const clamd = await startClamd()
t.teardown(() => clamd.stop())
// Every scan takes at least 20 ms, so a rescan of hundreds of files lasts seconds.
const slow = await startFakeClamd({ kind: 'proxy', port: clamd.port, delayMs: 20 })
t.teardown(() => slow.close())

t.test('uploads made during a large rescan are scanned first; rescans keep to their share', async (t) => {
  const gw = await startGateway(t, { GW_CLAMD: slow.url, GW_SCAN_CONCURRENCY: '4', GW_RESCAN_SHARE: '0.25', GW_ADMIN_KEYS: admin })
  const stored: string[] = []
  for (let i = 0; i < 250; i += 25) {
    const batch = await Promise.all(Array.from({ length: 25 }, () => upload(gw.url, { name: 'file', filename: 's.txt', data: uniqueContent(2000) })))
    stored.push(...batch.map((r) => r.json.id))
  }
  for (const id of stored) await waitForStatus(gw.url, id, final)
  const res = await fetch(`${gw.url}/v1/rescans`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ scope: { all: true } })
  })
  const rescan = await res.json()
  t.equal(rescan.total, 250)
  const startedAt = Date.now()

  const fresh = await Promise.all(Array.from({ length: 20 }, () => upload(gw.url, { name: 'file', filename: 'n.txt', data: uniqueContent(2000) })))
  for (const r of fresh) t.equal((await waitForStatus(gw.url, r.json.id, final)).status, 'clean')
  const freshDoneIn = Date.now() - startedAt
  const progress = await (await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { headers: { authorization: `Bearer ${admin}` } })).json()
  t.ok(progress.done < progress.total, `20 new uploads clean in ${freshDoneIn} ms while the rescan had done ${progress.done} of ${progress.total}`)

  // One slot of four for rescans: no two rescan scans ever overlapped.
  const rescans = (await Promise.all(stored.map((id) => gw.gateway.state.listScans(id)))).flatMap((s) => s.slice(1))
  const edges = rescans.flatMap((s) => [[s.startedAt, 1], [s.startedAt + s.durationMs, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let running = 0
  let peak = 0
  for (const [, step] of edges) peak = Math.max(peak, (running += step))
  t.equal(peak, 1, `at most one rescan at a time (${rescans.length} rescans so far)`)
  await gw.stop()
})

t.test('an adoption of many objects takes only the rescans\' share: a new upload is scanned at once', async (t) => {
  const gw = await startGateway(t, { GW_CLAMD: slow.url, GW_SCAN_CONCURRENCY: '4', GW_RESCAN_SHARE: '0.25', GW_ADMIN_KEYS: admin, GW_ADOPT_PAGE_SIZE: '200' })
  const { Readable } = await import('node:stream')
  for (let i = 0; i < 400; i += 40) {
    await Promise.all(
      Array.from({ length: 40 }, (_, j) =>
        gw.gateway.objects.put('production', `legacy/${String(i + j).padStart(4, '0')}.txt`, Readable.from([uniqueContent(300)]), { contentType: 'text/plain', metadata: {} })
      )
    )
  }
  const res = await fetch(`${gw.url}/v1/rescans`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ scope: { adopt: { prefix: 'legacy/' } } })
  })
  const adoption = await res.json()
  const view = async () => (await fetch(`${gw.url}/v1/rescans/${adoption.id}`, { headers: { authorization: `Bearer ${admin}` } })).json()
  let progress = await view()
  while (progress.total < 400) {
    await new Promise((r) => setTimeout(r, 50))
    progress = await view()
  }
  const started = Date.now()
  const fresh = await upload(gw.url, { name: 'file', filename: 'n.txt', data: uniqueContent(2000) })
  t.equal((await waitForStatus(gw.url, fresh.json.id, final)).status, 'clean')
  const tookMs = Date.now() - started
  progress = await view()
  t.ok(progress.done < 400, `a new upload was clean in ${tookMs} ms while the adoption had scanned ${progress.done} of 400`)
  await gw.stop()
})
