import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import t from 'tap'
import { startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { eicar, upload, uniqueContent } from './helpers/multipart.ts'

// The operator's API on the embedded defaults (fs store, SQLite) with a real clamd.
const admin = 'admin-key-for-ops-api-0001'
const uploader = 'upload-key-for-ops-api-001'
const final = ['clean', 'infected', 'unscannable', 'failed']
const clamd = await startClamd()
t.teardown(() => clamd.stop())
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_UPLOAD_KEYS: uploader, GW_ADMIN_KEYS: admin })
const as = (key: string) => ({ authorization: `Bearer ${key}` })
const json = (key: string) => ({ ...as(key), 'content-type': 'application/json' })
const startRescan = (scope: unknown, key = admin) => fetch(`${gw.url}/v1/rescans`, { method: 'POST', headers: json(key), body: JSON.stringify({ scope }) })

async function stored(n: number, data = () => uniqueContent(1000)): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < n; i++) ids.push((await upload(gw.url, { name: 'file', filename: `f${i}.txt`, data: data() }, as(uploader))).json.id)
  for (const id of ids) await waitForStatus(gw.url, id, final, { headers: as(uploader) })
  return ids
}

async function finished(id: string, timeoutMs = 15_000): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const view = await (await fetch(`${gw.url}/v1/rescans/${id}`, { headers: as(admin) })).json()
    if (view.state === 'done' || Date.now() > deadline) return view
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('admin actions are refused without an admin key', async (t) => {
  const [id] = await stored(1)
  const attempts: [string, string, unknown?][] = [
    ['POST', '/v1/rescans', { scope: { all: true } }],
    ['GET', '/v1/rescans'],
    ['DELETE', '/v1/rescans/7f8c2b1e-4d3a-4b6c-9e2f-0a1b2c3d4e5f'],
    ['POST', `/v1/uploads/${id}/release`, { reason: 'because' }],
    ['POST', `/v1/uploads/${id}/rescan`],
    ['GET', '/v1/audit']
  ]
  for (const [method, path, body] of attempts) {
    const send = (headers: Record<string, string>) => fetch(`${gw.url}${path}`, { method, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) })
    t.equal((await send({})).status, 401, `${method} ${path} without a key`)
    const forbidden = await send(as(uploader))
    t.equal(forbidden.status, 403, `${method} ${path} with an upload key`)
    t.equal((await forbidden.json()).error.code, 'GW_FORBIDDEN')
  }
  t.same((await (await fetch(`${gw.url}/v1/audit`, { headers: as(admin) })).json()).entries, [], 'refused actions leave no audit entry')
})

t.test('a rescan of everything: progress, rate, listing, audit', async (t) => {
  const ids = await stored(6)
  const res = await startRescan({ all: true })
  t.equal(res.status, 202)
  const started = await res.json()
  t.match(res.headers.get('location'), `/v1/rescans/${started.id}`)
  t.match(started, { state: 'running', createdBy: /^admin-[0-9a-f]{12}$/, scope: { all: true } })
  t.ok(started.total >= ids.length)
  const done = await finished(started.id)
  t.match(done, { state: 'done', done: started.total, clean: started.total, infected: 0, failed: 0, estimatedEnd: null })
  t.ok(done.ratePerSecond > 0)
  for (const id of ids) t.equal((await gw.gateway.state.listScans(id)).length, 2, 'scanned again once')
  const list = await (await fetch(`${gw.url}/v1/rescans`, { headers: as(admin) })).json()
  t.equal(list.rescans[0].id, started.id)
  const audit = await (await fetch(`${gw.url}/v1/audit?limit=1`, { headers: as(admin) })).json()
  t.match(audit.entries, [{ action: 'rescan.start', target: started.id, actor: started.createdBy }])
})

