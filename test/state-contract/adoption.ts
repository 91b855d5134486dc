import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { rescanMeta, setups, upload, verdict, type MakeStore } from './harness.ts'

/** Adoption of a bucket's objects, one lister at a time. */
export function adoptionContract(t: Test, makeStore: MakeStore): void {
  const { setup } = setups(makeStore)

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
}
