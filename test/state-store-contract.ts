import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { StoredStatus } from '../src/domain/upload-state.ts'
import type { Area } from '../src/ports/object-store.ts'
import type { NewEvent } from '../src/ports/event-outbox.ts'
import type { RescanSelection } from '../src/ports/rescan-store.ts'
import type { StateStore } from '../src/ports/state-store.ts'
import type { NewUpload, Verdict } from '../src/ports/upload-record.ts'

/** A store on a fresh database, as each adapter's test file opens it. */
export interface StoreUnderTest {
  store: StateStore
  cleanup: () => Promise<void>
  /**
   * Another connection to the same database, as another replica holds: its statements must run
   * at the same time as `store`'s (for SQLite, whose calls are synchronous, from another thread).
   */
  openAnother: () => Promise<{ store: StateStore; close: () => Promise<void> }>
}

/** One suite every state store adapter must pass (run by test/state-store-*.test.ts). */
export function stateStoreContract(t: Test, makeStore: (options?: { batchSize?: number }) => Promise<StoreUnderTest>): void {
  const upload = (over: Partial<NewUpload> = {}): NewUpload => {
    const id = randomBytes(16).toString('hex')
    return { id, objectKey: `k/${id}`, size: 10, sha256: 'a'.repeat(64), filename: 'a.pdf', contentType: 'application/pdf', createdAt: 1_000, ...over }
  }
  const setupWithOthers = async (t: Test, others: number, options?: { batchSize?: number }): Promise<{ store: StateStore; others: StateStore[] }> => {
    const { store, cleanup, openAnother } = await makeStore(options)
    const opened: Awaited<ReturnType<typeof openAnother>>[] = []
    // The other connections close first: cleanup may remove the database.
    t.teardown(async () => {
      await Promise.all(opened.map((o) => o.close()))
      await cleanup()
    })
    await store.migrate()
    await store.migrate() // migrations are idempotent
    await Promise.all(Array.from({ length: others }, async () => opened.push(await openAnother())))
    return { store, others: opened.map((o) => o.store) }
  }
  const setup = async (t: Test, options?: { batchSize?: number }): Promise<StateStore> => (await setupWithOthers(t, 0, options)).store

  t.test('insert and read back an upload as pending', async (t) => {
    const store = await setup(t)
    const u = upload({ filename: null })
    await store.insertUpload(u)
    const got = await store.getUpload(u.id)
    t.match(got, { ...u, status: 'pending', attempts: 0, verdict: null, scannedAt: null, runAt: u.createdAt })
    t.match(got, { location: 'quarantine', nextScanAt: null, released: null })
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

  // --- Rescans, adoption, releases, audit and the outbox ---

  const verdict = (result: Verdict['result'], signatureVersion: number | null = null): Verdict => ({
    result,
    signature: result === 'infected' ? 'Eicar' : null,
    reason: result === 'unscannable' ? 'encrypted' : null,
    engine: 'ClamAV',
    signatureVersion
  })

  /**
   * An upload brought to a stored status through the port: inserted, claimed and updated. Call it
   * while no other upload is due at `createdAt` (it claims the oldest due one).
   */
  const stored = async (
    store: StateStore,
    status: StoredStatus,
    over: Partial<NewUpload> & { location?: Area; nextScanAt?: number | null; signatureVersion?: number | null; scannedAt?: number } = {}
  ): Promise<NewUpload> => {
    const { location, nextScanAt = null, signatureVersion = null, scannedAt, ...fields } = over
    const u = upload(fields)
    await store.insertUpload(u)
    const [c] = await store.claim('setup', 1, 1_000, u.createdAt)
    if (c?.upload.id !== u.id) throw new Error('setup: another upload was due')
    const result = status === 'infected' || status === 'unscannable' ? status : 'clean'
    const where = location ?? (status === 'clean' ? 'production' : 'quarantine')
    const change = { status, verdict: verdict(result, signatureVersion), scannedAt: scannedAt ?? u.createdAt, location: where, nextScanAt, resetAttempts: true }
    if (!(await store.update(c, change, u.createdAt))) throw new Error('setup: update refused')
    return u
  }

  const event = (over: Partial<NewEvent> = {}): NewEvent => ({
    id: randomBytes(8).toString('hex'),
    type: 'upload.infected',
    data: { uploadId: 'u1', verdict: { result: 'infected', signature: 'Eicar' }, note: 'quotes " and \\ and ünïcode' },
    createdAt: 2_000,
    ...over
  })

  const rescanMeta = (createdAt: number, scope: Record<string, unknown> = { all: true }) => ({ id: randomBytes(16).toString('hex'), scope, createdBy: 'key-1', createdAt })

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

  t.test('outbox events are written only with the change they report, and delivered under a fenced lease', async (t) => {
    const store = await setup(t)
    const u = upload()
    await store.insertUpload(u)
    const [c] = await store.claim('w1', 1, 60_000, 1_000)
    const [e1, e2, lost] = [event({ type: 'upload.infected' }), event({ type: 'object.requarantined', data: { n: 2 } }), event()]
    t.ok(await store.update(c!, { status: 'infected', verdict: verdict('infected'), events: [e1!, e2!] }, 2_000))
    t.notOk(await store.update(c!, { status: 'infected', events: [lost!] }, 2_100), 'a fenced-off update...')
    t.same(await store.claimEvents('d1', 10, 30_000, 1_999), [], 'not due before it was created')
    const claimed = await store.claimEvents('d1', 10, 30_000, 2_000)
    t.match(claimed, [{ ...e1, attempts: 1 }, { ...e2, attempts: 1 }], 'oldest first, data as written')
    t.same(claimed[0]?.data, e1!.data)
    t.same(await store.claimEvents('d2', 10, 30_000, 2_000), [], 'leased events are not handed out twice')
    const [d1, d2] = claimed
    await store.eventDelivered(d1!, 2_100)
    await store.eventFailed(d2!, 'HTTP 503', 5_000)
    await store.eventFailed(d2!, 'late', 0) // fenced: the failure already gave the lease back
    t.same(await store.claimEvents('d2', 10, 30_000, 4_999), [], 'a failed event waits for its retry time; a delivered one never comes back')
    const [retry] = await store.claimEvents('d2', 10, 30_000, 5_000)
    t.match(retry, { id: e2!.id, attempts: 2 })
    await store.eventDelivered(d2!, 5_100) // the old claim cannot mark it delivered
    await store.eventFailed(d2!, 'stale', 0)
    t.same(await store.claimEvents('d3', 10, 30_000, 34_999), [], 'still leased to d2')
    const [expired] = await store.claimEvents('d3', 10, 30_000, 35_000)
    t.match(expired, { id: e2!.id, attempts: 3 }, 'an expired delivery lease is claimed again')
    await store.eventDelivered(retry!, 35_100) // d2 lost it to d3
    await store.eventDelivered(expired!, 35_200)
    t.same(await store.claimEvents('d4', 10, 30_000, 1e12), [], '...writes no event, and delivered events are done')
  })

  t.test('a rescan outcome is counted in every unfinished rescan that covers the upload', async (t) => {
    const store = await setup(t)
    const x = await stored(store, 'clean', { createdAt: 10 })
    const y = await stored(store, 'infected', { createdAt: 20 })
    const r1 = await store.createRescan(rescanMeta(1_000), { kind: 'all' })
    const r2 = await store.createRescan(rescanMeta(1_001, { ids: [x.id] }), { kind: 'ids', ids: [x.id] })
    t.match(r1, { state: 'running', total: 2, done: 0, lastDoneAt: null, createdBy: 'key-1', scope: { all: true }, cancelledAt: null })
    t.match(r2, { total: 1, done: 0, scope: { ids: [x.id] } })
    const claims = await store.claimRescans('w', 10, 60_000, 1_001)
    const cx = claims.find((c) => c.upload.id === x.id)!
    const cy = claims.find((c) => c.upload.id === y.id)!
    t.ok(await store.update(cx, { status: 'clean', nextScanAt: 90_000, rescanOutcome: 'clean' }, 2_000))
    t.match(await store.getRescan(r1.id), { total: 2, done: 1, clean: 1, infected: 0, lastDoneAt: null })
    t.match(await store.getRescan(r2.id), { total: 1, done: 1, clean: 1, lastDoneAt: 2_000 })
    t.notOk(await store.update(cx, { status: 'clean', rescanOutcome: 'failed' }, 2_100), 'a fenced-off update counts nothing')
    t.ok(await store.update(cy, { status: 'infected', nextScanAt: null, rescanOutcome: 'unscannable' }, 3_000))
    t.match(await store.getRescan(r1.id), { total: 2, done: 2, clean: 1, unscannable: 1, infected: 0, failed: 0, lastDoneAt: 3_000 })
    const [later] = await store.claimRescans('w', 1, 60_000, 90_000)
    t.ok(await store.update(later!, { status: 'clean', rescanOutcome: 'failed' }, 91_000))
    t.match(await store.getRescan(r1.id), { done: 2, clean: 1, failed: 0, lastDoneAt: 3_000 }, 'a finished upload is counted once')
    t.equal(await store.getRescan('0'.repeat(32)), null)
  })

  t.test('createRescan covers the selected stored uploads and makes them due now, leased ones left to finish', async (t) => {
    type Case = { name: string; selection: RescanSelection; covers: string[] }
    const cases: Case[] = [
      { name: 'all', selection: { kind: 'all' }, covers: ['a', 'b', 'c', 'd', 'e', 'g', 'h'] },
      { name: 'prefix with _', selection: { kind: 'prefix', prefix: 'pre_fix/' }, covers: ['a'] },
      { name: 'prefix with %', selection: { kind: 'prefix', prefix: 'pre%fix/' }, covers: ['b'] },
      { name: 'prefix with glob characters', selection: { kind: 'prefix', prefix: 'st*r[1]?/' }, covers: ['e'] },
      { name: 'prefix with a backslash', selection: { kind: 'prefix', prefix: 'back\\' }, covers: ['h'] },
      { name: 'empty prefix', selection: { kind: 'prefix', prefix: '' }, covers: ['a', 'b', 'c', 'd', 'e', 'g', 'h'] },
      { name: 'uploaded before', selection: { kind: 'uploaded', before: 300, after: null }, covers: ['a', 'b'] },
      { name: 'uploaded after (inclusive)', selection: { kind: 'uploaded', before: null, after: 400 }, covers: ['d', 'e', 'g', 'h'] },
      { name: 'uploaded between', selection: { kind: 'uploaded', before: 400, after: 200 }, covers: ['b', 'c'] },
      { name: 'signature version below, unknown included', selection: { kind: 'signatureVersionBelow', version: 8 }, covers: ['a', 'b', 'c'] },
      { name: 'ids, stored ones only', selection: { kind: 'ids', ids: ['a', 'f', 'p', 'unknown', 'g'] }, covers: ['a', 'g'] },
      { name: 'no ids', selection: { kind: 'ids', ids: [] }, covers: [] }
    ]
    for (const { name, selection, covers } of cases) {
      t.test(name, async (t) => {
        const store = await setup(t)
        const ids: Record<string, string> = {}
        const make = async (name: string, status: StoredStatus, over: Parameters<typeof stored>[2]) => (ids[name] = (await stored(store, status, over)).id)
        await make('a', 'clean', { objectKey: 'pre_fix/a', createdAt: 100, signatureVersion: 5 })
        await make('b', 'infected', { objectKey: 'pre%fix/b', createdAt: 200, signatureVersion: 7 })
        await make('c', 'unscannable', { objectKey: 'preXfix/c', createdAt: 300 })
        await make('d', 'clean', { objectKey: 'Pre_fix/d', createdAt: 400, signatureVersion: 9 })
        await make('e', 'clean', { objectKey: 'st*r[1]?/e', createdAt: 500, signatureVersion: 9 })
        await make('f', 'failed', { objectKey: 'pre_fix/f', createdAt: 150 })
        // g is under a rescan lease when the rescan starts; h was due before it.
        await make('g', 'clean', { objectKey: 'stuffr1z/g', createdAt: 600, signatureVersion: 9, nextScanAt: 650 })
        await make('h', 'clean', { objectKey: 'back\\slash/h', createdAt: 700, signatureVersion: 9, nextScanAt: 800 })
        t.equal((await store.claimRescans('w', 10, 1e6, 700))[0]?.upload.id, ids.g)
        const p = upload({ objectKey: 'pre_fix/p', createdAt: 10_000 })
        await store.insertUpload(p) // pending: not stored yet
        ids.p = p.id
        const named = selection.kind === 'ids' ? { ...selection, ids: selection.ids.map((n) => ids[n] ?? n) } : selection
        const rescan = await store.createRescan(rescanMeta(5_000), named)
        t.equal(rescan.total, covers.length, `covers ${covers.join(', ') || 'nothing'}`)
        const due: string[] = []
        for (const [n, id] of Object.entries(ids)) if ((await store.getUpload(id))?.nextScanAt === 5_000) due.push(n)
        t.same(due.sort(), covers.filter((n) => n !== 'g' && n !== 'h'), 'made due now')
        t.equal((await store.getUpload(ids.g!))?.nextScanAt, 1_000_700, 'a leased one finishes its scan, and counts')
        t.equal((await store.getUpload(ids.h!))?.nextScanAt, 800, 'one due earlier keeps its time')
      })
    }
    t.test('more than 10,000 ids are refused before anything is written', async (t) => {
      const store = await setup(t)
      const ids = Array.from({ length: 10_001 }, (_, i) => `id${i}`)
      await t.rejects(store.createRescan(rescanMeta(5_000), { kind: 'ids', ids }), RangeError)
      t.same(await store.listRescans(10), [])
      t.equal((await store.createRescan(rescanMeta(5_000), { kind: 'ids', ids: ids.slice(1) })).total, 0, '10,000 are fine')
    })
  })

  t.test('rescans are listed newest first', async (t) => {
    const store = await setup(t)
    const made = []
    for (const at of [100, 300, 200, 300]) made.push(await store.createRescan(rescanMeta(at), { kind: 'all' }))
    const [m100, m300a, m200, m300b] = made
    const tied = [m300a!, m300b!].sort((x, y) => (x.id < y.id ? 1 : -1)).map((r) => r.id)
    t.same((await store.listRescans(10)).map((r) => r.id), [...tied, m200!.id, m100!.id])
    t.same((await store.listRescans(2)).map((r) => r.id), tied)
    t.match(await store.listRescans(1), [{ state: 'running', total: 0, done: 0, lastDoneAt: null }])
  })

  t.test('cancelRescan stops a rescan: clean uploads go back to their schedule, others to none', async (t) => {
    const store = await setup(t)
    const interval = 86_400_000
    const clean = await stored(store, 'clean', { createdAt: 10, scannedAt: 1_000 })
    const infected = await stored(store, 'infected', { createdAt: 20 })
    const leased = await stored(store, 'clean', { createdAt: 30, nextScanAt: 40 })
    const shared = await stored(store, 'clean', { createdAt: 50 })
    const released = await stored(store, 'infected', { createdAt: 60 })
    const done = await stored(store, 'unscannable', { createdAt: 70, nextScanAt: 80 })
    const leases = await store.claimRescans('w', 10, 60_000, 100)
    const leaseOf = leases.find((c) => c.upload.id === leased.id)
    const doneClaim = leases.find((c) => c.upload.id === done.id)
    t.ok(await store.requestRelease(released.id, { by: 'key-1', reason: 'false positive' }, 200))
    const [promoting] = await store.claim('w', 1, 60_000, 200)
    t.ok(await store.update(promoting!, { status: 'clean', location: 'production', nextScanAt: null }, 300))

    const r1 = await store.createRescan(rescanMeta(5_000), { kind: 'all' })
    const r2 = await store.createRescan(rescanMeta(5_001, { ids: [shared.id] }), { kind: 'ids', ids: [shared.id] })
    t.equal(r1.total, 6)
    t.ok(await store.update(doneClaim!, { status: 'unscannable', nextScanAt: null, rescanOutcome: 'unscannable' }, 5_500))

    t.ok(await store.cancelRescan(r1.id, 6_000, interval))
    t.equal((await store.getUpload(clean.id))?.nextScanAt, 1_000 + interval, 'clean: its scan time + the interval')
    t.equal((await store.getUpload(infected.id))?.nextScanAt, null, 'infected: unscheduled')
    t.equal((await store.getUpload(released.id))?.nextScanAt, 60 + interval, 'released: back to its schedule too (it stays in rolling rescans)')
    t.equal((await store.getUpload(leased.id))?.nextScanAt, 60_100, 'a leased one is left to its worker')
    t.equal((await store.getUpload(shared.id))?.nextScanAt, 5_000, 'one another rescan waits for stays due')
    t.match(await store.getRescan(r1.id), { state: 'cancelled', cancelledAt: 6_000, total: 6, done: 1, unscannable: 1, lastDoneAt: 5_500 })
    t.notOk(await store.cancelRescan(r1.id, 6_100, interval), 'cancelled once')
    t.notOk(await store.cancelRescan('0'.repeat(32), 6_100, interval))
    t.ok(await store.update(leaseOf!, { status: 'clean', nextScanAt: 70_000, rescanOutcome: 'clean' }, 7_000))
    t.match(await store.getRescan(r1.id), { done: 1, clean: 0 }, 'a cancelled rescan counts no more')
    t.match(await store.getRescan(r2.id), { state: 'running', total: 1, done: 0 })
  })

  t.test('adoption: one lister at a time registers new keys, page by page, exactly once', async (t) => {
    const store = await setup(t)
    const known = upload({ objectKey: 'prod/known.bin' })
    await store.insertUpload(known)
    const older = await store.createRescan(rescanMeta(900, { adopt: {} }), { kind: 'adopt', bucket: 'prod-bucket', prefix: 'prod/' })
    const newer = await store.createRescan(rescanMeta(950, { adopt: {} }), { kind: 'adopt', bucket: 'prod-bucket', prefix: 'other/' })
    t.match(older, { state: 'listing', total: 0, lastDoneAt: null })

    const claim = await store.claimAdoption('a1', 10_000, 1_000)
    t.match(claim, { rescanId: older.id, bucket: 'prod-bucket', prefix: 'prod/', continuationToken: null })
    t.equal((await store.claimAdoption('a2', 10_000, 1_000))?.rescanId, newer.id, 'a leased listing is skipped')
    t.equal(await store.claimAdoption('a3', 10_000, 1_000), null)

    const obj = (key: string, size = 5) => ({ id: randomBytes(16).toString('hex'), key, size, contentType: 'application/octet-stream' })
    const page1 = [obj('prod/known.bin'), obj('prod/dir/x.pdf', 42), obj('prod/dir/')]
    t.equal(await store.adoptPage(claim!, page1, 'token-1', 10_000, 3_000), 2, 'a known key is skipped')
    t.equal(await store.getUpload(page1[0]!.id), null)
    t.match(await store.getUpload(known.id), { location: 'quarantine', status: 'pending' })
    t.match(await store.getUpload(page1[1]!.id), {
      objectKey: 'prod/dir/x.pdf', size: 42, sha256: '', filename: 'x.pdf', contentType: 'application/octet-stream',
      status: 'pending', location: 'production', createdAt: 3_000, runAt: 3_000, nextScanAt: null, released: null
    })
    t.equal((await store.getUpload(page1[2]!.id))?.filename, null, 'no filename in a key ending with a slash')
    t.match(await store.getRescan(older.id), { state: 'listing', total: 2, done: 0, lastDoneAt: null })

    const rerun = page1.map((o) => obj(o.key, o.size))
    t.equal(await store.adoptPage(claim!, rerun, 'token-1', 10_000, 4_000), 0, 'a page run again registers nothing twice')
    t.equal(await store.getUpload(rerun[1]!.id), null)
    t.equal((await store.claimAdoption('a3', 10_000, 13_999))?.rescanId, newer.id, 'each page renews the lease: only the other listing (lease expired) is free')

    const taken = await store.claimAdoption('a2', 10_000, 14_000)
    t.match(taken, { rescanId: older.id, continuationToken: 'token-1' }, 'an expired listing resumes where it stopped')
    const late = obj('prod/late.txt')
    t.equal(await store.adoptPage(claim!, [late], null, 10_000, 14_100), null, 'the lost lease writes nothing')
    t.equal(await store.getUpload(late.id), null)
    t.match(await store.getRescan(older.id), { state: 'listing', total: 2 })

    const last = [obj('prod/z.txt'), obj('prod/dir/x.pdf')]
    t.equal(await store.adoptPage(taken!, last, null, 10_000, 15_000), 1)
    t.match(await store.getRescan(older.id), { state: 'running', total: 3, done: 0 }, 'listing done')
    t.equal(await store.adoptPage(taken!, [obj('prod/more')], null, 10_000, 15_100), null, 'a finished listing takes no more pages')
    t.equal((await store.claimAdoption('a4', 10_000, 1e9))?.rescanId, newer.id, 'a listing that is done is never claimed again')

    // The adopted objects are claimed from their own queue, never with new uploads; their results count for the adoption.
    const uploads = await store.claim('w', 10, 60_000, 20_000)
    t.same(uploads.map((c) => c.upload.id), [known.id], 'the uploads queue holds no adopted object')
    const scans = [...uploads, ...(await store.claim('w', 10, 60_000, 20_000, 'adopted'))]
    t.same(scans.map((c) => c.upload.id).sort(), [known.id, page1[1]!.id, page1[2]!.id, last[0]!.id].sort())
    const first = scans.find((c) => c.upload.id === page1[1]!.id)!
    t.match(first, { kind: 'scan', upload: { status: 'scanning', location: 'production' } })
    const measured = { status: 'clean', verdict: verdict('clean', 4), scannedAt: 21_000, size: 43, sha256: 'b'.repeat(64), nextScanAt: 99_000, rescanOutcome: 'clean' } as const
    t.ok(await store.update(first, measured, 21_000))
    t.match(await store.getUpload(first.upload.id), { status: 'clean', size: 43, sha256: 'b'.repeat(64), location: 'production', nextScanAt: 99_000 })
    t.match(await store.getRescan(older.id), { total: 3, done: 1, clean: 1, lastDoneAt: null })
  })

  t.test('a cancelled adoption is not listed any more', async (t) => {
    const store = await setup(t)
    const r = await store.createRescan(rescanMeta(900, { adopt: {} }), { kind: 'adopt', bucket: 'b', prefix: '' })
    const claim = await store.claimAdoption('a1', 10_000, 1_000)
    t.ok(await store.cancelRescan(r.id, 1_500, 1_000))
    t.equal(await store.adoptPage(claim!, [{ id: 'x', key: 'k', size: 1, contentType: 'text/plain' }], 'next', 10_000, 1_600), null)
    t.equal(await store.claimAdoption('a2', 10_000, 1e9), null)
    t.match(await store.getRescan(r.id), { state: 'cancelled', cancelledAt: 1_500, total: 0 })
  })

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

  t.test('a rescan selects its uploads a batch at a time, and a cancelled one unwinds a batch at a time', async (t) => {
    const store = await setup(t, { batchSize: 3 })
    const interval = 86_400_000
    const uploads: NewUpload[] = []
    for (let i = 0; i < 8; i++) uploads.push(await stored(store, 'clean', { createdAt: 10 + i, scannedAt: 1_000 }))
    const r = await store.createRescan(rescanMeta(5_000), { kind: 'all' })
    t.match(r, { state: 'listing', total: 3, lastDoneAt: null }, 'the first batch is covered at once, the rescan lists on')
    t.ok(await store.advanceRescans(5_100, interval))
    t.match(await store.getRescan(r.id), { state: 'listing', total: 6 })
    t.ok(await store.advanceRescans(5_200, interval))
    t.match(await store.getRescan(r.id), { state: 'running', total: 8, done: 0 }, 'the last batch ends the listing')
    t.notOk(await store.advanceRescans(5_300, interval), 'nothing left to do')
    for (const u of uploads) t.ok((await store.getUpload(u.id))!.nextScanAt! <= 5_200, 'each covered upload is due')

    t.ok(await store.cancelRescan(r.id, 6_000, interval))
    const scheduled = async (): Promise<number> => (await Promise.all(uploads.map((u) => store.getUpload(u.id)))).filter((u) => u?.nextScanAt === 1_000 + interval).length
    t.equal(await scheduled(), 3, 'the first batch goes back to its schedule at once')
    const [meanwhile] = await store.claimRescans('w', 1, 60_000, 6_100)
    t.ok(meanwhile, 'one not unwound yet is still due')
    t.ok(await store.update(meanwhile!, { status: 'clean', nextScanAt: 1_000 + interval, rescanOutcome: 'clean' }, 6_200))
    t.match(await store.getRescan(r.id), { state: 'cancelled', total: 8, done: 0, clean: 0 }, 'a cancelled rescan counts no more, unwound or not')
    t.ok(await store.advanceRescans(6_300, interval))
    t.ok(await store.advanceRescans(6_400, interval))
    t.notOk(await store.advanceRescans(6_500, interval))
    t.equal(await scheduled(), 8, 'every upload is back on its schedule')
    t.same(await store.claimRescans('w', 10, 60_000, 7_000), [])
    t.match(await store.getRescan(r.id), { state: 'cancelled', total: 8, done: 0 })
  })

  t.test('prune deletes old history a batch at a time, never an undelivered event nor what an unfinished rescan needs', async (t) => {
    const store = await setup(t, { batchSize: 2 })
    // Events: three delivered long ago, one delivered lately, one never delivered (created long ago).
    const owner = upload({ createdAt: 10 })
    await store.insertUpload(owner)
    const [c] = await store.claim('w', 1, 60_000, 10)
    const events = [event({ createdAt: 20 }), event({ createdAt: 20 }), event({ createdAt: 20 }), event({ createdAt: 20 }), event({ createdAt: 20 })]
    t.ok(await store.update(c!, { status: 'infected', verdict: verdict('infected'), events }, 20))
    const claimed = await store.claimEvents('d', 10, 60_000, 30)
    t.equal(claimed.length, 5)
    for (const e of claimed.slice(0, 3)) await store.eventDelivered(e, 1_000)
    await store.eventDelivered(claimed[3]!, 9_000)
    await store.eventFailed(claimed[4]!, 'HTTP 503', 100_000)
    // Scans: three old, one recent.
    const scan = { uploadId: owner.id, durationMs: 1, endpoint: null, engine: null, signatureVersion: null, outcome: 'clean', signature: null, detail: null, bytes: 1 } as const
    for (const startedAt of [500, 600, 700, 9_500]) await store.recordScan({ ...scan, startedAt })
    // Rescans: finished, unfinished, cancelled (all created long ago), and one recent.
    const [a, b, d, e] = [await stored(store, 'clean', { createdAt: 40 }), await stored(store, 'clean', { createdAt: 50 }), await stored(store, 'clean', { createdAt: 60 }), await stored(store, 'clean', { createdAt: 70 })]
    const only = (u: NewUpload, at: number) => store.createRescan(rescanMeta(at, { ids: [u.id] }), { kind: 'ids', ids: [u.id] })
    const [finished, unfinished, cancelled, recent] = [await only(a, 1_000), await only(b, 1_000), await only(d, 1_000), await only(e, 9_000)]
    const rescanning = await store.claimRescans('w', 10, 60_000, 9_000)
    t.equal(rescanning.length, 4)
    for (const rc of rescanning) {
      if (rc.upload.id === a.id || rc.upload.id === e.id) t.ok(await store.update(rc, { status: 'clean', nextScanAt: null, rescanOutcome: 'clean' }, 9_100))
      else t.ok(await store.giveBack(rc, 9_100))
    }
    t.ok(await store.cancelRescan(cancelled.id, 1_500, 1_000))
    // Audit: two old entries, one recent.
    for (const at of [100, 200, 9_999]) await store.recordAudit({ at, actor: 'k', action: 'x', target: 't', detail: {} })

    const cutoffs = { historyBefore: 5_000, auditBefore: null }
    const rounds: number[] = []
    for (let i = 0; i < 10 && rounds.at(-1) !== 0; i++) rounds.push(await store.prune(cutoffs))
    // Two events and two scans, an item; then the rest of them and that rescan; then the other rescan's item, then itself.
    t.same(rounds, [5, 3, 1, 1, 0], 'at most a batch of each kind per round')
    t.same((await store.listScans(owner.id)).map((x) => x.startedAt), [9_500], 'recent scans are kept')
    t.equal(await store.getRescan(finished.id), null, 'a finished rescan older than the cutoff is gone')
    t.equal(await store.getRescan(cancelled.id), null, 'so is a cancelled one')
    t.match(await store.getRescan(unfinished.id), { total: 1, done: 0 }, 'an unfinished one is kept, with its items')
    t.match(await store.getRescan(recent.id), { total: 1, done: 1 }, 'a recent one is kept')
    t.same((await store.claimEvents('d', 10, 60_000, 100_000)).map((x) => x.id), [events[4]!.id], 'the undelivered event is kept')
    t.equal((await store.listAudit(10)).length, 3, 'audit rows are kept unless configured')
    t.equal(await store.prune({ historyBefore: 5_000, auditBefore: 5_000 }), 2)
    t.same((await store.listAudit(10)).map((x) => x.at), [9_999])
    t.equal(await store.prune({ historyBefore: 5_000, auditBefore: 5_000 }), 0)
  })

  t.test('the audit trail is listed newest first, and pages back with before', async (t) => {
    const store = await setup(t)
    const entry = (at: number, action: string) => ({ at, actor: 'key-1', action, target: 't', detail: { action, nested: { n: at } } })
    for (const e of [entry(200, 'second'), entry(100, 'first'), entry(200, 'third'), entry(300, 'fourth')]) await store.recordAudit(e)
    t.same((await store.listAudit(10)).map((e) => e.action), ['fourth', 'third', 'second', 'first'], 'same time: the later entry first')
    t.same(await store.listAudit(1), [entry(300, 'fourth')])
    t.same((await store.listAudit(10, 200)).map((e) => e.action), ['first'], 'only entries before')
    t.same((await store.listAudit(2, 301)).map((e) => e.action), ['fourth', 'third'])
    t.same(await store.listAudit(10, 100), [])
  })

  t.test('upload intents: a commit needs its intent; an abandoned or swept intent fences the commit off', async (t) => {
    const store = await setup(t)
    const [a, b, c, d] = [upload({ createdAt: 100 }), upload({ createdAt: 200 }), upload({ createdAt: 300 }), upload({ createdAt: 5_000 })]
    for (const u of [a, b, c, d]) t.same(await store.beginUpload({ id: u.id, objectKey: u.objectKey, createdAt: u.createdAt }, null, u.createdAt), { kind: 'started' })
    t.equal(await store.getUpload(a.id), null, 'an intent is not an upload')
    t.same(await store.knownKeys([a.objectKey, 'k/none']), new Set([a.objectKey]), 'an intent names its key')
    await store.commitUpload(a)
    t.match(await store.getUpload(a.id), { status: 'pending' })
    await t.rejects(store.commitUpload(a), 'a second commit of the same upload fails')
    await store.abandonUpload(b.id, 1_000)
    await t.rejects(store.commitUpload(b), { name: 'UploadIntentLostError' }, 'an abandoned upload cannot be committed')
    // At 1_000 with a cutoff of 400: the abandoned one and the old one, not the committed nor the young one.
    const claimed = await store.claimIntents(1_000, 400, 61_000, 10)
    t.same(claimed.map((i) => i.id).sort(), [b.id, c.id].sort())
    t.same(await store.claimIntents(2_000, 400, 62_000, 10), [], 'claimed intents are hidden until their retry time')
    await t.rejects(store.commitUpload(c), { name: 'UploadIntentLostError' }, 'an intent claimed by the sweeper cannot be committed')
    t.same((await store.claimIntents(61_000, 400, 121_000, 10)).map((i) => i.id).sort(), [b.id, c.id].sort(), 'a sweep that did not finish is retried')
    await store.deleteIntent(b.id)
    await store.deleteIntent(c.id)
    t.same((await store.claimIntents(200_000, 400, 260_000, 1)).map((i) => i.objectKey), [], 'the young one stays until the cutoff passes it')
    t.same((await store.claimIntents(200_000, 6_000, 260_000, 1)).map((i) => i.objectKey), [d.objectKey])
    t.same(await store.knownKeys([a.objectKey, b.objectKey, d.objectKey]), new Set([a.objectKey, d.objectKey]), 'a record names its key too')
  })

  t.test('idempotency keys: a retry finds the committed upload or the one in flight; an abandoned or expired key is taken over', async (t) => {
    const store = await setup(t)
    const key = { scope: 'key-1', key: 'retry-1', ttlMs: 10_000 }
    const first = upload({ createdAt: 1_000 })
    const intent = (u: NewUpload) => ({ id: u.id, objectKey: u.objectKey, createdAt: u.createdAt })
    t.same(await store.beginUpload(intent(first), key, 1_000), { kind: 'started' })
    const retry = upload({ createdAt: 1_100 })
    t.same(await store.beginUpload(intent(retry), key, 1_100), { kind: 'inFlight', uploadId: first.id }, 'in flight')
    t.same(await store.knownKeys([retry.objectKey]), new Set(), 'nothing was written for the retry')
    t.same(await store.beginUpload(intent(retry), { ...key, scope: 'key-2' }, 1_100), { kind: 'started' }, 'another caller has its own keys')
    await store.commitUpload(first)
    t.match(await store.beginUpload(intent(upload()), key, 1_200), { kind: 'committed', upload: { id: first.id, size: first.size, sha256: first.sha256 } })
    t.same(await store.beginUpload(intent(upload()), key, 11_001), { kind: 'started' }, 'expired: a new upload')

    const other = { ...key, key: 'retry-2' }
    const failed = upload()
    t.same(await store.beginUpload(intent(failed), other, 1_000), { kind: 'started' })
    await store.abandonUpload(failed.id, 1_100)
    const again = upload()
    t.same(await store.beginUpload(intent(again), other, 1_200), { kind: 'started' }, 'the abandoned upload gives its key to the retry')
    await store.commitUpload(again)
    t.match(await store.beginUpload(intent(upload()), other, 1_300), { kind: 'committed', upload: { id: again.id } })
    // Retries racing for the same key: exactly one is started, the others see it in flight.
    const racing = Array.from({ length: 8 }, () => upload({ createdAt: 1_400 }))
    const raced = await Promise.all(racing.map((u) => store.beginUpload(intent(u), { ...key, key: 'race' }, 1_400)))
    const started = raced.filter((r) => r.kind === 'started')
    t.equal(started.length, 1, 'one retry of a race starts')
    const winner = racing[raced.findIndex((r) => r.kind === 'started')] as NewUpload
    t.same(raced.filter((r) => r.kind !== 'started'), Array(7).fill({ kind: 'inFlight', uploadId: winner.id }), 'the others see it in flight')
    t.same(await store.knownKeys(racing.map((u) => u.objectKey)), new Set([winner.objectKey]), 'only the winner has an intent')
    t.equal(await store.expireIdempotencyKeys(11_002, 1), 1, 'expired keys go in batches')
    t.equal(await store.expireIdempotencyKeys(11_002, 10), 3)
    t.equal(await store.expireIdempotencyKeys(11_002, 10), 0)
  })
}