t.test('scopes select what they say', async (t) => {
  const ids = await stored(3)
  const infected = await stored(1, () => Buffer.concat([uniqueContent(100), eicar]))
  const byIds = await (await startRescan({ ids: [ids[0], infected[0]] })).json()
  t.equal(byIds.total, 2, 'ids: stored clean and infected uploads')
  const view = await finished(byIds.id)
  t.match(view, { clean: 1, infected: 1 })
  t.equal((await waitForStatus(gw.url, infected[0]!, final, { headers: as(uploader) })).status, 'infected')
  const future = await (await startRescan({ uploadedAfter: new Date(Date.now() + 60_000).toISOString() })).json()
  t.equal(future.total, 0, 'nothing uploaded in the future')
  t.equal((await finished(future.id)).state, 'done')
  const recent = await (await startRescan({ uploadedAfter: new Date(Date.now() - 60_000).toISOString(), uploadedBefore: new Date(Date.now() + 1000).toISOString() })).json()
  t.ok(recent.total >= 4)
  const sig = await (await startRescan({ signatureVersionBelow: 1 })).json()
  t.ok(sig.total >= 4, 'the test database reports no signature version: every scan counts as older')
  const prefix = await (await startRescan({ prefix: ids[1]!.slice(0, 30) })).json()
  t.equal(prefix.total, 1)
  for (const [scope, message] of [
    [{ uploadedAfter: 'yesterday' }, /not an ISO date/],
    [{ uploadedAfter: '2026-02-01', uploadedBefore: '2026-01-01' }, /earlier than/],
    [{ adopt: { bucket: 'somewhere-else' } }, /covers the production bucket/]
  ] as const) {
    const bad = await startRescan(scope)
    t.equal(bad.status, 400, JSON.stringify(scope))
    t.match((await bad.json()).error, { code: 'GW_BAD_REQUEST', message })
  }
  for (const scope of [{}, { all: false }, { prefix: '' }, { ids: ['nope'] }, { all: true, prefix: 'x' }, { uploadedAfter: '2026-01-01', ids: ['0'.repeat(32)] }]) {
    t.equal((await startRescan(scope)).status, 400, `schema refuses ${JSON.stringify(scope)}`)
  }
  await Promise.all([byIds, recent, sig, prefix].map((r) => finished(r.id)))
})

t.test('cancel stops a rescan and is audited; the command line does the same', async (t) => {
  const ids = await stored(2)
  // Asynchronous: the gateway answering it runs in this process.
  const cli = (...args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
      const opts = { cwd: resolve(import.meta.dirname, '..'), env: { ...process.env, GW_URL: gw.url, GW_ADMIN_KEY: admin }, timeout: 20_000 }
      execFile(process.execPath, ['scripts/ops.ts', ...args], opts, (err, stdout, stderr) =>
        done({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })
      )
    })
  const started = (await cli('rescan', '--ids', ids.join(',')))
  t.equal(started.status, 0, started.stderr)
  const rescan = JSON.parse(started.stdout)
  t.equal(rescan.total, 2)
  const cancelled = (await cli('cancel', rescan.id))
  // It may have finished already (two small files): then there is nothing to cancel.
  if (cancelled.status === 0) t.equal(JSON.parse(cancelled.stdout).state, 'cancelled')
  else t.match(JSON.parse(cancelled.stdout).error, { code: 'GW_CONFLICT' })
  const again = await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { method: 'DELETE', headers: as(admin) })
  t.equal(again.status, 409, 'a second cancel has nothing to cancel')
  const audit = JSON.parse((await cli('audit', '--limit', '5')).stdout)
  t.equal(audit.entries[0].action, cancelled.status === 0 ? 'rescan.cancel' : 'rescan.start')
  t.equal((await cli('rescan')).status, 2, 'a rescan without a scope is a usage error')
  const scans = JSON.parse((await cli('scans', ids[0]!)).stdout)
  t.ok(scans.scans.length >= 1)
  t.equal((await cli('rescan-status', '00000000-0000-4000-8000-000000000000')).status, 1, 'an unknown rescan is an error answer')
})

t.test('cancelling a large rescan leaves the rest unscanned and counts what was done', async (t) => {
  const ids = await stored(100)
  // Two slots for rescans at the default share, so a 100-upload rescan takes a moment.
  const rescan = await (await startRescan({ ids })).json()
  const res = await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { method: 'DELETE', headers: as(admin) })
  t.equal(res.status, 200)
  const view = await res.json()
  t.equal(view.state, 'cancelled')
  t.ok(view.done < 100, `${view.done} of 100 done when cancelled`)
  await new Promise((r) => setTimeout(r, 500))
  const after = await (await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { headers: as(admin) })).json()
  t.ok(after.done <= view.done + 4, 'at most the scans already running finish after the cancel')
  const rescanned = await Promise.all(ids.map(async (id) => (await gw.gateway.state.listScans(id)).length > 1))
  t.ok(rescanned.filter(Boolean).length < 100, 'not everything was rescanned')
  const record = await gw.gateway.state.getUpload(ids.at(-1)!)
  t.ok((record?.nextScanAt ?? 0) > Date.now() + 24 * 3600_000, 'back on its regular schedule')
})
