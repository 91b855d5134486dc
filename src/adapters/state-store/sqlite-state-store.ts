import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import { claimableStatuses, type StoredStatus } from '../../domain/upload-state.ts'
import {
  StateUnavailableError,
  type Claim,
  type NewUpload,
  type QueueStats,
  type ScanRecord,
  type StateStore,
  type StatusChange,
  type UploadRecord,
  type Verdict
} from '../../ports/state-store.ts'
import { migrations } from './sqlite-migrations.ts'

type Row = Record<string, SQLInputValue>

const claimable = claimableStatuses.map((s) => `'${s}'`).join(', ')

/**
 * The embedded state store: one SQLite file through node:sqlite (built into Node 24, no
 * native build). WAL with synchronous=FULL, so a committed upload survives a crash.
 */
export class SqliteStateStore implements StateStore {
  readonly #db: DatabaseSync
  /** Prepared once and reused: status polls and claims run these statements all the time. */
  readonly #statements = new Map<string, StatementSync>()

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    this.#db = new DatabaseSync(path, { timeout: 5000 })
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;')
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
    this.#run(() =>
      this.#statement(
          `INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, created_at, updated_at, run_at)
           VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)`
        )
        .run(u.id, u.objectKey, u.size, u.sha256, u.filename, u.contentType, u.createdAt, u.createdAt, u.createdAt)
    )
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    const row = this.#run(() => this.#statement('SELECT * FROM uploads WHERE id = ?').get(id)) as Row | undefined
    return row ? toRecord(row) : null
  }

  async claim(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]> {
    if (limit <= 0) return []
    // One statement: pick what is due and lease it. SQLite serialises writers, so no row is claimed twice.
    const rows = this.#run(() =>
      this.#statement(
          `UPDATE uploads
              SET status = CASE status WHEN 'pending' THEN 'scanning' ELSE status END,
                  lease_owner = ?, lease_token = lower(hex(randomblob(16))), run_at = ?,
                  attempts = attempts + 1, updated_at = ?
            WHERE id IN (SELECT id FROM uploads WHERE status IN (${claimable}) AND run_at <= ? ORDER BY run_at LIMIT ?)
           RETURNING *`
        )
        .all(owner, now + leaseMs, now, now, limit)
    ) as Row[]
    return rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token) }))
  }

  async renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean> {
    const result = this.#run(() =>
      this.#statement(`UPDATE uploads SET run_at = ? WHERE id = ? AND lease_token = ? AND status IN (${claimable})`)
        .run(now + leaseMs, claim.upload.id, claim.token)
    )
    return result.changes === 1
  }

  async update(claim: Claim, change: StatusChange, now: number): Promise<boolean> {
    const sets = ['status = ?', 'updated_at = ?']
    const values: SQLInputValue[] = [change.status, now]
    if (change.verdict !== undefined) {
      sets.push('verdict = ?')
      values.push(change.verdict ? JSON.stringify(change.verdict) : null)
    }
    if (change.scannedAt !== undefined) {
      sets.push('scanned_at = ?')
      values.push(change.scannedAt)
    }
    if (change.scannedVersion !== undefined) {
      sets.push('scanned_version = ?')
      values.push(change.scannedVersion)
    }
    if (change.lastError !== undefined) {
      sets.push('last_error = ?')
      values.push(change.lastError)
    }
    if (change.resetAttempts) sets.push('attempts = 0')
    else if (change.refundAttempt) sets.push('attempts = max(attempts - 1, 0)')
    if (change.runAt !== undefined) {
      sets.push('run_at = ?')
      values.push(change.runAt)
    }
    // A job that leaves the claimed phase gives its lease back.
    if (change.status === 'pending' || !claimableStatuses.includes(change.status)) {
      sets.push('lease_owner = NULL', 'lease_token = NULL')
    }
    const result = this.#run(() =>
      this.#statement(`UPDATE uploads SET ${sets.join(', ')} WHERE id = ? AND lease_token = ? AND status = ?`)
        .run(...values, claim.upload.id, claim.token, claim.upload.status)
    )
    return result.changes === 1
  }

  async release(claim: Claim, now: number): Promise<boolean> {
    const result = this.#run(() =>
      this.#statement(
        `UPDATE uploads SET run_at = ?, lease_owner = NULL, lease_token = NULL, attempts = max(attempts - 1, 0), updated_at = ?
          WHERE id = ? AND lease_token = ? AND status IN (${claimable})`
      ).run(now, now, claim.upload.id, claim.token)
    )
    return result.changes === 1
  }

  async queueStats(): Promise<QueueStats> {
    const row = this.#run(() =>
      this.#statement(`SELECT count(*) AS depth, min(created_at) AS oldest FROM uploads WHERE status IN (${claimable})`).get()
    ) as Row
    return { depth: Number(row.depth), oldestCreatedAt: row.oldest === null ? null : Number(row.oldest) }
  }

  async recordScan(s: ScanRecord): Promise<void> {
    this.#run(() =>
      this.#statement(
          `INSERT INTO scans (upload_id, started_at, duration_ms, endpoint, engine, signature_version, outcome, signature, detail, bytes)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
        )
        .run(s.uploadId, s.startedAt, s.durationMs, s.endpoint, s.engine, s.signatureVersion, s.outcome, s.signature, s.detail, s.bytes)
    )
  }

  async listScans(uploadId: string): Promise<ScanRecord[]> {
    const rows = this.#run(() => this.#statement('SELECT * FROM scans WHERE upload_id = ? ORDER BY id').all(uploadId)) as Row[]
    return rows.map((r) => ({
      uploadId: String(r.upload_id),
      startedAt: Number(r.started_at),
      durationMs: Number(r.duration_ms),
      endpoint: r.endpoint === null ? null : String(r.endpoint),
      engine: r.engine === null ? null : String(r.engine),
      signatureVersion: r.signature_version === null ? null : Number(r.signature_version),
      outcome: String(r.outcome) as ScanRecord['outcome'],
      signature: r.signature === null ? null : String(r.signature),
      detail: r.detail === null ? null : String(r.detail),
      bytes: Number(r.bytes)
    }))
  }

  async ping(): Promise<void> {
    this.#run(() => this.#statement('SELECT 1').get())
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close()
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql)
    if (!statement) {
      statement = this.#db.prepare(sql)
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

function toRecord(row: Row): UploadRecord {
  return {
    id: String(row.id),
    objectKey: String(row.object_key),
    size: Number(row.size),
    sha256: String(row.sha256),
    filename: row.filename === null ? null : String(row.filename),
    contentType: String(row.content_type),
    status: String(row.status) as StoredStatus,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    scannedAt: row.scanned_at === null ? null : Number(row.scanned_at),
    verdict: row.verdict === null ? null : (JSON.parse(String(row.verdict)) as Verdict),
    scannedVersion: row.scanned_version === null ? null : String(row.scanned_version),
    attempts: Number(row.attempts),
    lastError: row.last_error === null ? null : String(row.last_error),
    runAt: Number(row.run_at)
  }
}
