import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FencedWrites, LeaseClock, LeaseLostError } from '../src/services/lease-fence.ts'
import { FakeObjectStore } from './helpers/fake-object-store.ts'
import { FakeJobQueue, RecordingLog, uploadRecord } from './helpers/fake-ports.ts'

// A fenced write needs no renewal of its own right after the worker took or renewed the lease; once
// a third of the lease has gone by since (a paused worker), it renews, and stops if the lease is gone.

const leaseMs = 3_000

/** A clock the test moves by hand. */
class ManualClock extends LeaseClock {
  at = 1_000
  override now(): number {
    return this.at
  }
}

async function setup(leases: LeaseClock) {
  const journal: string[] = []
  const jobs = new FakeJobQueue(journal)
  const objects = new FakeObjectStore(journal)
  const record = uploadRecord({ id: 'up-1' })
  objects.store('quarantine', record.objectKey, 'bytes')
  jobs.add(record)
  const [claim] = await jobs.claim('w', 1, leaseMs, Date.now())
  if (!claim) throw new Error('nothing claimed')
  return { journal, jobs, objects, claim, writes: new FencedWrites(jobs, objects, leaseMs, leases) }
}

t.test('a claim this clock never saw: the first write renews, and that renewal counts for the next', async (t) => {
  const { journal, claim, writes } = await setup(new ManualClock())
  await writes.copy(claim, 'quarantine', 'production', claim.upload.objectKey, {})
  await writes.delete(claim, 'quarantine', claim.upload.objectKey)
  t.same(journal, ['renew held', 'copy quarantine production', 'delete quarantine'])
})

t.test('right after the claim: the writes go without a renewal, until a third of the lease has gone by', async (t) => {
  const clock = new ManualClock()
  const { journal, claim, writes } = await setup(clock)
  clock.held(claim, clock.at, leaseMs)
  clock.at += leaseMs / 3 - 1
  await writes.copy(claim, 'quarantine', 'production', claim.upload.objectKey, {})
  t.same(journal, ['copy quarantine production'], 'the claim holds the lease for two thirds more: no renewal')
  clock.at += 1
  await writes.setTags(claim, 'production', claim.upload.objectKey, { a: 'b' })
  t.same(journal.slice(1), ['renew held', 'tag production'], 'a third of the lease later: renewed first')
  clock.at += 10
  await writes.delete(claim, 'quarantine', claim.upload.objectKey)
  t.same(journal.slice(3), ['delete quarantine'], 'that renewal counts from when it was sent')
})

t.test('a worker paused past its lease: the write renews, finds the lease gone, and writes nothing', async (t) => {
  const clock = new ManualClock()
  const { journal, jobs, objects, claim, writes } = await setup(clock)
  clock.held(claim, clock.at, leaseMs)
  clock.at += leaseMs + 5_000
  jobs.steal(claim.upload.id)
  await t.rejects(writes.copy(claim, 'quarantine', 'production', claim.upload.objectKey, {}), LeaseLostError)
  t.same(journal, ['renew lost'])
  t.equal(await objects.head('production', claim.upload.objectKey), null, 'nothing copied')
})

t.test('an older renewal answered late does not make the lease look younger', async (t) => {
  const clock = new ManualClock()
  const { journal, claim, writes } = await setup(clock)
  clock.held(claim, 1_000, leaseMs)
  clock.held(claim, 500, leaseMs)
  clock.at = 1_000 + leaseMs / 3
  await writes.delete(claim, 'quarantine', claim.upload.objectKey)
  t.same(journal, ['renew held', 'delete quarantine'])
})

t.test('keep: renews while the job runs, aborts it when the lease is lost, forgets the lease when stopped', async (t) => {
  const leases = new ManualClock()
  const { journal, jobs, claim, writes } = await setup(leases)
  const shortLease = 300
  leases.held(claim, leases.at, shortLease)
  const job = new AbortController()
  const stop = leases.keep(jobs, claim, shortLease, job, new RecordingLog())
  leases.at += shortLease
  t.notOk(leases.fresh(claim), 'a lease taken a whole lease ago is not fresh')
  await sleep(shortLease)
  t.ok(journal.filter((e) => e === 'renew held').length >= 2, `renewed every ${shortLease / 3} ms: ${journal.join(', ')}`)
  t.ok(leases.fresh(claim), 'and a renewal makes it fresh again, from when it was sent')
  jobs.steal(claim.upload.id)
  await sleep(shortLease / 2)
  t.ok(job.signal.aborted, 'a renewal that finds the lease gone aborts the job')
  t.match(String(job.signal.reason), /lease lost/)
  leases.held(claim, leases.at, shortLease)
  stop()
  t.notOk(leases.fresh(claim), 'stopped: the lease is forgotten')
  const before = journal.length
  await sleep(shortLease / 2)
  t.equal(journal.length, before, 'and no longer renewed')
  await t.rejects(writes.delete(claim, 'quarantine', claim.upload.objectKey), LeaseLostError, 'a write after that renews, and stops')
})
