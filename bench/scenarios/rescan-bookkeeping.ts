import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync, type SQLInputValue } from 'node:sqlite'
import { Readable } from 'node:stream'
import pg from 'pg'
import { startClamd } from '../../test/helpers/clamd.ts'
import { pgStateStore, sqliteStateStore } from '../../src/adapters/state-store/open-state-store.ts'
import type { Claim } from '../../src/ports/job-queue.ts'
import type { StateStore } from '../../src/ports/state-store.ts'
import { contentBuffer, KiB, uniqueLabel } from '../lib/content.ts'
import { profileInProcess, type ProfileSummary } from '../lib/cpu-profile.ts'
import { round } from '../lib/proc.ts'
import { rawScan } from '../lib/raw-clamd.ts'
import { percentile } from '../lib/stats.ts'
import type { Context, Row, Scenario } from '../lib/types.ts'

/** Claims per call: a worker claims at most its free scan slots (GW_SCAN_CONCURRENCY, 4 by default). */
const LIMIT = 4
const CLAMD_CONCURRENCY = 4
const SMALL_FILE = 10 * KiB
const DAY = 86_400_000

/**
 * Claims of due rescans per second over many synthetic stored uploads (most not due), one
 * claimer calling claimRescans(owner, 4, lease, now) in a loop, against what clamd can scan:
 * raw INSTREAM of small unique files, 4 at once. Bookkeeping must never be the bottleneck.
 */
export const rescanBookkeeping: Scenario = {
  id: 6,
  title: 'Rescan bookkeeping',
  async run(ctx) {
    const records = ctx.quick ? 50_000 : 1_000_000
    const budgetMs = ctx.quick ? 1500 : 5000

    const files = ctx.quick ? 300 : 2000
    ctx.log(`  baseline: ${files} files of 10 KiB through a fresh clamd, ${CLAMD_CONCURRENCY} at once`)
    const clamd = await startClamd()
    const stopClamd = ctx.resources.defer('clamd', () => clamd.stop())
    const bodies = Array.from({ length: files }, () => contentBuffer(SMALL_FILE, uniqueLabel('rescan')))
    let raw
    try {
      raw = await rawScan(clamd.url, files, (i) => Readable.from([bodies[i] as Buffer]), CLAMD_CONCURRENCY)
    } finally {
      await stopClamd()
    }

    const rows: Row[] = []
    const measured: Record<string, unknown> = {}
    // Profiled at once (2 s), not later: the million records are gone once measured.
    const profiles: ProfileSummary[] = []
    const notes: string[] = []
    for (const name of ['SQLite', 'PostgreSQL']) {
      ctx.log(`  ${name}: ${records.toLocaleString('en')} records`)
      const target = await prepare(ctx, name, records)
      try {
        const m = await claimLoop(target.store, target.due, budgetMs)
        measured[name] = { records, due: target.due, insertSeconds: target.insertSeconds, ...m, claimMs: undefined }
        const ratio = m.claimsPerSecond / raw.filesPerSecond
        rows.push({
          scenario: 6,
          case: `${name}, ${(records / 1e6).toLocaleString('en')}M records, ${LIMIT} per claim`,
          metric: 'claims/s',
          better: 'higher',
          gateway: Math.round(m.claimsPerSecond),
          baseline: Math.round(raw.filesPerSecond),
          baselineLabel: 'clamd 10 KiB files/s',
          ratio: round(ratio, 2),
          goal: '≥ 1 (never the bottleneck)',
          goalRatio: 1,
          met: ratio >= 1 && m.duplicates === 0,
          note: `p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms per claim${m.duplicates ? `; ${m.duplicates} claimed twice` : ''}`,
          evidence: `${m.claimed} claims in ${m.calls} calls over ${m.seconds} s, ${target.due} due among ${records} records (loaded in ${target.insertSeconds} s).`
        })
        if (ctx.profile && rows.at(-1)?.met === false) {
          ctx.log(`  profiling ${name} claims (in the bench process)`)
          profiles.push(await profileInProcess(`scenario 6, ${name} claimRescans, bench process`, async () => {
            await claimLoop(target.store, target.due, 2000)
          }))
        }
      } finally {
        await target.close()
      }
    }
    return {
      rows,
      profiles,
      details: { records, limit: LIMIT, raw: { ...raw, filesPerSecond: round(raw.filesPerSecond, 1), mbPerSecond: round(raw.mbPerSecond, 1) }, stores: measured, notes }
    }
  }
}

