import type { Test } from 'tap'
import type { StateStore } from '../../src/ports/state-store.ts'
import type { NewUpload } from '../../src/ports/upload-record.ts'
import { setups, upload, type MakeStore } from './harness.ts'

/** Upload tokens in the store (migration 6): uses counted by jti with the intent, given back on abandon; the owner of an upload. */
export function tokenUsesContract(t: Test, makeStore: MakeStore): void {
  const { setup, setupWithOthers } = setups(makeStore)
  const token = (jti: string, maxUploads: number, expiresAt = 100_000) => ({ jti, maxUploads, expiresAt })
  const intent = (u: NewUpload, tok?: ReturnType<typeof token>) => ({ id: u.id, objectKey: u.objectKey, createdAt: u.createdAt, ...(tok ? { token: tok } : {}) })
  const begin = (store: StateStore, u: NewUpload, tok: ReturnType<typeof token>, key: { scope: string; key: string; ttlMs: number } | null = null) =>
    store.beginUpload(intent(u, tok), key, u.createdAt)

  t.test('a token creates at most max_uploads uploads; past it nothing is written, not even the idempotency key', async (t) => {
    const store = await setup(t)
    const [a, b, c] = [upload(), upload(), upload()]
    t.same(await begin(store, a, token('t1', 2)), { kind: 'started' })
    t.same(await begin(store, b, token('t1', 2)), { kind: 'started' })
    const key = { scope: 'token-t1', key: 'k1', ttlMs: 10_000 }
    await t.rejects(begin(store, c, token('t1', 2), key), { name: 'TokenExhaustedError' })
    t.same(await store.knownKeys([c.objectKey]), new Set(), 'no intent for the refused upload')
    t.same(await store.beginUpload(intent(c), key, 1_000), { kind: 'started' }, 'its idempotency key was not reserved')
    t.same(await begin(store, upload(), token('t2', 1)), { kind: 'started' }, 'another jti counts on its own')
  })

  t.test('an abandoned upload gives its use back, once; a committed or swept one does not', async (t) => {
    const store = await setup(t)
    const [a, b, c, d] = [upload(), upload(), upload(), upload({ createdAt: 100 })]
    t.same(await begin(store, a, token('t', 1)), { kind: 'started' })
    await store.abandonUpload(a.id, 2_000)
    await store.abandonUpload(a.id, 2_100)
    t.same(await begin(store, b, token('t', 1)), { kind: 'started' }, 'the use came back')
    await t.rejects(begin(store, c, token('t', 1)), { name: 'TokenExhaustedError' }, 'only once, however often it is abandoned')
    await store.commitUpload(b)
    await store.abandonUpload(b.id, 2_200)
    await t.rejects(begin(store, c, token('t', 1)), { name: 'TokenExhaustedError' }, 'abandoning a committed upload gives nothing back')
    t.same(await begin(store, d, token('s', 1)), { kind: 'started' })
    t.ok((await store.claimIntents(5_000, 1_000, 65_000, 10)).some((i) => i.id === d.id), 'the sweeper claims the old intent')
    await t.rejects(begin(store, upload(), token('s', 1)), { name: 'TokenExhaustedError' }, 'the sweeper gives nothing back')
  })

  t.test('an upload records its owner; uploads without one read back null', async (t) => {
    const store = await setup(t)
    const owner = { tokenId: 'jti-1', subject: 'user-42', meta: { orderId: 7, note: 'quotes " and ünïcode' } }
    const [a, b, c] = [upload({ owner }), upload({ owner: { tokenId: 'jti-2', subject: null, meta: null } }), upload()]
    for (const u of [a, b, c]) {
      await store.beginUpload(intent(u), null, u.createdAt)
      await store.commitUpload(u)
    }
    t.same((await store.getUpload(a.id))?.owner, owner)
    t.same((await store.getUpload(b.id))?.owner, { tokenId: 'jti-2', subject: null, meta: null })
    t.equal((await store.getUpload(c.id))?.owner, null)
    const inserted = upload({ owner })
    await store.insertUpload(inserted)
    t.same((await store.getUpload(inserted.id))?.owner, owner, 'insertUpload records it too')
  })

  t.test('concurrent uploads with one token, on several connections: exactly max_uploads start', async (t) => {
    const { store, others } = await setupWithOthers(t, 2)
    const stores = [store, ...others]
    for (const [jti, max, tries] of [['race-1', 1, 6], ['race-3', 3, 9]] as const) {
      const uploads = Array.from({ length: tries }, () => upload())
      const results = await Promise.allSettled(uploads.map((u, i) => begin(stores[i % stores.length] as StateStore, u, token(jti, max))))
      t.equal(results.filter((r) => r.status === 'fulfilled').length, max, `${jti}: ${max} started`)
      // Another SQLite connection runs in a worker thread, whose errors come back as plain Errors named in their message.
      const refusals = results.filter((r) => r.status === 'rejected').map((r) => (r.reason as Error).name + (r.reason as Error).message)
      t.equal(refusals.filter((r) => /TokenExhaustedError/.test(r)).length, tries - max, 'the others are refused as exhausted')
      t.equal((await store.knownKeys(uploads.map((u) => u.objectKey))).size, max, 'and only those have intents')
    }
  })

  t.test('retention prunes the use counts of expired tokens, a batch at a time', async (t) => {
    const store = await setup(t, { batchSize: 2 })
    for (const [jti, expiresAt] of [['e1', 1_000], ['e2', 2_000], ['e3', 3_000], ['live', 9_000]] as const) await begin(store, upload(), token(jti, 1, expiresAt))
    const cutoffs = { historyBefore: 0, auditBefore: null, tokenUsesBefore: 5_000 }
    t.equal(await store.prune(cutoffs), 2)
    t.equal(await store.prune(cutoffs), 1)
    t.equal(await store.prune(cutoffs), 0)
    await t.rejects(begin(store, upload(), token('live', 1, 9_000)), { name: 'TokenExhaustedError' }, 'a live token keeps its count')
    t.same(await begin(store, upload(), token('e1', 1, 1_000)), { kind: 'started' }, 'a pruned one starts again (verification refuses it long before)')
    t.equal(await store.prune({ historyBefore: 0, auditBefore: null }), 0, 'without tokenUsesBefore nothing of them goes')
  })
}
