import type { Test } from 'tap'
import { event, setups, upload, verdict, type MakeStore } from './harness.ts'

/** The event outbox: events written with their change, delivered under a fenced lease. */
export function outboxContract(t: Test, makeStore: MakeStore): void {
  const { setup } = setups(makeStore)

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
}
