import type { Test } from 'tap'
import { setups, stored, upload, verdict, type MakeStore } from './harness.ts'

/** The job queue: claims, leases, fenced status changes, rescan claims, queue stats. */
export function jobQueueContract(t: Test, makeStore: MakeStore): void {
  const { setup, setupWithOthers } = setups(makeStore)

  t.test('claim leases due work once, oldest first, up to the limit', async (t) => {
    const store = await setup(t)
    const a = upload({ createdAt: 100 })
    const b = upload({ createdAt: 200 })
    const later = upload({ createdAt: 10_000 })
    for (const u of [b, a, later]) await store.insertUpload(u)
    const first = await store.claim('w1', 1, 5_000, 1_000)
    t.same(first.map((c) => c.upload.id), [a.id])
    t.equal(first[0]?.kind, 'scan')
    t.equal(first[0]?.upload.status, 'scanning')
    t.equal(first[0]?.upload.attempts, 1)
    t.equal(first[0]?.upload.runAt, 6_000)
    const second = await store.claim('w2', 10, 5_000, 1_000)
    t.same(second.map((c) => c.upload.id), [b.id], 'a leased job and a job not yet due are not claimed')
    t.same(await store.claim('w3', 0, 5_000, 1_000), [])
  })

  t.test('an expired lease is claimed again and fences off the old owner', async (t) => {
    const store = await setup(t)
    const u = upload()
    await store.insertUpload(u)
    const [old] = await store.claim('w1', 1, 1_000, 2_000)
    t.ok(old)
    t.same(await store.claim('w2', 1, 1_000, 2_500), [], 'still leased')
    const [fresh] = await store.claim('w2', 1, 1_000, 3_001)
    t.ok(fresh)
    t.equal(fresh?.upload.attempts, 2)
    t.notOk(await store.update(old!, { status: 'infected' }, 3_100), 'the old owner cannot write')
    t.notOk(await store.renewLease(old!, 1_000, 3_100), 'nor renew')
    t.ok(await store.renewLease(fresh!, 1_000, 3_200))
    t.equal((await store.getUpload(u.id))?.runAt, 4_200)
    t.ok(await store.update(fresh!, { status: 'unscannable', verdict: { result: 'unscannable', signature: null, reason: 'x', engine: 'e', signatureVersion: 7 }, scannedAt: 3_300 }, 3_300))
    const done = await store.getUpload(u.id)
    t.match(done, { status: 'unscannable', scannedAt: 3_300, verdict: { reason: 'x', signatureVersion: 7 } })
    t.same(await store.claim('w3', 5, 1_000, 999_999), [], 'terminal uploads are never claimed')
  })

  t.test('a transient failure goes back to pending with its retry time', async (t) => {
    const store = await setup(t)
    const u = upload()
    await store.insertUpload(u)
    const [c] = await store.claim('w1', 1, 1_000, 2_000)
    t.ok(await store.update(c!, { status: 'pending', lastError: 'clamd down', runAt: 10_000 }, 2_100))
    t.match(await store.getUpload(u.id), { status: 'pending', lastError: 'clamd down', runAt: 10_000, attempts: 1 })
    t.same(await store.claim('w1', 1, 1_000, 9_999), [], 'not before its retry time')
    const [again] = await store.claim('w1', 1, 1_000, 10_000)
    t.equal(again?.upload.attempts, 2)
    t.ok(await store.update(again!, { status: 'pending', runAt: 10_000, refundAttempt: true }, 10_010), 'a try that said nothing about the file')
    t.equal((await store.getUpload(u.id))?.attempts, 1, 'is not counted')
    const [third] = await store.claim('w1', 1, 1_000, 10_020)
    t.equal(third?.upload.attempts, 2)
    t.ok(await store.update(third!, { status: 'promoting', resetAttempts: true, verdict: { result: 'clean', signature: null, reason: null, engine: 'e', signatureVersion: null } }, 10_100))
    t.match(await store.getUpload(u.id), { status: 'promoting', attempts: 0 })
    t.notOk(await store.update(third!, { status: 'pending' }, 10_150), 'a write from a claim whose status is stale is refused')
    const promoting = { ...third!, upload: { ...third!.upload, status: 'promoting' as const } }
    t.ok(await store.update(promoting, { status: 'promoting', runAt: 20_000, refundAttempt: true }, 10_200), 'a retry of the promotion')
    t.ok(await store.update(promoting, { status: 'clean' }, 10_250), 'the lease still holds while promoting')
    t.notOk(await store.update(promoting, { status: 'clean' }, 10_300), 'a finished job gave its lease back')
  })

  t.test('a released lease is due again at once, uncounted, and fences off its old holder', async (t) => {
    const store = await setup(t)
    const u = upload()
    await store.insertUpload(u)
    const [c] = await store.claim('w1', 1, 60_000, 2_000)
    t.ok(await store.giveBack(c!, 2_500))
    t.match(await store.getUpload(u.id), { status: 'scanning', attempts: 0, runAt: 2_500 })
    t.notOk(await store.giveBack(c!, 2_600), 'released once')
    t.notOk(await store.update(c!, { status: 'infected' }, 2_600), 'the old holder cannot write')
    const [again] = await store.claim('w2', 1, 60_000, 2_500)
    t.equal(again?.upload.id, u.id, 'another worker takes it without waiting for the lease')
    t.equal(again?.upload.attempts, 1)
    t.ok(await store.update(again!, { status: 'infected' }, 2_700))
    t.notOk(await store.giveBack(again!, 2_800), 'a finished job has no lease to give back')
  })

  t.test('queue stats count unfinished uploads and the oldest of them', async (t) => {
    const store = await setup(t)
    t.same(await store.queueStats(), { depth: 0, oldestCreatedAt: null })
    const a = upload({ createdAt: 100 })
    const b = upload({ createdAt: 200 })
    await store.insertUpload(b)
    await store.insertUpload(a)
    t.same(await store.queueStats(), { depth: 2, oldestCreatedAt: 100 })
    const [c] = await store.claim('w1', 1, 60_000, 1_000)
    t.same(await store.queueStats(), { depth: 2, oldestCreatedAt: 100 }, 'a claimed upload is still unfinished')
    t.ok(await store.update(c!, { status: 'infected' }, 1_100))
    t.same(await store.queueStats(), { depth: 1, oldestCreatedAt: 200 })
  })

  t.test('concurrent claims from several connections never hand the same job out twice', async (t) => {
    // Claims through one connection may be serialised by the adapter (SQLite's always are), and
    // then a claim that picks due rows in one step and leases them in another would pass. Several
    // connections claiming in small batches at once interleave such steps, and catch it.
    const { store, others } = await setupWithOthers(t, 3)
    const uploads = 400
    const ids: string[] = []
    for (let i = 0; i < uploads; i++) {
      const u = upload({ createdAt: i })
      ids.push(u.id)
      await store.insertUpload(u)
    }
    const connections = [...others, store]
    const perConnection = 40
    const batches = await Promise.all(
      connections.map((s, i) => Promise.all(Array.from({ length: perConnection }, (_, j) => s.claim(`w${i}-${j}`, 3, 60_000, 1_000))))
    )
    const claimed = batches.flat(2).map((c) => c.upload.id)
    t.comment(`claimed per connection: ${batches.map((b) => b.flat().length).join(', ')}`)
    t.equal(new Set(claimed).size, uploads, `every due upload was claimed (room for ${connections.length * perConnection * 3})`)
    t.equal(claimed.length, uploads, 'and none twice')
    const records = await Promise.all(ids.map((id) => store.getUpload(id)))
    t.same(
      records.filter((r) => r?.attempts !== 1).map((r) => `${r?.id}: ${r?.attempts} claims`),
      [],
      'each upload was leased exactly once'
    )
  })

  t.test('claimRescans leases stored uploads whose rescan is due, oldest due first', async (t) => {
    const store = await setup(t)
    const a = await stored(store, 'clean', { createdAt: 10, nextScanAt: 500 })
    const b = await stored(store, 'clean', { createdAt: 20, nextScanAt: 300 })
    const c = await stored(store, 'infected', { createdAt: 30, nextScanAt: 2_000 })
    await stored(store, 'clean', { createdAt: 40, nextScanAt: null })
    await stored(store, 'failed', { createdAt: 50, nextScanAt: 100 }) // not rescannable, even when scheduled
    const pending = upload({ createdAt: 60 })
    await store.insertUpload(pending)

    const [first, ...none] = await store.claimRescans('w1', 1, 5_000, 1_000)
    t.same(none, [])
    t.match(first, { kind: 'rescan', owner: 'w1', upload: { id: b.id, status: 'clean', attempts: 1, nextScanAt: 6_000, runAt: 1_020, location: 'production' } })
    t.ok(first?.token)
    const second = await store.claimRescans('w2', 10, 5_000, 1_000)
    t.same(second.map((x) => x.upload.id), [a.id], 'a leased rescan, one not due, one unscheduled, and other statuses are not claimed')
    t.same(await store.claimRescans('w3', 0, 5_000, 1_000), [])
    t.same(await store.queueStats(), { depth: 1, oldestCreatedAt: 60 }, 'rescans are not queued uploads')

    const again = await store.claimRescans('w3', 10, 5_000, 6_001)
    t.same(again.map((x) => x.upload.id).sort(), [a.id, b.id, c.id].sort(), 'expired rescan leases are claimed again')
    t.equal(again.find((x) => x.upload.id === b.id)?.upload.attempts, 2)
    t.notOk(await store.update(first!, { status: 'clean', nextScanAt: 1 }, 6_100), 'the old holder cannot write')
    t.notOk(await store.renewLease(first!, 5_000, 6_100), 'nor renew')
    t.notOk(await store.giveBack(first!, 6_100), 'nor give it back')
    t.equal((await store.claim('w4', 10, 5_000, 6_100)).map((x) => x.upload.id).join(), pending.id, 'claim() takes only the upload flow')
  })

  t.test('a rescan keeps its lease in nextScanAt and gives it back when it ends', async (t) => {
    const store = await setup(t)
    const u = await stored(store, 'clean', { createdAt: 10, nextScanAt: 500, signatureVersion: 3 })
    const [c] = await store.claimRescans('w1', 1, 5_000, 1_000)
    t.ok(await store.renewLease(c!, 5_000, 2_000))
    t.match(await store.getUpload(u.id), { nextScanAt: 7_000, runAt: 1_010 }, 'the rescan lease is renewed, the flow schedule untouched')
    t.same(await store.claimRescans('w2', 1, 5_000, 6_999), [])
    const change = { status: 'clean', verdict: verdict('clean', 9), scannedAt: 2_500, scannedVersion: 'v2', nextScanAt: 100_000, lastError: null, resetAttempts: true } as const
    t.ok(await store.update(c!, change, 2_500))
    t.match(await store.getUpload(u.id), { status: 'clean', nextScanAt: 100_000, attempts: 0, scannedAt: 2_500, verdict: { signatureVersion: 9 }, updatedAt: 2_500 })
    t.notOk(await store.renewLease(c!, 5_000, 2_600), 'the lease was given back')
    t.notOk(await store.update(c!, change, 2_600))
    t.same(await store.claimRescans('w2', 1, 5_000, 99_999), [], 'not due before its next scan')
    t.equal((await store.claimRescans('w2', 1, 5_000, 100_000))[0]?.upload.id, u.id)
  })

  t.test('a rescan lease given back is due again at once, uncounted', async (t) => {
    const store = await setup(t)
    const u = await stored(store, 'unscannable', { createdAt: 10, nextScanAt: 500 })
    const [c] = await store.claimRescans('w1', 1, 60_000, 1_000)
    t.ok(await store.giveBack(c!, 1_500))
    t.match(await store.getUpload(u.id), { status: 'unscannable', nextScanAt: 1_500, attempts: 0, runAt: 1_010 })
    t.notOk(await store.giveBack(c!, 1_600), 'released once')
    t.notOk(await store.update(c!, { status: 'unscannable', nextScanAt: null }, 1_600), 'the old holder cannot write')
    const [again] = await store.claimRescans('w2', 1, 60_000, 1_500)
    t.equal(again?.upload.id, u.id)
    t.equal(again?.upload.attempts, 1)
  })

  t.test('a rescan that finds something moves on to requarantining under the same lease, claimable by claim()', async (t) => {
    const store = await setup(t)
    const u = await stored(store, 'clean', { createdAt: 10, nextScanAt: 500 })
    const [c] = await store.claimRescans('w1', 1, 5_000, 1_000)
    const found = { status: 'requarantining', verdict: verdict('infected', 12), scannedAt: 1_100, runAt: 6_100, resetAttempts: true } as const
    t.ok(await store.update(c!, found, 1_100))
    t.same(await store.queueStats(), { depth: 1, oldestCreatedAt: 10 }, 'requarantining is work of the flow')
    // The worker renews the claim it started with (kind rescan): the lease is where the status says.
    t.ok(await store.renewLease(c!, 5_000, 2_000))
    t.match(await store.getUpload(u.id), { status: 'requarantining', runAt: 7_000, nextScanAt: 6_000 })
    t.same(await store.claim('w2', 10, 5_000, 6_999), [], 'still leased')
    t.same(await store.claimRescans('w2', 10, 5_000, 1e9), [], 'not a rescan any more')
    const [taken] = await store.claim('w2', 10, 5_000, 7_001)
    t.match(taken, { kind: 'scan', upload: { id: u.id, status: 'requarantining', attempts: 1 } })
    t.notOk(await store.update(c!, { status: 'infected' }, 7_100), 'the first holder is fenced off')
    const moved = { status: 'infected', location: 'quarantine', nextScanAt: null, lastError: null, resetAttempts: true, rescanOutcome: 'infected' } as const
    t.ok(await store.update(taken!, moved, 7_200))
    t.match(await store.getUpload(u.id), { status: 'infected', location: 'quarantine', nextScanAt: null, verdict: { result: 'infected' } })
    t.notOk(await store.giveBack(taken!, 7_300), 'a finished job has no lease to give back')
    t.same(await store.queueStats(), { depth: 0, oldestCreatedAt: null })
  })
}
