import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import type { OutboxEvent } from '../../ports/event-outbox.ts'
import type { AuditEntry, PruneCutoffs, ScanRecord } from '../../ports/history-store.ts'
import type { Claim, QueueStats, StatusChange } from '../../ports/job-queue.ts'
import type { AdoptionClaim, RescanRecord, RescanSelection } from '../../ports/rescan-store.ts'
import { StateUnavailableError } from '../../ports/state-database.ts'
import type { StateStore } from '../../ports/state-store.ts'
import type { ReleaseRequest } from '../../ports/upload-actions.ts'
import { type BeginResult, type IdempotencyKey, type UploadIntent, UploadIntentLostError } from '../../ports/upload-intake.ts'
import type { NewUpload, UploadRecord } from '../../ports/upload-record.ts'
import {
  ABANDON_SQL,
  COMMIT_INTENT_SQL,
  DELETE_INTENT_SQL,
  EXPIRE_KEYS_SQL,
  INSERT_INTENT_SQL,
  INTENT_SQL,
  reservationState,
  RESERVE_KEY_SQL,
  SWEEPABLE_SQL,
  TAKE_OVER_KEY_SQL,
  toIntent,
  UPLOAD_SQL
} from './intent-sql.ts'
import { coverSql, type StoredSelection } from './rescan-selection-sql.ts'
import { filenameOfKey, nullableString, toAdoptionClaim, toAudit, toEvent, toRecord, toRescan, toScan, type Row } from './row-mapping.ts'
import {
  ADOPT_PROGRESS_SQL,
  CANCEL_ITEMS_SQL,
  CANCEL_RESCAN_SQL,
  QUEUE_STATS_SQL,
  EVENT_DELIVERED_SQL,
  EVENT_FAILED_SQL,
  GET_RESCAN_SQL,
  INSERT_AUDIT_SQL,
  INSERT_RESCAN_SQL,
  ITEMS_PAGE_END_SQL,
  LEAVE_RESCANS_SQL,
  LIST_AUDIT_BEFORE_SQL,
  LIST_AUDIT_SQL,
  LIST_RESCANS_SQL,
  MAKE_DUE_SQL,
  NEXT_BATCH_SQL,
  newRescanRow,
  OLD_RESCAN_SQL,
  PAGE_END_SQL,
  PRUNE_AUDIT_SQL,
  PRUNE_OUTBOX_SQL,
  PRUNE_RESCAN_ITEMS_SQL,
  PRUNE_RESCAN_SQL,
  PRUNE_SCANS_SQL,
  RELEASE_SQL,
  RENEW_LEASE_SQL,
  RESCAN_CURSOR_SQL,
  REQUEST_RELEASE_SQL,
  REQUEUE_FAILED_SQL,
  rescannable,
  RESCAN_OUTCOME_SQL,
  RETRY_FAILED_SQL,
  SCHEDULE_RESCAN_SQL,
  SqlValues,
  statusChangeSql,
  UNSCHEDULE_CANCELLED_SQL,
  queueFilter,
  type Queue
} from './shared-sql.ts'
import { migrations } from './sqlite-migrations.ts'

const NEW_TOKEN = 'lower(hex(randomblob(16)))'
/** Uploads per batch of a rescan's selection or cancellation, and rows per retention statement. */
const DEFAULT_BATCH_SIZE = 5_000

/**
 * The embedded state store: one SQLite file through node:sqlite (built into Node 24, no
 * native build). WAL with synchronous=FULL, so a committed upload survives a crash.
 * SQLite serialises writers: a single UPDATE ... RETURNING claims without handing a row out
 * twice, and BEGIN IMMEDIATE makes a multi-statement change atomic.
 * It serves one process, so its clock is the only one: the lease clock gw_now() of the shared SQL
 * is the `now` the caller passed (see #at).
 */
export class SqliteStateStore implements StateStore {
  readonly #db: DatabaseSync
  /** Prepared once and reused: status polls and claims run these statements all the time. */
  readonly #statements = new Map<string, StatementSync>()
  readonly #batchSize: number
  /** The time of the call in progress, for gw_now(); statements run synchronously within the call. */
  #clock: number | null = null

