import pg from 'pg'
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
import { migrations } from './pg-migrations.ts'

type Row = Record<string, unknown>

export interface PgStateStoreOptions {
  url: string
  /** Every table lives in this schema (created by migrate()). */
  schema: string
  poolSize: number
  connectTimeoutMs?: number
  statementTimeoutMs?: number
  /** Shown in pg_stat_activity. */
  applicationName?: string
}

const claimable = claimableStatuses.map((s) => `'${s}'`).join(', ')

// Pick what is due and lease it, in one statement. SKIP LOCKED lets concurrent claimers (other
// replicas) pass over rows another claim is taking instead of queueing behind it; a row claimed
// and committed meanwhile is rechecked against the WHERE clause and dropped, so none goes out twice.
// RETURNING has no defined order: the final SELECT gives the rows back oldest due first.
const CLAIM_SQL = `
  WITH due AS (
    SELECT id, run_at FROM uploads
     WHERE status IN (${claimable}) AND run_at <= $1
     ORDER BY run_at LIMIT $2
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE uploads
       SET status = CASE uploads.status WHEN 'pending' THEN 'scanning' ELSE uploads.status END,
           lease_owner = $3, lease_token = gen_random_uuid()::text, run_at = $4,
           attempts = uploads.attempts + 1, updated_at = $1
      FROM due
     WHERE uploads.id = due.id
    RETURNING uploads.*, due.run_at AS due_at
  )
  SELECT * FROM claimed ORDER BY due_at, id`

/**
 * The shared state store: PostgreSQL through a pg.Pool, so several gateway replicas can claim
 * from one queue. Same semantics and fencing as the SQLite store.
 */
export class PgStateStore implements StateStore {
  readonly #pool: pg.Pool
  readonly #schema: string
  #closing: Promise<void> | undefined

