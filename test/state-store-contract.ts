import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { NewUpload, StateStore } from '../src/ports/state-store.ts'

/** One suite every state store adapter must pass (run by test/state-store-*.test.ts). */
export function stateStoreContract(t: Test, makeStore: () => Promise<{ store: StateStore; cleanup: () => Promise<void> }>): void {
  const upload = (over: Partial<NewUpload> = {}): NewUpload => {
    const id = randomBytes(16).toString('hex')
    return { id, objectKey: `k/${id}`, size: 10, sha256: 'a'.repeat(64), filename: 'a.pdf', contentType: 'application/pdf', createdAt: 1_000, ...over }
  }
  const setup = async (t: Test): Promise<StateStore> => {
    const { store, cleanup } = await makeStore()
    t.teardown(cleanup)
    await store.migrate()
    await store.migrate() // migrations are idempotent
    return store
  }

  t.test('insert and read back an upload as pending', async (t) => {
    const store = await setup(t)
    const u = upload({ filename: null })
    await store.insertUpload(u)
    const got = await store.getUpload(u.id)
    t.match(got, { ...u, status: 'pending', attempts: 0, verdict: null, scannedAt: null, runAt: u.createdAt })
    t.equal(await store.getUpload('0'.repeat(32)), null)
  })

  t.test('claim leases due work once, oldest first, up to the limit', async (t) => {
    const store = await setup(t)
    const a = upload({ createdAt: 100 })
    const b = upload({ createdAt: 200 })
    const later = upload({ createdAt: 10_000 })
    for (const u of [b, a, later]) await store.insertUpload(u)
    const first = await store.claim('w1', 1, 5_000, 1_000)
    t.same(first.map((c) => c.upload.id), [a.id])
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
    t.ok(await store.release(c!, 2_500))
    t.match(await store.getUpload(u.id), { status: 'scanning', attempts: 0, runAt: 2_500 })
    t.notOk(await store.release(c!, 2_600), 'released once')
    t.notOk(await store.update(c!, { status: 'infected' }, 2_600), 'the old holder cannot write')
    const [again] = await store.claim('w2', 1, 60_000, 2_500)
    t.equal(again?.upload.id, u.id, 'another worker takes it without waiting for the lease')
    t.equal(again?.upload.attempts, 1)
    t.ok(await store.update(again!, { status: 'infected' }, 2_700))
    t.notOk(await store.release(again!, 2_800), 'a finished job has no lease to give back')
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

  t.test('concurrent claims never hand the same job out twice', async (t) => {
    const store = await setup(t)
    const ids = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const u = upload({ createdAt: i })
      ids.add(u.id)
      await store.insertUpload(u)
    }
    const batches = await Promise.all(Array.from({ length: 20 }, (_, i) => store.claim(`w${i}`, 15, 60_000, 1_000)))
    const claimed = batches.flat().map((c) => c.upload.id)
    t.equal(claimed.length, 200)
    t.equal(new Set(claimed).size, 200)
  })

  t.test('scan audit rows are kept in order', async (t) => {
    const store = await setup(t)
    const u = upload()
    await store.insertUpload(u)
    const row = { uploadId: u.id, startedAt: 1, durationMs: 2, endpoint: 'tcp://x:1', engine: 'ClamAV 1.4.6', signatureVersion: null, signature: null, bytes: 10 }
    await store.recordScan({ ...row, outcome: 'error', detail: 'clamd down' })
    await store.recordScan({ ...row, outcome: 'infected', signature: 'Eicar', detail: null })
    const scans = await store.listScans(u.id)
    t.same(scans.map((s) => s.outcome), ['error', 'infected'])
    t.equal(scans[1]?.signature, 'Eicar')
    await store.ping()
  })
}
