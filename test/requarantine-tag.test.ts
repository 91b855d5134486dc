import { copyFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { SIGNATURES_DIR, startClamd } from './helpers/clamd.ts'
import { startGateway, waitForStatus } from './helpers/gateway.ts'
import { marker, upload, uniqueContent } from './helpers/multipart.ts'

// GW_REQUARANTINE_MODE=tag: a detected object stays where it is, tagged for a bucket policy.
const admin = 'admin-key-for-tag-mode-01'
const clamd = await startClamd({ signatures: ['test.ndb', 'test.hdb'] })
t.teardown(() => clamd.stop())
const gw = await startGateway(t, { GW_CLAMD: clamd.url, GW_REQUARANTINE_MODE: 'tag', GW_ADMIN_KEYS: admin })
const as = { authorization: `Bearer ${admin}` }
const final = ['clean', 'infected', 'unscannable', 'failed']
const rescanNow = (id: string) => fetch(`${gw.url}/v1/uploads/${id}/rescan`, { method: 'POST', headers: as })
async function scansOf(id: string, n: number): Promise<string[]> {
  const deadline = Date.now() + 10_000
  let outcomes: string[] = []
  while (outcomes.length < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50))
    outcomes = (await gw.gateway.state.listScans(id)).map((s) => s.outcome)
  }
  return outcomes
}

t.test('detected in place, tagged; a clean rescan does not release it; a release does', async (t) => {
  const res = await upload(gw.url, { name: 'file', filename: 'm.txt', data: Buffer.concat([uniqueContent(500), Buffer.from(marker)]) })
  t.equal((await waitForStatus(gw.url, res.json.id, final)).status, 'clean')
  await copyFile(join(SIGNATURES_DIR, 'test.ldb'), join(clamd.dbDir, 'test.ldb'))
  await clamd.reload()
  t.equal((await rescanNow(res.json.id)).status, 202)
  const found = await waitForStatus(gw.url, res.json.id, ['infected'])
  t.match(found.verdict, { signature: /Marker/ })
  // Shown infected from the detection on; the tag follows in the requarantine step: wait for its end.
  for (let i = 0; i < 200 && (await gw.gateway.state.getUpload(res.json.id))?.status !== 'infected'; i++) await new Promise((r) => setTimeout(r, 50))
  t.ok(await gw.gateway.objects.head('production', res.json.id), 'left in production')
  t.match(await gw.gateway.objects.getTags('production', res.json.id), { 'av-status': 'infected' }, 'tagged for the bucket policy')

  await rm(join(clamd.dbDir, 'test.ldb'))
  await clamd.reload()
  t.equal((await rescanNow(res.json.id)).status, 202)
  t.same(await scansOf(res.json.id, 3), ['clean', 'infected', 'clean'])
  t.equal((await waitForStatus(gw.url, res.json.id, final)).status, 'infected', 'a clean rescan never releases')
  // The scan is recorded before the rescan ends (its tag set again, its lease given back): wait for the end.
  for (let i = 0; i < 200 && (await gw.gateway.state.getUpload(res.json.id))?.nextScanAt !== null; i++) await new Promise((r) => setTimeout(r, 50))
  t.match(await gw.gateway.objects.getTags('production', res.json.id), { 'av-status': 'infected' })

  const release = await fetch(`${gw.url}/v1/uploads/${res.json.id}/release`, {
    method: 'POST',
    headers: { ...as, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'reviewed: test marker' })
  })
  t.equal(release.status, 202, await release.clone().text())
  t.match(await waitForStatus(gw.url, res.json.id, ['clean']), { released: { reason: 'reviewed: test marker' } })
  t.match(await gw.gateway.objects.getTags('production', res.json.id), { 'av-status': 'clean', 'av-released-by': /^admin-/ })
})
