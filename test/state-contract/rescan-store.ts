import type { Test } from 'tap'
import type { StoredStatus } from '../../src/domain/upload-state.ts'
import type { RescanSelection } from '../../src/ports/rescan-store.ts'
import type { NewUpload } from '../../src/ports/upload-record.ts'
import { rescanMeta, setups, stored, upload, type MakeStore } from './harness.ts'

/** Rescans: selection, counts, listing, cancellation, batches. */
export function rescanStoreContract(t: Test, makeStore: MakeStore): void {
  const { setup } = setups(makeStore)

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
}
