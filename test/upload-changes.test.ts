import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { pgStateStore, sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import type { StateStore } from '../src/ports/state-store.ts'
import { until } from './helpers/long-poll.ts'
import { freshSchema, pgQuery, pgUrl } from './helpers/postgres.ts'
import { rescanMeta, stored, upload, verdict } from './state-contract/harness.ts'

// Change notices (the UploadChanges port): heard after every committed write a client could see,
// across stores on PostgreSQL, not for lease bookkeeping, and through a lost LISTEN connection.

/** Counts the notices for one upload. */
function counter(store: StateStore, id: string): { count: () => number; stop: () => void } {
  let n = 0
  const stop = store.subscribe(id, () => n++)
  return { count: () => n, stop }
}

/** The upload's flow through the port, checking the notices of each step; `quiet` waits long enough to see a notice that should not come. */
async function flow(t: Test, writer: StateStore, reader: StateStore, quiet: () => Promise<void>): Promise<void> {
  const u = upload({ createdAt: 100 })
  const bystander = upload({ createdAt: 5_000 })
  const heard = counter(reader, u.id)
  const other = counter(reader, bystander.id)
  let due = 0
  const stopDue = reader.onUploadDue(() => due++)
  t.equal(reader.listenerCount(), 2)
  await quiet()
  const base = heard.count()
  const otherBase = other.count()
  await writer.insertUpload(u)
  t.ok(await until(() => heard.count() > base), 'an insert')
  t.ok(await until(() => due === 1), 'a new pending upload wakes workers')
  const [claim] = await writer.claim('w', 1, 1_000, 200)
  t.equal(claim?.upload.id, u.id)
  t.ok(await until(() => heard.count() > base + 1), 'pending → scanning')
  await quiet()
  const beforeRenewal = heard.count()
  t.ok(await writer.renewLease(claim!, 1_000, 300))
  await quiet()
  t.equal(heard.count(), beforeRenewal, 'a lease renewal changes nothing a client sees: no notice')
  t.ok(await writer.update(claim!, { status: 'infected', verdict: verdict('infected'), scannedAt: 400 }, 400))
  t.ok(await until(() => heard.count() > beforeRenewal), 'the verdict')
  t.equal(other.count(), otherBase, 'nothing for another upload')
  t.equal(due, 1, 'only an upload becoming pending wakes workers')
  stopDue()
  heard.stop()
  heard.stop()
  other.stop()
  t.equal(reader.listenerCount(), 0, 'unsubscribed, once')
  const after = heard.count()
  await writer.requestRelease(u.id, { by: 'k', reason: 'r', from: 'infected', signature: 'Eicar', version: null }, 500)
  await quiet()
  t.equal(heard.count(), after, 'an unsubscribed listener hears nothing more')
}

/**
 * A rescan makes stored uploads due by their schedule alone (bookkeeping, which the triggers do not
 * announce): starting it wakes idle workers all the same, without waiting for their next poll.
 */
async function rescanWakes(t: Test, writer: StateStore, reader: StateStore, quiet: () => Promise<void>): Promise<void> {
  const x = await stored(writer, 'clean', { createdAt: 10, nextScanAt: 1e12 })
  let due = 0
  const stopDue = reader.onUploadDue(() => due++)
  await quiet()
  const base = due
  await writer.createRescan(rescanMeta(1_000, { ids: ['0'.repeat(32)] }), { kind: 'ids', ids: ['0'.repeat(32)] })
  await quiet()
  t.equal(due, base, 'a rescan that makes nothing due wakes nobody')
  await writer.createRescan(rescanMeta(1_001, { ids: [x.id] }), { kind: 'ids', ids: [x.id] })
  t.ok(await until(() => due > base), 'a rescan by ids wakes workers')
  const [claim] = await writer.claimRescans('w', 1, 1_000, Date.now())
  t.equal(claim?.upload.id, x.id)
  t.ok(await writer.update(claim!, { status: 'clean', nextScanAt: 1e12, rescanOutcome: 'clean' }, Date.now()))
  await quiet()
  const before = due
  await writer.createRescan(rescanMeta(1_002), { kind: 'all' })
  t.ok(await until(() => due > before), 'a rescan of a selection wakes workers')
  stopDue()
}

t.test('SQLite: notices in the process, after the commit', async (t) => {
  const store = sqliteStateStore(':memory:')
  t.teardown(() => store.close())
  await store.migrate()
  await store.migrate()
  await flow(t, store, store, () => sleep(50))
})

t.test('SQLite: starting a rescan wakes the workers', async (t) => {
  const store = sqliteStateStore(':memory:')
  t.teardown(() => store.close())
  await store.migrate()
  await rescanWakes(t, store, store, () => sleep(50))
})

t.test('PostgreSQL: starting a rescan on one replica wakes the workers of another', async (t) => {
  const schema = await freshSchema(t)
  const name = `gw-test-${randomBytes(4).toString('hex')}`
  const [reader, writer] = await Promise.all([pgStore(t, schema, name), pgStore(t, schema)])
  const warmUp = reader.onUploadDue(() => {})
  t.ok(await waitFor(() => listenerPid(name)), 'listening')
  warmUp()
  await rescanWakes(t, writer, reader, () => sleep(400))
})

async function pgStore(t: Test, schema: string, applicationName?: string): Promise<StateStore> {
  const store = pgStateStore({ url: pgUrl, schema, poolSize: 2, ...(applicationName ? { applicationName } : {}) })
  t.teardown(() => store.close())
  await store.migrate()
  return store
}

/** The backend of a store's LISTEN connection, by its application name. */
async function listenerPid(applicationName: string): Promise<number | null> {
  const { rows } = await pgQuery<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`, [applicationName])
  return rows[0]?.pid ?? null
}

t.test('PostgreSQL: a write by one replica is heard by another, and only in its own schema', async (t) => {
  const schema = await freshSchema(t)
  const name = `gw-test-${randomBytes(4).toString('hex')}`
  const [reader, writer, elsewhere] = await Promise.all([pgStore(t, schema, name), pgStore(t, schema), pgStore(t, await freshSchema(t))])
  // Listening starts at the first subscription: wait for it, and for the re-read notice it sends.
  const warmUp = reader.subscribe('warm-up', () => {})
  t.ok(await waitFor(() => listenerPid(name)), 'listening')
  warmUp()
  const quiet = () => sleep(400)
  await quiet()
  await flow(t, writer, reader, quiet)

  // The same id written in another schema (another gateway on the same database) is not heard.
  const u = upload()
  const heard = counter(reader, u.id)
  await quiet()
  const base = heard.count()
  await elsewhere.insertUpload(u)
  await quiet()
  t.equal(heard.count(), base, 'another schema is another gateway')
  heard.stop()
})

t.test('PostgreSQL: while the LISTEN connection is down, listeners re-read every second; it comes back', async (t) => {
  const schema = await freshSchema(t)
  const name = `gw-test-${randomBytes(4).toString('hex')}`
  const [reader, writer] = await Promise.all([pgStore(t, schema, name), pgStore(t, schema)])
  const u = upload()
  const heard = counter(reader, u.id)
  const first = await waitFor(() => listenerPid(name))
  t.ok(first, 'listening')
  await pgQuery('SELECT pg_terminate_backend($1)', [first])
  // Notices come by polling now (or by the new connection, which re-reads once it listens).
  const base = heard.count()
  await writer.insertUpload(u)
  const started = Date.now()
  t.ok(await until(() => heard.count() > base, 5_000), 'a write while the connection was down is heard')
  t.comment(`heard ${Date.now() - started} ms after the write`)
  const second = await waitFor(async () => {
    const pid = await listenerPid(name)
    return pid !== first ? pid : null
  })
  t.ok(second, 'a new LISTEN connection')
  await sleep(1_500) // past the last fallback tick
  const before = heard.count()
  const [claim] = await writer.claim('w', 1, 1_000, Date.now())
  t.equal(claim?.upload.id, u.id)
  t.ok(await until(() => heard.count() > before), 'heard through the new connection')
  heard.stop()
})

async function waitFor<T>(probe: () => Promise<T | null>, timeoutMs = 10_000): Promise<T | null> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== null || Date.now() > deadline) return value
    await sleep(50)
  }
}
