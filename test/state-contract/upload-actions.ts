import type { Test } from 'tap'
import { rescanMeta, setups, stored, upload, type MakeStore } from './harness.ts'

/** Operator actions on one upload: retry, release, rescan now. */
export function uploadActionsContract(t: Test, makeStore: MakeStore): void {
  const { setup } = setups(makeStore)

  t.test('failed uploads: an automatic round when due, an operator retry at once, both with fresh tries', async (t) => {
    const store = await setup(t)
    const a = upload({ createdAt: 10 })
    const b = upload({ createdAt: 20 })
    for (const u of [a, b]) await store.insertUpload(u)
    const claims = await store.claim('w', 2, 1_000, 100)
    const byId = (id: string) => claims.find((c) => c.upload.id === id)!
    t.ok(await store.update(byId(a.id), { status: 'failed', lastError: 'store down', failedRetryAt: 5_000 }, 200))
    t.ok(await store.update(byId(b.id), { status: 'failed', lastError: 'bytes changed', failedRetryAt: null }, 200))
    t.match(await store.getUpload(a.id), { status: 'failed', failedRetryAt: 5_000, failedRounds: 0 })
    t.equal(await store.requeueFailed(4_999, 10), 0, 'not due yet')
    t.equal(await store.requeueFailed(5_000, 10), 1, 'only the one with a retry time')
    t.match(await store.getUpload(a.id), { status: 'pending', runAt: 5_000, attempts: 0, failedRetryAt: null, failedRounds: 1, lastError: 'store down' })
    t.equal((await store.getUpload(b.id))?.status, 'failed')
    t.ok(await store.retryFailed(b.id, 6_000))
    t.match(await store.getUpload(b.id), { status: 'pending', runAt: 6_000, attempts: 0, failedRounds: 0 })
    t.notOk(await store.retryFailed(b.id, 6_000), 'only a failed upload')
    const [again] = await store.claim('w', 1, 1_000, 5_500)
    t.equal(again?.upload.id, a.id)
    t.ok(await store.update(again!, { status: 'pending', lastError: 'store down', runAt: 5_600 }, 5_600))
    t.equal((await store.getUpload(a.id))?.failedRounds, 1, 'rounds are counted until an operator acts')
  })

  t.test('requestRelease records what was released and the verified version, and only from the status it was read in', async (t) => {
    const store = await setup(t)
    const infected = await stored(store, 'infected', { createdAt: 10 })
    t.equal(await store.requestRelease(infected.id, { by: 'k', reason: 'r', from: 'failed', signature: null, version: 'v2' }, 100), null, 'its status changed meanwhile')
    const got = await store.requestRelease(infected.id, { by: 'k', reason: 'r', from: 'infected', signature: 'Sig.A', version: '"etag-2"' }, 100)
    t.match(got, { status: 'promoting', scannedVersion: '"etag-2"', released: { by: 'k', status: 'infected', signature: 'Sig.A' } })
    const [c] = await store.claim('w', 1, 1_000, 100)
    t.ok(await store.update(c!, { status: 'clean', location: 'production', nextScanAt: 500 }, 200))
    const [r] = await store.claimRescans('w', 1, 1_000, 500)
    t.ok(await store.update(r!, { status: 'requarantining', runAt: 1_500 }, 600))
    t.ok(await store.update({ ...r!, upload: { ...r!.upload, status: 'requarantining' } }, { status: 'infected', location: 'quarantine', clearRelease: true }, 700))
    t.match(await store.getUpload(infected.id), { status: 'infected', released: null })
  })

  t.test('requestRelease sends an unleased detection to promotion, on the record, wherever its bytes are', async (t) => {
    const store = await setup(t)
    const infected = await stored(store, 'infected', { createdAt: 10, nextScanAt: 50_000 })
    const failed = await stored(store, 'failed', { createdAt: 20 })
    const unscannable = await stored(store, 'unscannable', { createdAt: 30 })
    const clean = await stored(store, 'clean', { createdAt: 40 })
    const inProduction = await stored(store, 'infected', { createdAt: 50, location: 'production' })
    const leased = await stored(store, 'infected', { createdAt: 60, nextScanAt: 100 })
    const covered = await stored(store, 'unscannable', { createdAt: 70 })
    const pending = upload({ createdAt: 10_000 })
    await store.insertUpload(pending)
    t.equal((await store.claimRescans('w', 1, 60_000, 100))[0]?.upload.id, leased.id)
    const rescan = await store.createRescan(rescanMeta(1_000, { ids: [covered.id] }), { kind: 'ids', ids: [covered.id] })
    t.equal(rescan.total, 1)

    const by = { by: 'key-1', reason: 'false positive, vendor confirmed' }
    const got = await store.requestRelease(infected.id, by, 2_000)
    t.match(got, { id: infected.id, status: 'promoting', runAt: 2_000, attempts: 0, lastError: null, nextScanAt: null, location: 'quarantine', released: { by: 'key-1', at: 2_000, reason: by.reason } })
    t.same(await store.getUpload(infected.id), got)
    t.equal(await store.requestRelease(infected.id, by, 2_100), null, 'released once')
    t.ok(await store.requestRelease(failed.id, by, 2_000))
    t.ok(await store.requestRelease(unscannable.id, by, 2_000))
    t.match(await store.requestRelease(inProduction.id, by, 2_000), { status: 'promoting', location: 'production' }, 'tagged in place (tag mode)')
    for (const id of [clean.id, leased.id, pending.id, '0'.repeat(32)]) t.equal(await store.requestRelease(id, by, 2_000), null)
    t.ok(await store.requestRelease(covered.id, by, 2_000))
    t.match(await store.getRescan(rescan.id), { total: 0, done: 0 }, 'a released upload leaves the rescans waiting for it')

    const claims = await store.claim('w', 10, 60_000, 2_000)
    t.same(claims.map((c) => c.upload.id).sort(), [infected.id, failed.id, unscannable.id, inProduction.id, covered.id].sort(), 'due for promotion at once')
    const c = claims.find((x) => x.upload.id === infected.id)!
    t.match(c, { kind: 'scan', upload: { status: 'promoting', attempts: 1, released: { by: 'key-1' } } })
    t.ok(await store.update(c, { status: 'clean', location: 'production', nextScanAt: null }, 2_500))
    t.match(await store.getUpload(infected.id), { status: 'clean', location: 'production', released: { by: 'key-1', at: 2_000 } })
  })

  t.test('scheduleRescan makes a stored upload nobody works on due now', async (t) => {
    const store = await setup(t)
    const clean = await stored(store, 'clean', { createdAt: 10, nextScanAt: 90_000 })
    const infected = await stored(store, 'infected', { createdAt: 20 })
    const failed = await stored(store, 'failed', { createdAt: 30 })
    const leased = await stored(store, 'clean', { createdAt: 40, nextScanAt: 50 })
    const pending = upload({ createdAt: 10_000 })
    await store.insertUpload(pending)
    await store.claimRescans('w', 1, 60_000, 100)
    t.ok(await store.scheduleRescan(clean.id, 1_000))
    t.ok(await store.scheduleRescan(infected.id, 1_000))
    for (const id of [failed.id, leased.id, pending.id, '0'.repeat(32)]) t.notOk(await store.scheduleRescan(id, 1_000))
    t.equal((await store.getUpload(clean.id))?.nextScanAt, 1_000)
    t.equal((await store.getUpload(leased.id))?.nextScanAt, 60_100)
    const claims = await store.claimRescans('w', 10, 60_000, 1_000)
    t.same(claims.map((c) => c.upload.id).sort(), [clean.id, infected.id].sort())
  })
}