  constructor(path: string, options: { batchSize?: number } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    this.#batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
    this.#db = new DatabaseSync(path, { timeout: 5000 })
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;')
    this.#db.function('gw_now', { deterministic: false }, () => {
      if (this.#clock === null) throw new Error('gw_now() used by a statement run without the time of its call')
      return this.#clock
    })
    // PostgreSQL's LEAST, used by the shared SQL (SQLite's own is the two-argument min()).
    this.#db.function('least', { deterministic: true }, (a, b) => (Number(a) <= Number(b) ? a : b))
  }

  async migrate(): Promise<void> {
    const db = this.#db
    db.exec('BEGIN IMMEDIATE')
    try {
      db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)')
      const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null }
      const current = row.v ?? 0
      const latest = migrations.at(-1)?.version ?? 0
      if (current > latest) {
        throw new Error(`the database schema is at version ${current}, newer than this gateway knows (${latest}): upgrade the gateway`)
      }
      for (const m of migrations) {
        if (m.version <= current) continue
        db.exec(m.sql)
        db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, Date.now())
      }
      db.exec('COMMIT')
    } catch (err) {
      db.exec('ROLLBACK')
      throw err
    }
  }

  async insertUpload(u: NewUpload): Promise<void> {
    this.#insertUpload(u)
  }

  #insertUpload(u: NewUpload): void {
    this.#write(
      `INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'pending', 'quarantine', $7, $7, $7)`,
      [u.id, u.objectKey, u.size, u.sha256, u.filename, u.contentType, u.createdAt]
    )
  }

  async beginUpload(intent: UploadIntent, idempotency: IdempotencyKey | null, now: number): Promise<BeginResult> {
    return this.#transaction(() => {
      if (idempotency && this.#write(RESERVE_KEY_SQL, [idempotency.scope, idempotency.key, intent.id, now]) === 0) {
        const reservation = this.#get('SELECT * FROM idempotency_keys WHERE scope = $1 AND key = $2', [idempotency.scope, idempotency.key]) as Row
        const uploadId = reservation.upload_id
        const existing = reservationState(reservation, this.#get(UPLOAD_SQL, [uploadId]), this.#get(INTENT_SQL, [uploadId]), idempotency, now)
        if (existing) return existing
        this.#write(TAKE_OVER_KEY_SQL, [intent.id, now, idempotency.scope, idempotency.key])
      }
      this.#write(INSERT_INTENT_SQL, [intent.id, intent.objectKey, intent.createdAt])
      return { kind: 'started' } as const
    })
  }

  async commitUpload(u: NewUpload): Promise<void> {
    this.#transaction(() => {
      if (this.#write(COMMIT_INTENT_SQL, [u.id]) !== 1) throw new UploadIntentLostError(`upload ${u.id} was abandoned before its record was committed`)
      this.#insertUpload(u)
    })
  }

  async abandonUpload(id: string, now: number): Promise<void> {
    this.#write(ABANDON_SQL, [id, now])
  }

  async claimIntents(now: number, cutoff: number, retryAt: number, limit: number): Promise<UploadIntent[]> {
    if (limit <= 0) return []
    const rows = this.#all(
      `UPDATE upload_intents SET abandoned_at = COALESCE(abandoned_at, $1), sweep_after = $3
        WHERE id IN (SELECT id FROM upload_intents WHERE ${SWEEPABLE_SQL} ORDER BY sweep_after LIMIT $4)
       RETURNING *`,
      [now, cutoff, retryAt, limit]
    )
    return rows.map(toIntent)
  }

  async deleteIntent(id: string): Promise<void> {
    this.#write(DELETE_INTENT_SQL, [id])
  }

  async knownKeys(keys: string[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set()
    const list = keys.map((_, i) => `$${i + 1}`).join(', ')
    const rows = this.#run(() =>
      this.#db
        .prepare(`SELECT object_key FROM uploads WHERE object_key IN (${list}) UNION SELECT object_key FROM upload_intents WHERE object_key IN (${list})`.replace(/\$(\d+)/g, '?$1'))
        .all(...keys)
    )
    return new Set(rows.map((r) => String(r.object_key)))
  }

  async expireIdempotencyKeys(before: number, limit: number): Promise<number> {
    return this.#write(EXPIRE_KEYS_SQL, [before, limit])
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    const row = this.#get('SELECT * FROM uploads WHERE id = $1', [id])
    return row ? toRecord(row) : null
  }

  async claim(owner: string, limit: number, leaseMs: number, now: number, queue: Queue = 'uploads'): Promise<Claim[]> {
    if (limit <= 0) return []
    // One statement: pick what is due and lease it. SQLite serialises writers, so no row is claimed twice.
    const rows = this.#at(now, () => this.#all(
      `UPDATE uploads
          SET status = CASE status WHEN 'pending' THEN 'scanning' ELSE status END,
              lease_owner = $1, lease_token = ${NEW_TOKEN}, run_at = gw_now() + $2, attempts = attempts + 1, updated_at = $3
        WHERE id IN (SELECT id FROM uploads WHERE ${queueFilter[queue]} AND run_at <= gw_now() ORDER BY run_at LIMIT $4)
       RETURNING *`,
      [owner, leaseMs, now, limit]
    ))
    return rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token), kind: 'scan' }))
  }

  async claimRescans(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]> {
    if (limit <= 0) return []
    // Like claim(): the status stays, the lease end is kept in next_scan_at (an expired one is due again).
    // RETURNING has no defined order in SQLite: the oldest due are chosen, not returned in order.
    const rows = this.#at(now, () => this.#all(
      `UPDATE uploads
          SET lease_owner = $1, lease_token = ${NEW_TOKEN}, next_scan_at = gw_now() + $2, attempts = attempts + 1, updated_at = $3
        WHERE id IN (SELECT id FROM uploads WHERE status IN (${rescannable}) AND next_scan_at <= gw_now() ORDER BY next_scan_at LIMIT $4)
       RETURNING *`,
      [owner, leaseMs, now, limit]
    ))
    return rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token), kind: 'rescan' }))
  }

  async renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean> {
    return this.#at(now, () => this.#write(RENEW_LEASE_SQL, [leaseMs, claim.upload.id, claim.token])) === 1
  }

  async update(claim: Claim, change: StatusChange, now: number): Promise<boolean> {
    const v = new SqlValues('sqlite')
    const sql = statusChangeSql(claim, change, now, v)
    const events = change.events ?? []
    if (events.length === 0 && change.rescanOutcome === undefined) return this.#at(now, () => this.#write(sql, v.values)) === 1
    // The events and the rescan outcome are written with the change, or not at all.
    return this.#at(now, () => this.#transaction(() => {
      if (this.#write(sql, v.values) !== 1) return false
      for (const e of events) {
        this.#write(
          'INSERT INTO outbox (id, type, data, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING',
          [e.id, e.type, JSON.stringify(e.data), e.createdAt]
        )
      }
      if (change.rescanOutcome !== undefined) this.#write(RESCAN_OUTCOME_SQL, [change.rescanOutcome, now, claim.upload.id])
      return true
    }))
  }

  async giveBack(claim: Claim, now: number): Promise<boolean> {
    return this.#at(now, () => this.#write(RELEASE_SQL, [now, claim.upload.id, claim.token])) === 1
  }

  async queueStats(): Promise<QueueStats> {
    const row = this.#get(QUEUE_STATS_SQL) as Row
    return { depth: Number(row.depth), oldestCreatedAt: row.oldest === null ? null : Number(row.oldest) }
  }

  async requestRelease(id: string, release: ReleaseRequest, now: number): Promise<UploadRecord | null> {
    return this.#at(now, () => this.#transaction(() => {
      const row = this.#get(REQUEST_RELEASE_SQL, [now, release.by, release.reason, id, release.from ?? null, release.signature ?? null, release.version ?? null])
      if (!row) return null
      this.#write(LEAVE_RESCANS_SQL, [id])
      return toRecord(row)
    }))
  }

  async scheduleRescan(id: string, now: number): Promise<boolean> {
    return this.#at(now, () => this.#write(SCHEDULE_RESCAN_SQL, [now, id])) === 1
  }

  async retryFailed(id: string, now: number): Promise<boolean> {
    return this.#at(now, () => this.#write(RETRY_FAILED_SQL, [now, id])) === 1
  }

  async requeueFailed(now: number, limit: number): Promise<number> {
    return this.#at(now, () => this.#write(REQUEUE_FAILED_SQL, [now, limit]))
  }

  async createRescan(
    rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number },
    selection: RescanSelection
  ): Promise<RescanRecord> {
    const v = new SqlValues('sqlite')
    // Built first: an invalid selection (RangeError) writes nothing. Ids are covered at once (at
    // most MAX_RESCAN_IDS); other selections batch by batch, the first one here.
    const ids = selection.kind === 'ids' ? coverSql(rescan.id, selection, v) : null
    const row = newRescanRow(rescan, selection)
    this.#at(rescan.createdAt, () => this.#transaction(() => {
      this.#write(INSERT_RESCAN_SQL, row)
      if (ids !== null) {
        this.#write(ids, v.values)
        this.#write(MAKE_DUE_SQL, [rescan.createdAt, rescan.id, '', null])
      } else if (selection.kind !== 'adopt') {
        this.#coverBatch(rescan.id, selection, '', rescan.createdAt)
      }
    }))
    return (await this.getRescan(rescan.id)) as RescanRecord
  }

  async getRescan(id: string): Promise<RescanRecord | null> {
    const row = this.#get(GET_RESCAN_SQL, [id])
    return row ? toRescan(row) : null
  }

  async listRescans(limit: number): Promise<RescanRecord[]> {
    return this.#all(LIST_RESCANS_SQL, [limit]).map(toRescan)
  }

  async cancelRescan(id: string, now: number, intervalMs: number): Promise<boolean> {
    return this.#transaction(() => {
      if (this.#write(CANCEL_RESCAN_SQL, [now, id]) !== 1) return false
      this.#unwindBatch(id, '', intervalMs)
      return true
    })
  }

  async advanceRescans(now: number, intervalMs: number): Promise<boolean> {
    return this.#at(now, () => this.#transaction(() => {
      const row = this.#get(NEXT_BATCH_SQL)
      if (!row) return false
      const id = String(row.id)
      const cursor = String(row.cursor_id)
      if (row.state === 'cancelled') this.#unwindBatch(id, cursor, intervalMs)
      else this.#coverBatch(id, JSON.parse(String(row.selection)) as StoredSelection, cursor, now)
      return true
    }))
  }

  /** Covers the next batch of uploads after `after` and makes them due; the rescan runs once none are left. */
  #coverBatch(id: string, selection: StoredSelection, after: string, now: number): void {
    const upTo = nullableString(this.#get(PAGE_END_SQL, [after, this.#batchSize - 1])?.id)
    const v = new SqlValues('sqlite')
    this.#write(coverSql(id, selection, v, { after, upTo }), v.values)
    this.#write(MAKE_DUE_SQL, [now, id, after, upTo])
    this.#write(RESCAN_CURSOR_SQL, [id, upTo, upTo === null ? 'running' : 'listing'])
  }

  /** Unwinds the next batch of a cancelled rescan's uploads (see CANCEL_RESCAN_SQL). */
  #unwindBatch(id: string, after: string, intervalMs: number): void {
    const upTo = nullableString(this.#get(ITEMS_PAGE_END_SQL, [id, after, this.#batchSize - 1])?.id)
    this.#write(UNSCHEDULE_CANCELLED_SQL, [intervalMs, id, after, upTo])
    this.#write(CANCEL_ITEMS_SQL, [id, after, upTo])
    this.#write(RESCAN_CURSOR_SQL, [id, upTo, 'cancelled'])
  }

  async prune(cutoffs: PruneCutoffs): Promise<number> {
    const n = this.#batchSize
    // Each statement is its own short write: the single writer is never held for long.
    let deleted = this.#write(PRUNE_OUTBOX_SQL, [cutoffs.historyBefore, n]) + this.#write(PRUNE_SCANS_SQL, [cutoffs.historyBefore, n])
    if (cutoffs.auditBefore !== null) deleted += this.#write(PRUNE_AUDIT_SQL, [cutoffs.auditBefore, n])
    const old = this.#get(OLD_RESCAN_SQL, [cutoffs.historyBefore])
    if (old) {
      const items = this.#write(PRUNE_RESCAN_ITEMS_SQL, [old.id, n])
      deleted += items > 0 ? items : this.#write(PRUNE_RESCAN_SQL, [old.id])
    }
    return deleted
  }

  async claimAdoption(owner: string, leaseMs: number, now: number): Promise<AdoptionClaim | null> {
    const row = this.#at(now, () => this.#get(
      `UPDATE rescans SET lease_owner = $1, lease_token = ${NEW_TOKEN}, lease_until = gw_now() + $2
        WHERE id = (SELECT id FROM rescans WHERE state = 'listing' AND bucket IS NOT NULL AND (lease_token IS NULL OR lease_until <= gw_now()) ORDER BY created_at, id LIMIT 1)
       RETURNING *`,
      [owner, leaseMs]
    ))
    return row ? toAdoptionClaim(row) : null
  }

  async adoptPage(
    claim: AdoptionClaim,
    objects: { id: string; key: string; size: number; contentType: string }[],
    nextToken: string | null,
    leaseMs: number,
    now: number
  ): Promise<number | null> {
    return this.#at(now, () => this.#transaction(() => {
      const progress = [nextToken, nextToken === null ? 'running' : 'listing', leaseMs, claim.rescanId, claim.token]
      if (this.#write(ADOPT_PROGRESS_SQL, progress) !== 1) return null
      let added = 0
      for (const o of objects) {
        // A key the gateway knows already (an upload, or an earlier run of this page) is skipped.
        const inserted = this.#write(
          `INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at)
           VALUES ($1, $2, $3, '', $4, $5, 'pending', 'production', $6, $6, $6) ON CONFLICT (object_key) DO NOTHING`,
          [o.id, o.key, o.size, filenameOfKey(o.key), o.contentType, now]
        )
        if (inserted !== 1) continue
        this.#write('INSERT INTO rescan_items (rescan_id, upload_id) VALUES ($1, $2)', [claim.rescanId, o.id])
        added++
      }
      return added
    }))
  }

  async recordAudit(e: AuditEntry): Promise<void> {
    this.#write(INSERT_AUDIT_SQL, [e.at, e.actor, e.action, e.target, JSON.stringify(e.detail)])
  }

  async listAudit(limit: number, before?: number): Promise<AuditEntry[]> {
    const rows = before === undefined ? this.#all(LIST_AUDIT_SQL, [limit]) : this.#all(LIST_AUDIT_BEFORE_SQL, [limit, before])
    return rows.map(toAudit)
  }

  async claimEvents(owner: string, limit: number, leaseMs: number, now: number): Promise<OutboxEvent[]> {
    if (limit <= 0) return []
    const rows = this.#at(now, () => this.#all(
      `UPDATE outbox SET lease_owner = $1, lease_token = ${NEW_TOKEN}, next_attempt_at = gw_now() + $2, attempts = attempts + 1
        WHERE seq IN (SELECT seq FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= gw_now() ORDER BY seq LIMIT $3)
       RETURNING *`,
      [owner, leaseMs, limit]
    ))
    return rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(toEvent)
  }

  async eventDelivered(event: OutboxEvent, now: number): Promise<void> {
    this.#write(EVENT_DELIVERED_SQL, [now, event.id, event.token])
  }

  async eventFailed(event: OutboxEvent, error: string, nextAttemptAt: number): Promise<void> {
    this.#write(EVENT_FAILED_SQL, [error, nextAttemptAt, event.id, event.token])
  }

  async recordScan(s: ScanRecord): Promise<void> {
    this.#write(
      `INSERT INTO scans (upload_id, started_at, duration_ms, endpoint, engine, signature_version, outcome, signature, detail, bytes)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [s.uploadId, s.startedAt, s.durationMs, s.endpoint, s.engine, s.signatureVersion, s.outcome, s.signature, s.detail, s.bytes]
    )
  }

  async listScans(uploadId: string): Promise<ScanRecord[]> {
    return this.#all('SELECT * FROM scans WHERE upload_id = $1 ORDER BY id', [uploadId]).map(toScan)
  }

  async ping(): Promise<void> {
    this.#get('SELECT 1')
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close()
  }

  /** Runs fn with gw_now() answering `now`: statements run synchronously, so no other call interleaves. */
  #at<T>(now: number, fn: () => T): T {
    this.#clock = now
    try {
      return fn()
    } finally {
      this.#clock = null
    }
  }

  /** Runs a write; how many rows it changed. */
  #write(sql: string, values: unknown[] = []): number {
    return Number(this.#run(() => this.#statement(sql).run(...(values as SQLInputValue[]))).changes)
  }

  #get(sql: string, values: unknown[] = []): Row | undefined {
    return this.#run(() => this.#statement(sql).get(...(values as SQLInputValue[])))
  }

  #all(sql: string, values: unknown[] = []): Row[] {
    return this.#run(() => this.#statement(sql).all(...(values as SQLInputValue[])))
  }

  /** BEGIN IMMEDIATE takes the write lock at once, so the statements in fn see and change one state. */
  #transaction<T>(fn: () => T): T {
    this.#run(() => this.#db.exec('BEGIN IMMEDIATE'))
    try {
      const result = fn()
      this.#run(() => this.#db.exec('COMMIT'))
      return result
    } catch (err) {
      try {
        this.#db.exec('ROLLBACK')
      } catch {
        // Nothing to roll back (the COMMIT failed and ended it, or the database is closed).
      }
      throw err
    }
  }

  /** Shared SQL is written with $1 placeholders; SQLite binds ?1 by number just the same. */
  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql)
    if (!statement) {
      statement = this.#db.prepare(sql.replace(/\$(\d+)/g, '?$1'))
      this.#statements.set(sql, statement)
    }
    return statement
  }

  /** SQLite errors (disk full, locked past the busy timeout, closed) mean "try again later" to callers. */
  #run<T>(fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      throw new StateUnavailableError(`state store: ${(err as Error).message}`, { cause: err })
    }
  }
}
