import { randomBytes } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t, { type Test } from 'tap'
import { queueFilter } from '../src/adapters/state-store/shared-sql.ts'
import { pgStateStore, type PgStateStoreOptions } from '../src/adapters/state-store/open-state-store.ts'
import { migrations } from '../src/adapters/state-store/pg-migrations.ts'
import { StateUnavailableError } from '../src/ports/state-database.ts'
import type { StateStore } from '../src/ports/state-store.ts'
import type { NewUpload } from '../src/ports/upload-record.ts'
import { freePort } from './helpers/free-port.ts'
import { freshSchema, pgQuery, pgUrl } from './helpers/postgres.ts'
import { stateStoreContract } from './state-contract/every-port.ts'

const upload = (over: Partial<NewUpload> = {}): NewUpload => {
  const id = randomBytes(16).toString('hex')
  return { id, objectKey: `k/${id}`, size: 10, sha256: 'a'.repeat(64), filename: 'a.pdf', contentType: 'application/pdf', createdAt: 1_000, ...over }
}

/** A store on its own schema, closed when the test ends. */
async function makeStore(t: Test, over: Partial<PgStateStoreOptions> = {}): Promise<StateStore> {
  const store = pgStateStore({ url: pgUrl, schema: over.schema ?? (await freshSchema(t)), poolSize: 5, ...over })
  t.teardown(() => store.close())
  return store
}

/**
 * The contract speaks in logical times (now = 1_000, then 2_500, …). On PostgreSQL leases follow the
 * database's clock, gw_now(), whatever `now` a caller passes: for the contract, that function is
 * replaced in the test's own schema by one reading a clock the test sets to the `now` of each call,
 * so the same SQL runs. The real clock is tested below, with a replica whose clock is an hour fast.
 */
const nowOf: Record<string, (args: unknown[]) => unknown> = {
  insertUpload: (a) => (a[0] as NewUpload).createdAt,
  commitUpload: (a) => (a[0] as NewUpload).createdAt,
  commitRejectedUpload: (a) => (a[0] as NewUpload).createdAt,
  claim: (a) => a[3],
  claimRescans: (a) => a[3],
  renewLease: (a) => a[2],
  update: (a) => a[2],
  giveBack: (a) => a[1],
  requestRelease: (a) => a[2],
  scheduleRescan: (a) => a[1],
  retryFailed: (a) => a[1],
  requeueFailed: (a) => a[0],
  createRescan: (a) => (a[0] as { createdAt: number }).createdAt,
  cancelRescan: (a) => a[1],
  advanceRescans: (a) => a[0],
  claimAdoption: (a) => a[2],
  adoptPage: (a) => a[4],
  claimEvents: (a) => a[3],
  eventDelivered: (a) => a[1]
}

function withTestClock(store: StateStore, schema: string, clock: pg.Client): StateStore {
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => Promise<unknown>
      if (prop === 'migrate') {
        return async () => {
          await method.apply(target, [])
          await clock.query(`CREATE TABLE IF NOT EXISTS "${schema}".test_clock (ms BIGINT NOT NULL);
            INSERT INTO "${schema}".test_clock SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM "${schema}".test_clock);
            CREATE OR REPLACE FUNCTION "${schema}".gw_now() RETURNS BIGINT LANGUAGE sql STABLE AS 'SELECT ms FROM "${schema}".test_clock'`)
        }
      }
      const pick = typeof prop === 'string' ? nowOf[prop] : undefined
      return async (...args: unknown[]) => {
        const now = pick?.(args)
        if (typeof now === 'number') await clock.query(`UPDATE "${schema}".test_clock SET ms = $1`, [now])
        return method.apply(target, args)
      }
    }
  })
}

