import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { pgStateStore, sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import type { ObjectStore } from '../src/ports/object-store.ts'
import type { StateStore } from '../src/ports/state-store.ts'
import { statusETag } from '../src/services/live-status.ts'
import { StatusService } from '../src/services/status-service.ts'
import { until } from './helpers/long-poll.ts'
import { freshSchema, pgQuery, pgUrl } from './helpers/postgres.ts'
import { upload, verdict } from './state-contract/harness.ts'

// Status reads answered from what the process remembers (UploadReadCache), on real stores: never
// older than the store on SQLite; on PostgreSQL a replica shows another's write once it hears the
// notice, and reads the store while it cannot hear notices.

const anonymous = { kind: 'anonymous' } as const
const objects = { location: (area: string, key: string) => ({ bucket: area, key }) } as unknown as ObjectStore

/** A status service over `store`, and how many times it read the store (the store's own reads, counted). */
function service(store: StateStore): { status: StatusService; reads: () => number } {
  let reads = 0
  const uploads = { getUpload: (id: string) => (reads++, store.getUpload(id)) }
  return { status: new StatusService({ uploads, changes: store, objects }, { tokenReadTtlMs: 60_000 }), reads: () => reads }
}

/** A SQLite store in memory holding one pending upload, and a status service over it. */
async function sqliteWithUpload(t: Test): Promise<{ store: StateStore; u: ReturnType<typeof upload>; status: StatusService; reads: () => number }> {
  const store = sqliteStateStore(':memory:')
  t.teardown(() => store.close())
  await store.migrate()
  const u = upload({ createdAt: 100 })
  await store.insertUpload(u)
  return { store, u, ...service(store) }
}

t.test('SQLite: repeated reads come from memory; a write shows at once', async (t) => {
  const { store, u, status, reads } = await sqliteWithUpload(t)
  const first = await status.get(u.id, anonymous)
  t.equal(first?.status, 'pending')
  for (let i = 0; i < 5; i++) t.equal((await status.get(u.id, anonymous))?.status, 'pending')
  t.equal(reads(), 1, 'one store read for six polls')
  await store.claim('w', 1, 1_000, 200)
  // No wait: the write's notice is sent as it commits.
  t.equal((await status.get(u.id, anonymous))?.status, 'scanning', 'the write is seen by the very next read')
  t.equal(reads(), 2)
  t.equal(await status.get('nope', anonymous), null, 'an unknown upload')
})

t.test('a client holding another ETag than the remembered one makes the read go to the store', async (t) => {
  const { u, status, reads } = await sqliteWithUpload(t)
  const view = await status.get(u.id, anonymous)
  const etag = statusETag(view!)
  await status.get(u.id, anonymous, (seen) => seen === etag)
  t.equal(reads(), 1, 'the client holds what is remembered: from memory')
  await status.get(u.id, anonymous, (seen) => seen === '"newer"')
  t.equal(reads(), 2, 'the client saw something else (from another replica, say): from the store')
})

async function pgStore(t: Test, schema: string, applicationName?: string): Promise<StateStore> {
  const store = pgStateStore({ url: pgUrl, schema, poolSize: 2, ...(applicationName ? { applicationName } : {}) })
  t.teardown(() => store.close())
  await store.migrate()
  return store
}

async function listenerPid(applicationName: string): Promise<number | null> {
  const { rows } = await pgQuery<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`, [applicationName])
  return rows[0]?.pid ?? null
}

t.test('PostgreSQL, two replicas: a write on one is seen on the other as soon as the notice is heard', async (t) => {
  const schema = await freshSchema(t)
  const name = `gw-test-${randomBytes(4).toString('hex')}`
  const [a, b] = await Promise.all([pgStore(t, schema, name), pgStore(t, schema)])
  const u = upload({ createdAt: 100 })
  await b.insertUpload(u)
  const { status, reads } = service(a)
  t.equal((await status.get(u.id, anonymous))?.status, 'pending')
  t.ok(await until(() => a.listeningEpoch() !== null), 'replica A listens (from its first read)')
  await status.get(u.id, anonymous)
  const cached = reads()
  await status.get(u.id, anonymous)
  t.equal(reads(), cached, 'listening: polls come from memory')

  /** Runs B's write, waits until A hears of it, and reads on A at once. */
  const afterNotice = async (write: () => Promise<unknown>): Promise<string | undefined> => {
    let heard = false
    const stop = a.subscribe(u.id, () => (heard = true))
    await write()
    t.ok(await until(() => heard), 'A hears the notice of B’s write')
    stop()
    return (await status.get(u.id, anonymous))?.status
  }
  let claim: Awaited<ReturnType<StateStore['claim']>>[number] | undefined
  t.equal(await afterNotice(async () => ([claim] = await b.claim('w', 1, 60_000, Date.now()))), 'scanning', 'pending → scanning, seen on A')
  t.equal(await afterNotice(() => b.update(claim!, { status: 'infected', verdict: verdict('infected'), scannedAt: Date.now() }, Date.now())), 'infected', 'scanning → infected, seen on A')
})

t.test('PostgreSQL: while the LISTEN connection is down every read goes to the store', async (t) => {
  const schema = await freshSchema(t)
  const name = `gw-test-${randomBytes(4).toString('hex')}`
  const [a, b] = await Promise.all([pgStore(t, schema, name), pgStore(t, schema)])
  const u = upload({ createdAt: 100 })
  await b.insertUpload(u)
  const { status, reads } = service(a)
  await status.get(u.id, anonymous)
  t.ok(await until(() => a.listeningEpoch() !== null), 'listening')
  await status.get(u.id, anonymous)
  const pid = await listenerPid(name)
  t.ok(pid, 'its LISTEN connection')
  await pgQuery('SELECT pg_terminate_backend($1)', [pid])
  t.ok(await until(() => a.listeningEpoch() === null), 'A knows it is not listening')
  // A write A cannot hear: the next read still shows it.
  await b.claim('w', 1, 60_000, Date.now())
  const before = reads()
  t.equal((await status.get(u.id, anonymous))?.status, 'scanning', 'the write is seen without its notice')
  await status.get(u.id, anonymous)
  t.equal(reads(), before + 2, 'not listening: every read from the store')
  t.ok(await until(() => a.listeningEpoch() !== null, 10_000), 'listening again')
  await status.get(u.id, anonymous)
  const again = reads()
  await status.get(u.id, anonymous)
  t.equal(reads(), again, 'from memory again')
  await sleep(10)
})
