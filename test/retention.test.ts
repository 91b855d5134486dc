import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import t, { type Test } from 'tap'
import { pgStateStore, sqliteStateStore } from '../src/adapters/state-store/open-state-store.ts'
import type { StateStore } from '../src/ports/state-store.ts'
import { freePort } from './helpers/free-port.ts'
import { startGateway } from './helpers/gateway.ts'
import { freshSchema, pgQuery, pgUrl } from './helpers/postgres.ts'

// A worker process prunes old history in the background (GW_HISTORY_RETENTION, GW_AUDIT_RETENTION),
// on both engines: the rows are written before it starts, as a gateway that ran for years left them.
const hour = 3_600_000

async function writeHistory(store: StateStore): Promise<{ uploadId: string }> {
  await store.migrate()
  const now = Date.now()
  const uploadId = 'a'.repeat(32)
  await store.insertUpload({ id: uploadId, objectKey: uploadId, size: 1, sha256: 'x', filename: null, contentType: 'text/plain', createdAt: now - 3 * hour })
  const [claim] = await store.claim('setup', 1, 60_000, now)
  const event = (id: string) => ({ id, type: 'upload.infected', data: {}, createdAt: now - 3 * hour }) as const
  await store.update(claim!, { status: 'infected', events: [event('delivered-long-ago'), event('never-delivered')] }, now)
  const claimed = await store.claimEvents('setup', 10, 60_000, now)
  await store.eventDelivered(claimed.find((e) => e.id === 'delivered-long-ago')!, now - 2 * hour)
  // The other one's delivery failed: it is due again, and must survive every prune.
  await store.eventFailed(claimed.find((e) => e.id === 'never-delivered')!, 'HTTP 503', now - 1_000)
  const scan = { uploadId, durationMs: 1, endpoint: null, engine: null, signatureVersion: null, outcome: 'error', signature: null, detail: null, bytes: 1 } as const
  for (const startedAt of [now - 2 * hour, now - 2 * hour + 1, now]) await store.recordScan({ ...scan, startedAt })
  for (const at of [now - 2 * hour, now]) await store.recordAudit({ at, actor: 'k', action: 'x', target: 't', detail: {} })
  await store.close()
  return { uploadId }
}

async function checkPruned(t: Test, env: Record<string, string>, dir: string | undefined, uploadId: string, outboxIds: () => Promise<string[]>): Promise<void> {
  const gw = await startGateway(t, {
    ...env,
    GW_HISTORY_RETENTION: '1h',
    GW_AUDIT_RETENTION: '1h',
    GW_SCAN_CONCURRENCY: '1',
    GW_CLAMD: `tcp://127.0.0.1:${await freePort()}`,
    GW_CLAMD_HEALTH_INTERVAL_MS: '0'
  }, dir)
  const state = gw.gateway.state
  const deadline = Date.now() + 20_000
  let scans = await state.listScans(uploadId)
  while (Date.now() < deadline && scans.length > 1) {
    await new Promise((r) => setTimeout(r, 200))
    scans = await state.listScans(uploadId)
  }
  t.equal(scans.length, 1, 'scans older than GW_HISTORY_RETENTION are pruned, the recent one kept')
  t.equal((await state.listAudit(10)).length, 1, 'audit rows older than GW_AUDIT_RETENTION are pruned')
  const due = await state.claimEvents('check', 10, 60_000, Date.now())
  t.same(due.map((e) => e.id), ['never-delivered'], 'an undelivered event is kept however old')
  t.same(await outboxIds(), ['never-delivered'], 'the event delivered long ago is gone')
  await gw.stop()
}

t.test('SQLite: a worker prunes old history in the background', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-retention-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { uploadId } = await writeHistory(sqliteStateStore(join(dir, 'state.db')))
  const outboxIds = async (): Promise<string[]> => {
    const db = new DatabaseSync(join(dir, 'state.db'))
    try {
      return db.prepare('SELECT id FROM outbox ORDER BY id').all().map((r) => String(r.id))
    } finally {
      db.close()
    }
  }
  await checkPruned(t, {}, dir, uploadId, outboxIds)
})

t.test('PostgreSQL: a worker prunes old history in the background', async (t) => {
  const schema = await freshSchema(t)
  const { uploadId } = await writeHistory(pgStateStore({ url: pgUrl, schema, poolSize: 2 }))
  const outboxIds = async (): Promise<string[]> => (await pgQuery(`SELECT id FROM "${schema}".outbox ORDER BY id`)).rows.map((r) => String(r.id))
  await checkPruned(t, { GW_DATABASE_URL: pgUrl, GW_DATABASE_SCHEMA: schema }, undefined, uploadId, outboxIds)
})