// Each case gets its own schema; the schemas are dropped when the file ends.
stateStoreContract(t, async (options) => {
  const schema = await freshSchema(t)
  const real = pgStateStore({ url: pgUrl, schema, poolSize: 5, ...options })
  const clock = new pg.Client({ connectionString: pgUrl })
  await clock.connect()
  // Other replicas' stores read the same test clock (gw_now() is replaced in the schema).
  const openAnother = async () => {
    const other = pgStateStore({ url: pgUrl, schema, poolSize: 3, ...options })
    return { store: withTestClock(other, schema, clock), close: () => other.close() }
  }
  return { store: withTestClock(real, schema, clock), cleanup: async () => { await Promise.all([real.close(), clock.end()]) }, openAnother }
})

t.test('rejects a schema name that is not a plain identifier', async (t) => {
  for (const schema of ['Public', 'a-b', '1x', 'x"; DROP SCHEMA public; --', '']) {
    t.throws(() => pgStateStore({ url: pgUrl, schema, poolSize: 1 }), /invalid PostgreSQL schema name/)
  }
})

t.test('every table lives in the configured schema, even with options in the URL', async (t) => {
  const schema = await freshSchema(t)
  const store = await makeStore(t, { schema, url: `${pgUrl}?options=${encodeURIComponent('-c statement_timeout=4321')}` })
  await store.migrate()
  const { rows } = await pgQuery(`SELECT to_regclass($1) AS mine, to_regclass('public.uploads') AS public`, [`"${schema}".uploads`])
  t.same(rows, [{ mine: `${schema}.uploads`, public: null }], 'nothing is created in public')
  const u = upload()
  await store.insertUpload(u)
  t.equal((await store.getUpload(u.id))?.id, u.id)
})

t.test('several replicas migrating a fresh schema at once all succeed, and apply it once', async (t) => {
  const schema = await freshSchema(t)
  const stores = await Promise.all(Array.from({ length: 5 }, () => makeStore(t, { schema, poolSize: 1 })))
  await Promise.all(stores.map((s) => s.migrate()))
  const { rows } = await pgQuery(`SELECT version FROM "${schema}".schema_migrations`)
  t.same(rows, migrations.map((m) => ({ version: m.version })))
})

t.test('refuses a schema newer than it knows', async (t) => {
  const schema = await freshSchema(t)
  const store = await makeStore(t, { schema })
  await store.migrate()
  await pgQuery(`INSERT INTO "${schema}".schema_migrations (version, applied_at) VALUES (999, 0)`)
  await t.rejects(store.migrate(), new RegExp(`^the database schema is at version 999, newer than this gateway knows \\(${migrations.at(-1)!.version}\\): upgrade the gateway$`))
  await store.ping() // the refusal left no broken connection behind
})

t.test('a server that refuses connections answers with StateUnavailableError at once', async (t) => {
  const store = await makeStore(t, { url: `postgres://postgres@127.0.0.1:${await freePort()}/test` })
  const started = Date.now()
  await t.rejects(store.ping(), StateUnavailableError)
  await t.rejects(store.migrate(), StateUnavailableError)
  await t.rejects(store.claim('w', 1, 1_000, 1_000), StateUnavailableError)
  t.ok(Date.now() - started < 2_000, 'without waiting for a timeout')
})

t.test('a server that accepts but never answers times out with StateUnavailableError', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer((s) => sockets.add(s))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    silent.close()
  })
  const { port } = silent.address() as { port: number }
  const store = await makeStore(t, { url: `postgres://postgres@127.0.0.1:${port}/test`, connectTimeoutMs: 300 })
  const started = Date.now()
  await t.rejects(store.ping(), StateUnavailableError)
  t.ok(Date.now() - started < 2_000, `gave up after ${Date.now() - started} ms`)
})

