import type { Test } from 'tap'
import type { NewUpload } from '../../src/ports/upload-record.ts'
import { event, rescanMeta, setups, stored, upload, verdict, type MakeStore } from './harness.ts'

/** Scan history, the audit trail and retention. */
export function historyContract(t: Test, makeStore: MakeStore): void {
  const { setup } = setups(makeStore)

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
}
