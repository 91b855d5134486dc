import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import t from 'tap'
import { SqliteStateStore } from '../src/adapters/state-store/sqlite-state-store.ts'
import { StateUnavailableError } from '../src/ports/state-store.ts'
import { stateStoreContract } from './state-store-contract.ts'

stateStoreContract(t, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sqlite-'))
  const store = new SqliteStateStore(join(dir, 'nested', 'state.db'))
  return { store, cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }) } }
})

t.test('refuses a schema newer than it knows', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sqlite-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'state.db')
  const store = new SqliteStateStore(path)
  await store.migrate()
  await store.close()
  const db = new DatabaseSync(path)
  db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)').run()
  db.close()
  const again = new SqliteStateStore(path)
  t.teardown(() => again.close())
  await t.rejects(again.migrate(), /schema is at version 999, newer than this gateway knows/)
})

t.test('a closed store answers with StateUnavailableError', async (t) => {
  const store = new SqliteStateStore(':memory:')
  await store.migrate()
  await store.getUpload('x') // its statement is now prepared and cached
  await store.close()
  await t.rejects(store.ping(), StateUnavailableError)
  await t.rejects(store.getUpload('x'), StateUnavailableError)
})