t.test('connections killed by the server fail only the query in flight', async (t) => {
  const schema = await freshSchema(t)
  const applicationName = `gw_test_${randomBytes(6).toString('hex')}`
  const store = await makeStore(t, { schema, applicationName })
  await store.migrate()
  const u = upload()
  await store.insertUpload(u)
  const [claim] = await store.claim('w1', 1, 60_000, 2_000)
  await Promise.all(Array.from({ length: 5 }, () => store.ping())) // idle connections in the pool, to be killed too
  const backends = async (where = ''): Promise<number> =>
    Number((await pgQuery(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 ${where}`, [applicationName])).rows[0]?.n)

  // Hold the row so the store's update is in flight (waiting on the lock) when its connection is killed.
  const holder = new pg.Client({ connectionString: pgUrl })
  await holder.connect()
  t.teardown(() => holder.end())
  await holder.query('BEGIN')
  await holder.query(`SELECT 1 FROM "${schema}".uploads WHERE id = $1 FOR UPDATE`, [u.id])
  const inFlight = t.rejects(store.update(claim!, { status: 'infected' }, 3_000), StateUnavailableError)
  while ((await backends(`AND wait_event_type = 'Lock'`)) === 0) await sleep(10)
  await pgQuery(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'test' AND pid <> pg_backend_pid() AND application_name = $1`,
    [applicationName]
  )
  await inFlight
  await holder.query('ROLLBACK')
  while ((await backends()) > 0) await sleep(10)

  await Promise.all(Array.from({ length: 5 }, () => store.ping()))
  t.equal((await store.getUpload(u.id))?.status, 'scanning', 'the killed update did not apply')
  t.ok(await store.update(claim!, { status: 'infected' }, 3_100), 'the claim still holds and writes through a new connection')
})

t.test('two replicas (two pools) claiming at once never hand a job out twice', async (t) => {
  const schema = await freshSchema(t)
  const [a, b] = [await makeStore(t, { schema }), await makeStore(t, { schema })]
  await a.migrate()
  await pgQuery(
    `INSERT INTO "${schema}".uploads (id, object_key, size, sha256, content_type, status, created_at, updated_at, run_at)
     SELECT 'u' || i, 'k/' || i, 1, 'x', 'text/plain', 'pending', i, i, i FROM generate_series(1, 500) AS i`
  )
  const claims = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).claim(`w${i}`, 20, 60_000, 1_000)))
  const ids = claims.flat().map((c) => c.upload.id)
  t.equal(ids.length, 500)
  t.equal(new Set(ids).size, 500)
  for (const batch of claims) {
    const due = batch.map((c) => Number(c.upload.id.slice(1)))
    t.same(due, [...due].sort((x, y) => x - y), 'each batch comes back oldest due first')
  }
  const { rows } = await pgQuery(`SELECT count(*)::int AS n FROM "${schema}".uploads WHERE status = 'scanning' AND attempts = 1`)
  t.equal(rows[0]?.n, 500, 'each row was leased exactly once')
})

t.test('a claim finds due work through the partial index, however many uploads are finished', async (t) => {
  const schema = await freshSchema(t)
  const store = await makeStore(t, { schema })
  await store.migrate()
  await pgQuery(
    `INSERT INTO "${schema}".uploads (id, object_key, size, sha256, content_type, status, created_at, updated_at, run_at)
     SELECT 'u' || i, 'k/' || i, 1, 'x', 'text/plain', CASE WHEN i <= 5 THEN 'pending' ELSE 'clean' END, i, i, i
       FROM generate_series(1, 20005) AS i`
  )
  await pgQuery(`ANALYZE "${schema}".uploads`)
  const { rows } = await pgQuery(
    `EXPLAIN (FORMAT JSON) SELECT id FROM "${schema}".uploads
      WHERE ${queueFilter.uploads} AND run_at <= 100000 ORDER BY run_at LIMIT 10 FOR UPDATE SKIP LOCKED`
  )
  t.match(JSON.stringify(rows[0]), /"Index Name":"uploads_due"/)
  t.equal((await store.claim('w', 10, 1_000, 100_000)).length, 5)
})