async function claimLoop(store: StateStore, due: number, budgetMs: number) {
  const seen = new Set<string>()
  let duplicates = 0
  let claimed = 0
  const latencies: number[] = []
  const owner = `bench-${randomBytes(4).toString('hex')}`
  const started = performance.now()
  while (claimed < due && performance.now() - started < budgetMs) {
    const t = performance.now()
    const claims: Claim[] = await store.claimRescans(owner, LIMIT, 60_000, Date.now())
    latencies.push(performance.now() - t)
    if (claims.length === 0) break
    for (const c of claims) {
      if (seen.has(c.upload.id)) duplicates++
      seen.add(c.upload.id)
    }
    claimed += claims.length
  }
  const seconds = (performance.now() - started) / 1000
  return {
    claimed,
    calls: latencies.length,
    seconds: round(seconds, 3),
    claimsPerSecond: claimed / seconds,
    p50Ms: round(percentile(latencies, 50), 3),
    p99Ms: round(percentile(latencies, 99), 3),
    duplicates
  }
}

/** How each column of synthetic rows is filled: r = i % 100 sets the mix (5% due, 88% clean not due, 7% other). */
interface Column {
  name: string
  sqlite: (i: number, now: number) => SQLInputValue
  /** SQL over g.i (bigint) and $1 (now). */
  pg: string
}

const status = (i: number): string => {
  const r = i % 100
  return r < 93 ? 'clean' : r < 96 ? 'infected' : r < 98 ? 'unscannable' : r < 99 ? 'failed' : 'pending'
}
const PG_STATUS = `CASE WHEN g.i % 100 < 93 THEN 'clean' WHEN g.i % 100 < 96 THEN 'infected' WHEN g.i % 100 < 98 THEN 'unscannable' WHEN g.i % 100 < 99 THEN 'failed' ELSE 'pending' END`
const created = (i: number, now: number): number => now - 90 * DAY + i
const verdictOf = (s: string): string | null =>
  s === 'clean' || s === 'infected' || s === 'unscannable'
    ? JSON.stringify({ result: s, signature: s === 'infected' ? 'Win.Test.EICAR_HDB-1' : null, reason: s === 'unscannable' ? 'scan limits exceeded' : null, engine: 'ClamAV 1.4.6', signatureVersion: 27_830 })
    : null

const COLUMNS: Column[] = [
  { name: 'id', sqlite: (i) => i.toString(16).padStart(32, '0'), pg: `lpad(to_hex(g.i), 32, '0')` },
  { name: 'object_key', sqlite: (i) => `objects/${i.toString(16).padStart(32, '0')}`, pg: `'objects/' || lpad(to_hex(g.i), 32, '0')` },
  { name: 'size', sqlite: (i) => 10_000 + (i % 5_000_000), pg: '10000 + g.i % 5000000' },
  { name: 'sha256', sqlite: (i) => i.toString(16).padStart(64, '0'), pg: `lpad(to_hex(g.i), 64, '0')` },
  { name: 'filename', sqlite: () => 'scan.pdf', pg: `'scan.pdf'` },
  { name: 'content_type', sqlite: () => 'application/pdf', pg: `'application/pdf'` },
  { name: 'status', sqlite: (i) => status(i), pg: PG_STATUS },
  { name: 'created_at', sqlite: created, pg: `$1::bigint - ${90 * DAY} + g.i` },
  { name: 'updated_at', sqlite: (i, now) => created(i, now) + 1000, pg: `$1::bigint - ${90 * DAY} + g.i + 1000` },
  { name: 'scanned_at', sqlite: (i, now) => (status(i) === 'pending' ? null : created(i, now) + 1000), pg: `CASE WHEN g.i % 100 = 99 THEN NULL ELSE $1::bigint - ${90 * DAY} + g.i + 1000 END` },
  {
    name: 'verdict',
    sqlite: (i) => verdictOf(status(i)),
    pg: `CASE WHEN g.i % 100 < 98 THEN json_build_object('result', ${PG_STATUS}, 'signature', NULL, 'reason', NULL, 'engine', 'ClamAV 1.4.6', 'signatureVersion', 27830)::text END`
  },
  { name: 'scanned_version', sqlite: (i) => (status(i) === 'pending' ? null : `"etag-${i}"`), pg: `CASE WHEN g.i % 100 = 99 THEN NULL ELSE '"etag-' || g.i || '"' END` },
  { name: 'attempts', sqlite: () => 0, pg: '0' },
  { name: 'last_error', sqlite: () => null, pg: 'NULL' },
  { name: 'run_at', sqlite: (i, now) => (status(i) === 'pending' ? now : created(i, now)), pg: `CASE WHEN g.i % 100 = 99 THEN $1::bigint ELSE $1::bigint - ${90 * DAY} + g.i END` },
  { name: 'lease_owner', sqlite: () => null, pg: 'NULL' },
  { name: 'lease_token', sqlite: () => null, pg: 'NULL' },
  {
    // 5% due (within the last day), 88% due within the next 30 days, the rest not scheduled.
    name: 'next_scan_at',
    sqlite: (i, now) => {
      const r = i % 100
      return r < 5 ? now - 1 - (i % DAY) : r < 93 ? now + 3_600_000 + ((i * 7919) % (30 * DAY)) : null
    },
    pg: `CASE WHEN g.i % 100 < 5 THEN $1::bigint - 1 - g.i % ${DAY} WHEN g.i % 100 < 93 THEN $1::bigint + 3600000 + (g.i * 7919) % ${30 * DAY} ELSE NULL END`
  },
  { name: 'location', sqlite: (i) => (status(i) === 'clean' ? 'production' : 'quarantine'), pg: `CASE WHEN g.i % 100 < 93 THEN 'production' ELSE 'quarantine' END` },
  { name: 'released', sqlite: () => null, pg: 'NULL' }
]

