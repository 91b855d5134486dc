import t from 'tap'
import { migrations } from '../src/adapters/state-store/pg-migrations.ts'
import { freePort } from './helpers/free-port.ts'
import { startGateway } from './helpers/gateway.ts'
import { freshSchema, pgQuery, pgUrl } from './helpers/postgres.ts'

// A database of a million uploads, as a gateway that has run for years holds: start-up migrates
// it, and an {"all": true} rescan starts, reports its progress and is cancelled, with the store's
// usual statement timeout (10 s) on every statement but the migrations. The rows are made by
// generate_series in SQL; GW_TEST_LARGE_ROWS sets another count.
const ROWS = Number(process.env.GW_TEST_LARGE_ROWS ?? 1_000_000)
const admin = 'admin-key-for-large-db-0001'
const as = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }

t.test(`a database of ${ROWS} uploads: start-up migrates it, and an {"all": true} rescan starts, reports progress and is cancelled`, async (t) => {
  const schema = await freshSchema(t)
  // A version 1 database (before rescans existed), every upload clean.
  await pgQuery(`CREATE SCHEMA "${schema}"; SET search_path = "${schema}";
    CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
    ${migrations[0]!.sql}
    INSERT INTO schema_migrations VALUES (1, 0);
    INSERT INTO uploads (id, object_key, size, sha256, content_type, status, created_at, updated_at, scanned_at, run_at, verdict)
    SELECT md5(i::text), 'k/' || md5(i::text), 1, 'x', 'text/plain', 'clean', i, i, i, i,
           '{"result":"clean","signature":null,"reason":null,"engine":"ClamAV","signatureVersion":27000}'
      FROM generate_series(1, ${ROWS}) AS i;
    ANALYZE uploads;`)

  const started = Date.now()
  const gw = await startGateway(t, {
    GW_DATABASE_URL: pgUrl,
    GW_DATABASE_SCHEMA: schema,
    GW_ADMIN_KEYS: admin,
    // A worker process (rescan batches run there) that never claims a rescan: nothing here scans.
    GW_SCAN_CONCURRENCY: '1',
    GW_RESCAN_SHARE: '0',
    GW_CLAMD: `tcp://127.0.0.1:${await freePort()}`,
    GW_CLAMD_HEALTH_INTERVAL_MS: '0'
  })
  t.comment(`start-up migrated ${ROWS} uploads in ${Date.now() - started} ms`)
  const { rows } = await pgQuery(`SELECT count(*)::int AS n FROM "${schema}".uploads WHERE location = 'production' AND signature_version = 27000`)
  t.equal(rows[0]?.n, ROWS, 'migration 2 rewrote every upload')

  const res = await fetch(`${gw.url}/v1/rescans`, { method: 'POST', headers: as, body: JSON.stringify({ scope: { all: true } }) })
  t.equal(res.status, 202, 'the rescan starts')
  const rescan = await res.json()
  t.match(rescan, { state: 'listing', total: Number })
  t.ok(rescan.total > 0 && rescan.total < ROWS, `its first batch is covered at once (${rescan.total}), the rest batch by batch`)

  // Progress: the worker covers more batches, each in a short transaction.
  let progress = rescan
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline && progress.total <= rescan.total) {
    await new Promise((r) => setTimeout(r, 500))
    const got = await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { headers: as })
    t.equal(got.status, 200)
    progress = await got.json()
  }
  t.ok(progress.total > rescan.total, `GET reports progress: ${progress.total} of ${ROWS} covered`)
  t.equal(progress.state, 'listing')

  const cancelled = await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { method: 'DELETE', headers: { authorization: as.authorization } })
  t.equal(cancelled.status, 200, 'cancel works')
  t.match(await cancelled.json(), { state: 'cancelled', cancelledAt: String })
  const after = await (await fetch(`${gw.url}/v1/rescans/${rescan.id}`, { headers: as })).json()
  t.match(after, { state: 'cancelled', done: 0 })
  await gw.stop()
})
