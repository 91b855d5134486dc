import type { Test } from 'tap'
import type { NewUpload } from '../../src/ports/upload-record.ts'
import { event, setups, upload, type MakeStore } from './harness.ts'

/** Upload lookup, intake (intents and idempotency keys) and the orphan ledger. */
export function uploadIntakeContract(t: Test, makeStore: MakeStore): void {
  const { setup } = setups(makeStore)

  t.test('insert and read back an upload as pending', async (t) => {
    const store = await setup(t)
    const u = upload({ filename: null })
    await store.insertUpload(u)
    const got = await store.getUpload(u.id)
    t.match(got, { ...u, status: 'pending', attempts: 0, verdict: null, scannedAt: null, runAt: u.createdAt })
    t.match(got, { location: 'quarantine', nextScanAt: null, released: null })
    t.equal(await store.getUpload('0'.repeat(32)), null)
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

  t.test('an intent with sweepAfter (a resumable upload) is not due before it, however old; abandoned, it is due at once', async (t) => {
    const store = await setup(t)
    const [live, terminated] = [upload({ createdAt: 100 }), upload({ createdAt: 100 })]
    for (const u of [live, terminated]) await store.beginUpload({ id: u.id, objectKey: u.objectKey, createdAt: 100, sweepAfter: 50_000 }, null, 100)
    await store.abandonUpload(terminated.id, 1_000)
    t.same((await store.claimIntents(10_000, 9_000, 70_000, 10)).map((i) => i.id), [terminated.id], 'past the cutoff, the live one waits for its expiry')
    t.same((await store.claimIntents(50_000, 9_000, 110_000, 10)).map((i) => i.id), [live.id], 'then it is swept')
  })

  t.test('a rejected upload: committed as rejected with its event, never claimed, fenced by its intent like a commit', async (t) => {
    const store = await setup(t)
    const [u, abandoned] = [upload({ createdAt: 1_000, contentType: 'text/html' }), upload({ createdAt: 1_000 })]
    for (const x of [u, abandoned]) await store.beginUpload({ id: x.id, objectKey: x.objectKey, createdAt: x.createdAt }, null, x.createdAt)
    const e = event({ type: 'upload.rejected', data: { uploadId: u.id }, createdAt: 1_000 })
    await store.commitRejectedUpload(u, 'text/html is not allowed', [e])
    t.match(await store.getUpload(u.id), {
      ...u,
      status: 'rejected',
      location: 'quarantine',
      verdict: { result: 'rejected', signature: null, reason: 'text/html is not allowed', engine: 'content-type', signatureVersion: null },
      scannedAt: null,
      nextScanAt: null
    })
    t.same(await store.claim('w1', 10, 60_000, 5_000), [], 'a rejected upload is not work')
    t.same(await store.claimRescans('w1', 10, 60_000, 1e12), [], 'nor a rescan')
    const claimed = await store.claimEvents('d1', 10, 30_000, 1_000)
    t.match(claimed, [{ id: e.id, type: 'upload.rejected', data: { uploadId: u.id } }], 'its event is in the outbox')
    await store.eventDelivered(claimed[0]!, 1_100)
    await t.rejects(store.commitRejectedUpload(u, 'again'), 'its intent is gone: a second commit fails')
    await store.abandonUpload(abandoned.id, 1_100)
    await t.rejects(store.commitRejectedUpload(abandoned, 'late', [event({ type: 'upload.rejected' })]), { name: 'UploadIntentLostError' })
    t.equal(await store.getUpload(abandoned.id), null)
    t.same(await store.claimEvents('d2', 10, 30_000, 1e12), [], 'nothing written for the abandoned one')
    t.same(await store.knownKeys([u.objectKey]), new Set([u.objectKey]), 'the record keeps its object from the sweeper')
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