  constructor(options: PgStateStoreOptions) {
    // Validated, not just quoted: it goes into the startup options and into CREATE SCHEMA.
    if (!/^[a-z_][a-z0-9_]*$/.test(options.schema)) throw new Error(`invalid PostgreSQL schema name: ${JSON.stringify(options.schema)}`)
    this.#schema = options.schema
    const statementTimeoutMs = options.statementTimeoutMs ?? 10_000
    const { connectionString, urlOptions } = splitOptions(options.url)
    this.#pool = new pg.Pool({
      connectionString,
      // search_path as a startup parameter: set before any query on every connection, reconnects included.
      options: [urlOptions, `-c search_path="${options.schema}"`].filter(Boolean).join(' '),
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      // The server cancels slow statements; the client-side timeout covers a server that went silent.
      statement_timeout: statementTimeoutMs,
      query_timeout: statementTimeoutMs + 1_000,
      keepAlive: true,
      application_name: options.applicationName
    })
    // An idle client whose connection dies (server restart, killed backend) is dropped by the pool;
    // without a listener the 'error' event would crash the process. The next query opens a new one.
    this.#pool.on('error', () => {})
  }

  async migrate(): Promise<void> {
    const client = await this.#guard(() => this.#pool.connect())
    // A checked-out client has no pool error listener: a connection lost between statements must not crash us.
    const onError = (): void => {}
    client.on('error', onError)
    let failed = false
    try {
      await this.#guard(() => client.query('BEGIN'))
      // Replicas starting together queue here, so only one creates the schema (a concurrent
      // CREATE SCHEMA IF NOT EXISTS can still fail on the unique name) and applies each migration.
      await this.#guard(() => client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`quarantine-gateway:migrate:${this.#schema}`]))
      await this.#guard(() => client.query(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`))
      await this.#guard(() => client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)'))
      const { rows } = await this.#guard(() => client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations'))
      const current = rows[0]?.v ?? 0
      const latest = migrations.at(-1)?.version ?? 0
      if (current > latest) {
        throw new Error(`the database schema is at version ${current}, newer than this gateway knows (${latest}): upgrade the gateway`)
      }
      for (const m of migrations) {
        if (m.version <= current) continue
        await this.#guard(() => client.query(m.sql))
        await this.#guard(() => client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, Date.now()]))
      }
      await this.#guard(() => client.query('COMMIT'))
    } catch (err) {
      failed = true
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.off('error', onError)
      // A client that failed mid-transaction is destroyed rather than reused.
      client.release(failed)
    }
  }

  async insertUpload(u: NewUpload): Promise<void> {
    await this.#query(
      `INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, created_at, updated_at, run_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $7)`,
      [u.id, u.objectKey, u.size, u.sha256, u.filename, u.contentType, u.createdAt]
    )
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    const { rows } = await this.#query('SELECT * FROM uploads WHERE id = $1', [id])
    return rows[0] ? toRecord(rows[0]) : null
  }

  async claim(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]> {
    if (limit <= 0) return []
    const { rows } = await this.#query(CLAIM_SQL, [now, limit, owner, now + leaseMs])
    return rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token) }))
  }

  async renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(
      `UPDATE uploads SET run_at = $1 WHERE id = $2 AND lease_token = $3 AND status IN (${claimable})`,
      [now + leaseMs, claim.upload.id, claim.token]
    )
    return rowCount === 1
  }

  async update(claim: Claim, change: StatusChange, now: number): Promise<boolean> {
    const values: unknown[] = [claim.upload.id, claim.token, claim.upload.status, change.status, now]
    const sets = ['status = $4', 'updated_at = $5']
    const set = (column: string, value: unknown): void => {
      values.push(value)
      sets.push(`${column} = $${values.length}`)
    }
    if (change.verdict !== undefined) set('verdict', change.verdict ? JSON.stringify(change.verdict) : null)
    if (change.scannedAt !== undefined) set('scanned_at', change.scannedAt)
    if (change.scannedVersion !== undefined) set('scanned_version', change.scannedVersion)
    if (change.lastError !== undefined) set('last_error', change.lastError)
    if (change.resetAttempts) sets.push('attempts = 0')
    else if (change.refundAttempt) sets.push('attempts = GREATEST(attempts - 1, 0)')
    if (change.runAt !== undefined) set('run_at', change.runAt)
    // A job that leaves the claimed phase gives its lease back.
    if (change.status === 'pending' || !claimableStatuses.includes(change.status)) {
      sets.push('lease_owner = NULL', 'lease_token = NULL')
    }
    const { rowCount } = await this.#query(`UPDATE uploads SET ${sets.join(', ')} WHERE id = $1 AND lease_token = $2 AND status = $3`, values)
    return rowCount === 1
  }

  async release(claim: Claim, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(
      `UPDATE uploads SET run_at = $1, lease_owner = NULL, lease_token = NULL, attempts = GREATEST(attempts - 1, 0), updated_at = $1
        WHERE id = $2 AND lease_token = $3 AND status IN (${claimable})`,
      [now, claim.upload.id, claim.token]
    )
    return rowCount === 1
  }

  async queueStats(): Promise<QueueStats> {
    const { rows: [row] } = await this.#query(`SELECT count(*) AS depth, min(created_at) AS oldest FROM uploads WHERE status IN (${claimable})`)
    return { depth: Number(row?.depth), oldestCreatedAt: row?.oldest == null ? null : Number(row.oldest) }
  }

  async recordScan(s: ScanRecord): Promise<void> {
    await this.#query(
      `INSERT INTO scans (upload_id, started_at, duration_ms, endpoint, engine, signature_version, outcome, signature, detail, bytes)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [s.uploadId, s.startedAt, s.durationMs, s.endpoint, s.engine, s.signatureVersion, s.outcome, s.signature, s.detail, s.bytes]
    )
  }

  async listScans(uploadId: string): Promise<ScanRecord[]> {
    const { rows } = await this.#query('SELECT * FROM scans WHERE upload_id = $1 ORDER BY id', [uploadId])
    return rows.map((r) => ({
      uploadId: String(r.upload_id),
      startedAt: Number(r.started_at),
      durationMs: Number(r.duration_ms),
      endpoint: nullableString(r.endpoint),
      engine: nullableString(r.engine),
      signatureVersion: r.signature_version === null ? null : Number(r.signature_version),
      outcome: String(r.outcome) as ScanRecord['outcome'],
      signature: nullableString(r.signature),
      detail: nullableString(r.detail),
      bytes: Number(r.bytes)
    }))
  }

  async ping(): Promise<void> {
    await this.#query('SELECT 1')
  }

  async close(): Promise<void> {
    this.#closing ??= this.#pool.end()
    await this.#closing
  }

  #query(sql: string, values?: unknown[]): Promise<pg.QueryResult<Row>> {
    return this.#guard(() => this.#pool.query<Row>(sql, values))
  }

  /** Connection and query failures (refused, terminated, timed out, pool closed) mean "try again later" to callers. */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw new StateUnavailableError(`state store: ${(err as Error).message}`, { cause: err })
    }
  }
}

/**
 * pg lets a connection string's own ?options= replace the options we pass (search_path with
 * them): take it out of the URL and keep it in front of ours instead.
 */
function splitOptions(connectionString: string): { connectionString: string; urlOptions: string | null } {
  if (!/[?&]options=/.test(connectionString)) return { connectionString, urlOptions: null }
  const url = new URL(connectionString)
  const urlOptions = url.searchParams.get('options')
  url.searchParams.delete('options')
  return { connectionString: url.toString(), urlOptions }
}

function nullableString(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value)
}

/** BIGINT columns come back from pg as strings: every number is converted here. */
function toRecord(row: Row): UploadRecord {
  return {
    id: String(row.id),
    objectKey: String(row.object_key),
    size: Number(row.size),
    sha256: String(row.sha256),
    filename: nullableString(row.filename),
    contentType: String(row.content_type),
    status: String(row.status) as StoredStatus,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    scannedAt: row.scanned_at === null ? null : Number(row.scanned_at),
    verdict: row.verdict === null ? null : (JSON.parse(String(row.verdict)) as Verdict),
    scannedVersion: nullableString(row.scanned_version),
    attempts: Number(row.attempts),
    lastError: nullableString(row.last_error),
    runAt: Number(row.run_at)
  }
}