t.test('two replicas claiming rescans at once never hand one out twice, and each batch is oldest due first', async (t) => {
  const schema = await freshSchema(t)
  const [a, b] = [await makeStore(t, { schema }), await makeStore(t, { schema })]
  await a.migrate()
  await pgQuery(
    `INSERT INTO "${schema}".uploads (id, object_key, size, sha256, content_type, status, location, created_at, updated_at, run_at, next_scan_at)
     SELECT 'u' || i, 'k/' || i, 1, 'x', 'text/plain', CASE WHEN i % 2 = 0 THEN 'clean' ELSE 'infected' END, 'production', i, i, i, i
       FROM generate_series(1, 500) AS i`
  )
  const claims = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).claimRescans(`w${i}`, 20, 60_000, 1_000)))
  const ids = claims.flat().map((c) => c.upload.id)
  t.equal(ids.length, 500)
  t.equal(new Set(ids).size, 500)
  t.ok(claims.flat().every((c) => c.kind === 'rescan'))
  for (const batch of claims) {
    const due = batch.map((c) => Number(c.upload.id.slice(1)))
    t.same(due, [...due].sort((x, y) => x - y), 'each batch comes back oldest due first')
  }
  const { rows } = await pgQuery(`SELECT count(*)::int AS n FROM "${schema}".uploads WHERE next_scan_at > $1 AND attempts = 1 AND lease_token IS NOT NULL`, [Date.now()])
  t.equal(rows[0]?.n, 500, 'each row was leased exactly once')
})

t.test('a rescan claim finds due uploads through the partial index, however many are not scheduled', async (t) => {
  const schema = await freshSchema(t)
  const store = await makeStore(t, { schema })
  await store.migrate()
  await pgQuery(
    `INSERT INTO "${schema}".uploads (id, object_key, size, sha256, content_type, status, location, created_at, updated_at, run_at, next_scan_at)
     SELECT 'u' || i, 'k/' || i, 1, 'x', 'text/plain', 'clean', 'production', i, i, i, CASE WHEN i <= 5 THEN i END
       FROM generate_series(1, 20005) AS i`
  )
  await pgQuery(`ANALYZE "${schema}".uploads`)
  const { rows } = await pgQuery(
    `EXPLAIN (FORMAT JSON) SELECT id FROM "${schema}".uploads
      WHERE status IN ('clean', 'infected', 'unscannable') AND next_scan_at <= 100000 ORDER BY next_scan_at LIMIT 10 FOR UPDATE SKIP LOCKED`
  )
  t.match(JSON.stringify(rows[0]), /"Index Name":"uploads_rescan_due"/)
  t.equal((await store.claimRescans('w', 10, 1_000, 100_000)).length, 5)
})

t.test('migration 2 upgrades a version 1 database: promoted uploads are in production', async (t) => {
  const schema = await freshSchema(t)
  const verdict = (result: string, signatureVersion: number | null) => JSON.stringify({ result, signature: null, reason: null, engine: 'e', signatureVersion })
  await pgQuery(`CREATE SCHEMA "${schema}"; SET search_path = "${schema}";
    CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
    ${migrations[0]!.sql}
    INSERT INTO schema_migrations VALUES (1, 0);
    INSERT INTO uploads (id, object_key, size, sha256, content_type, status, created_at, updated_at, run_at, verdict)
    VALUES ('clean1', 'k/clean1', 1, 'x', 'text/plain', 'clean', 10, 10, 10, '${verdict('clean', 5)}'),
           ('infected1', 'k/infected1', 1, 'x', 'text/plain', 'infected', 20, 20, 20, '${verdict('infected', null)}'),
           ('pending1', 'k/pending1', 1, 'x', 'text/plain', 'pending', 30, 30, 30, NULL)`)
  const store = await makeStore(t, { schema })
  await store.migrate()
  t.match(await store.getUpload('clean1'), { status: 'clean', location: 'production', nextScanAt: null, released: null })
  t.match(await store.getUpload('infected1'), { location: 'quarantine' })
  t.match(await store.getUpload('pending1'), { location: 'quarantine' })
  const rescan = await store.createRescan({ id: 'r1', scope: {}, createdBy: 'k', createdAt: 1_000 }, { kind: 'signatureVersionBelow', version: 6 })
  t.equal(rescan.total, 2, 'signature versions were copied from the stored verdicts')
  t.equal((await store.createRescan({ id: 'r2', scope: {}, createdBy: 'k', createdAt: 1_000 }, { kind: 'signatureVersionBelow', version: 5 })).total, 1)
  t.equal((await store.claim('w', 10, 1_000, 1_000))[0]?.upload.id, 'pending1')
  const { rows } = await pgQuery(`SELECT version FROM "${schema}".schema_migrations ORDER BY version`)
  t.same(rows, migrations.map((m) => ({ version: m.version })))
})

