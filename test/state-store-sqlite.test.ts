import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import t from 'tap'
import { migrations } from '../src/adapters/state-store/sqlite-migrations.ts'
import { queueFilter } from '../src/adapters/state-store/shared-sql.ts'
import { sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import { SqliteDatabase } from '../src/adapters/state-store/sqlite-database.ts'
import { StateUnavailableError } from '../src/ports/state-database.ts'
import { sqliteStoreInWorker } from './helpers/sqlite-store-worker.ts'
import { stateStoreContract } from './state-contract/every-port.ts'

stateStoreContract(t, async (options) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sqlite-'))
  const path = join(dir, 'nested', 'state.db')
  const store = sqliteStateStore(path, options)
  return {
    store,
    cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }) },
    openAnother: () => sqliteStoreInWorker(path)
  }
})

t.test('refuses a schema newer than it knows', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sqlite-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'state.db')
  const store = sqliteStateStore(path)
  await store.migrate()
  await store.close()
  const db = new DatabaseSync(path)
  db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)').run()
  db.close()
  const again = sqliteStateStore(path)
  t.teardown(() => again.close())
  await t.rejects(again.migrate(), /schema is at version 999, newer than this gateway knows/)
})

t.test('a closed store answers with StateUnavailableError', async (t) => {
  const store = sqliteStateStore(':memory:')
  await store.migrate()
  await store.getUpload('x') // its statement is now prepared and cached
  await store.close()
  await t.rejects(store.ping(), StateUnavailableError)
  await t.rejects(store.getUpload('x'), StateUnavailableError)
})

t.test('migration 2 upgrades a version 1 database: promoted uploads are in production', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sqlite-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'state.db')
  const verdict = (result: string, signatureVersion: number | null) => JSON.stringify({ result, signature: null, reason: null, engine: 'e', signatureVersion })
  const db = new DatabaseSync(path)
  db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)')
  db.exec(migrations[0]!.sql)
  db.exec('INSERT INTO schema_migrations VALUES (1, 0)')
  const insert = db.prepare(
    `INSERT INTO uploads (id, object_key, size, sha256, content_type, status, created_at, updated_at, run_at, verdict)
     VALUES (?, ?, 1, 'x', 'text/plain', ?, ?, ?, ?, ?)`
  )
  insert.run('clean1', 'k/clean1', 'clean', 10, 10, 10, verdict('clean', 5))
  insert.run('infected1', 'k/infected1', 'infected', 20, 20, 20, verdict('infected', null))
  insert.run('pending1', 'k/pending1', 'pending', 30, 30, 30, null)
  db.close()

  const store = sqliteStateStore(path)
  t.teardown(() => store.close())
  await store.migrate()
  t.match(await store.getUpload('clean1'), { status: 'clean', location: 'production', nextScanAt: null, released: null })
  t.match(await store.getUpload('infected1'), { location: 'quarantine' })
  t.match(await store.getUpload('pending1'), { location: 'quarantine' })
  const rescan = await store.createRescan({ id: 'r1', scope: {}, createdBy: 'k', createdAt: 1_000 }, { kind: 'signatureVersionBelow', version: 6 })
  t.equal(rescan.total, 2, 'signature versions were copied from the stored verdicts')
  t.equal((await store.createRescan({ id: 'r2', scope: {}, createdBy: 'k', createdAt: 1_000 }, { kind: 'signatureVersionBelow', version: 5 })).total, 1)
  t.equal((await store.claim('w', 10, 1_000, 1_000))[0]?.upload.id, 'pending1')
  await store.migrate()
  const check = new DatabaseSync(path)
  t.teardown(() => check.close())
  t.same(check.prepare('SELECT version FROM schema_migrations ORDER BY version').all().map((r) => r.version), migrations.map((m) => m.version))
  t.same(
    check.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'uploads_%' ORDER BY name`).all().map((r) => r.name),
    ['uploads_adopted_due', 'uploads_due', 'uploads_failed_retry', 'uploads_object_key', 'uploads_rescan_due']
  )
})

t.test('the claims find due work through their partial indexes', async (t) => {
  const db = new DatabaseSync(':memory:')
  t.teardown(() => db.close())
  for (const m of migrations) db.exec(m.sql)
  const plan = (sql: string): string => JSON.stringify(db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all())
  t.match(plan(`SELECT id FROM uploads WHERE status IN ('clean', 'infected', 'unscannable') AND next_scan_at <= 1 ORDER BY next_scan_at LIMIT 5`), /uploads_rescan_due/)
  t.match(plan(`SELECT id FROM uploads WHERE ${queueFilter.uploads} AND run_at <= 1 ORDER BY run_at LIMIT 5`), /uploads_due/)
  t.match(plan(`SELECT id FROM uploads WHERE ${queueFilter.adopted} AND run_at <= 1 ORDER BY run_at LIMIT 5`), /uploads_adopted_due/)
})

t.test('a call made while a transaction awaits waits for it: it neither joins nor is rolled back with it', async (t) => {
  const db = new SqliteDatabase(':memory:')
  t.teardown(() => db.close())
  await db.exec('CREATE TABLE t (v TEXT)')
  let inside!: () => void
  const entered = new Promise<void>((resolve) => (inside = resolve))
  let carryOn!: () => void
  const held = new Promise<void>((resolve) => (carryOn = resolve))
  const failing = db.transaction(async (tx) => {
    await tx.write('INSERT INTO t (v) VALUES ($1)', ['rolled back'])
    inside()
    await held
    throw new Error('the transaction fails')
  })
  await entered
  const outside = db.write('INSERT INTO t (v) VALUES ($1)', ['kept'])
  const read = db.rows('SELECT v FROM t ORDER BY v')
  carryOn()
  await t.rejects(failing, /the transaction fails/)
  t.equal(await outside, 1)
  t.same((await read).map((r) => r.v), ['kept'], 'the read ran after the rollback, and after the write made before it')
  t.same((await db.rows('SELECT v FROM t')).map((r) => r.v), ['kept'])
})