interface Prepared {
  store: StateStore
  due: number
  insertSeconds: number
  close(): Promise<void>
}

interface TableColumn {
  name: string
  required: boolean
}

/** Checks the table has next_scan_at and that the bench knows every required column. */
function plan(columns: TableColumn[]): Column[] {
  if (!columns.some((c) => c.name === 'next_scan_at')) throw new Error('uploads.next_scan_at does not exist: the rescan migration has not landed')
  const unknown = columns.filter((c) => c.required && !COLUMNS.some((k) => k.name === c.name))
  if (unknown.length > 0) {
    throw new Error(`uploads has required columns the bench does not fill: ${unknown.map((c) => c.name).join(', ')} (add them to COLUMNS in bench/scenarios/rescan-bookkeeping.ts)`)
  }
  return COLUMNS.filter((k) => columns.some((c) => c.name === k.name))
}

const dueOf = (records: number): number => Math.floor(records / 100) * 5 + Math.min(records % 100, 5)

async function prepare(ctx: Context, name: string, records: number): Promise<Prepared> {
  const now = Date.now()
  const started = performance.now()
  if (name === 'SQLite') {
    const path = join(ctx.dir, 's6.db')
    const migrated = sqliteStateStore(path)
    await migrated.migrate()
    await migrated.close()
    // One transaction, one prepared INSERT: the way a bulk import would load it.
    const db = new DatabaseSync(path)
    try {
      const info = db.prepare('PRAGMA table_info(uploads)').all() as Array<{ name: string; notnull: number; dflt_value: unknown; pk: number }>
      const columns = plan(info.map((c) => ({ name: c.name, required: (c.notnull === 1 || c.pk === 1) && c.dflt_value === null })))
      const insert = db.prepare(`INSERT INTO uploads (${columns.map((c) => c.name).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`)
      db.exec('BEGIN')
      for (let i = 0; i < records; i++) insert.run(...columns.map((c) => c.sqlite(i, now)))
      db.exec('COMMIT')
    } finally {
      db.close()
    }
    const store = sqliteStateStore(path)
    return { store, due: dueOf(records), insertSeconds: round((performance.now() - started) / 1000, 1), close: () => store.close() }
  }
  const schema = `bench_${randomBytes(6).toString('hex')}`
  const drop = ctx.resources.defer(`schema ${schema}`, () => pgExec(ctx.pgUrl, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`).then(() => undefined))
  const store = pgStateStore({ url: ctx.pgUrl, schema, poolSize: 4 })
  try {
    await store.migrate()
    const info = await pgExec<{ column_name: string; is_nullable: string; column_default: string | null }>(
      ctx.pgUrl,
      'SELECT column_name, is_nullable, column_default FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2',
      [schema, 'uploads']
    )
    const columns = plan(info.map((c) => ({ name: c.column_name, required: c.is_nullable === 'NO' && c.column_default === null })))
    await pgExec(
      ctx.pgUrl,
      `INSERT INTO "${schema}".uploads (${columns.map((c) => c.name).join(', ')})
       SELECT ${columns.map((c) => c.pg).join(', ')} FROM generate_series(0::bigint, ${records - 1}::bigint) AS g(i)`,
      [now]
    )
    // What autovacuum would have done by the time a table holds a million rows.
    await pgExec(ctx.pgUrl, `ANALYZE "${schema}".uploads`)
  } catch (err) {
    await store.close()
    await drop()
    throw err
  }
  return {
    store,
    due: dueOf(records),
    insertSeconds: round((performance.now() - started) / 1000, 1),
    close: async () => {
      await store.close()
      await drop()
    }
  }
}

async function pgExec<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<R>(sql, values)).rows
  } finally {
    await client.end()
  }
}