t.test('a closed store answers with StateUnavailableError, and closing twice is fine', async (t) => {
  const store = await makeStore(t)
  await store.migrate()
  await store.close()
  await store.close()
  await t.rejects(store.ping(), StateUnavailableError)
  await t.rejects(store.getUpload('x'), StateUnavailableError)
})

t.test('a replica whose clock runs an hour fast (or slow) cannot take a live lease: leases are on the database clock', async (t) => {
  const schema = await freshSchema(t)
  const [a, b] = [await makeStore(t, { schema }), await makeStore(t, { schema })]
  await a.migrate()
  const hour = 3_600_000
  const fast = (): number => Date.now() + hour
  const slow = (): number => Date.now() - hour
  const dbNow = async (): Promise<number> => Number((await pgQuery('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now')).rows[0]?.now)

  // The upload flow: a claim, a renewal and a lease end written by a status change.
  const u = upload({ createdAt: Date.now() })
  await a.insertUpload(u)
  const [held] = await a.claim('a', 1, 60_000, Date.now())
  t.equal(held?.upload.id, u.id)
  t.same(await b.claim('b', 10, 60_000, fast()), [], 'a fast replica does not see the lease as expired')
  t.ok(await a.renewLease(held!, 60_000, fast()))
  t.ok((await a.getUpload(u.id))!.runAt <= (await dbNow()) + 60_000, 'a renewal by a fast replica ends its lease a lease from the database clock, not an hour later')
  t.ok(await a.update(held!, { status: 'promoting', runAt: slow() + 60_000 }, slow()), 'a slow replica records its promotion step')
  const promoting = { ...held!, upload: { ...held!.upload, status: 'promoting' as const } }
  t.same(await b.claim('b', 10, 60_000, Date.now()), [], 'the lease a slow replica wrote is a lease on the database clock: not expired')
  t.ok((await a.getUpload(u.id))!.runAt > (await dbNow()) + 50_000)
  t.ok(await a.giveBack(promoting, fast()), 'a fast replica gives its lease back...')
  t.equal((await b.claim('b', 10, 60_000, Date.now()))[0]?.upload.id, u.id, '...and it is due at once on the database clock')

  // Rescans: a stored upload under a rescan lease.
  const r = upload({ createdAt: Date.now() })
  await a.insertUpload(r)
  const [scan] = await a.claim('a', 1, 60_000, Date.now())
  t.ok(await a.update(scan!, { status: 'clean', location: 'production', nextScanAt: Date.now() - 1, resetAttempts: true }, Date.now()))
  t.equal((await a.claimRescans('a', 1, 60_000, Date.now()))[0]?.upload.id, r.id)
  t.same(await b.claimRescans('b', 10, 60_000, fast()), [], 'a rescan lease holds')

  // Adoption listings.
  await a.createRescan({ id: 'adopt-1', scope: { adopt: {} }, createdBy: 'k', createdAt: Date.now() }, { kind: 'adopt', bucket: 'prod', prefix: '' })
  t.equal((await a.claimAdoption('a', 60_000, Date.now()))?.rescanId, 'adopt-1')
  t.equal(await b.claimAdoption('b', 60_000, fast()), null, 'a listing lease holds')

  // Outbox deliveries.
  const e = upload({ createdAt: Date.now() })
  await a.insertUpload(e)
  const [c] = await a.claim('a', 1, 60_000, Date.now())
  const event = { id: 'event-1', type: 'upload.infected', data: {}, createdAt: Date.now() } as const
  t.ok(await a.update(c!, { status: 'infected', events: [event] }, Date.now()))
  t.equal((await a.claimEvents('a', 10, 60_000, Date.now()))[0]?.id, 'event-1')
  t.same(await b.claimEvents('b', 10, 60_000, fast()), [], 'a delivery lease holds')
})
