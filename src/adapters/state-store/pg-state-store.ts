import pg from 'pg'
import type { OutboxEvent } from '../../ports/event-outbox.ts'
import type { AuditEntry, PruneCutoffs, ScanRecord } from '../../ports/history-store.ts'
import type { Claim, QueueStats, StatusChange } from '../../ports/job-queue.ts'
import type { AdoptionClaim, RescanRecord, RescanSelection } from '../../ports/rescan-store.ts'
import { StateUnavailableError } from '../../ports/state-database.ts'
import type { StateStore } from '../../ports/state-store.ts'
import type { ReleaseRequest } from '../../ports/upload-actions.ts'
import { type BeginResult, type IdempotencyKey, type UploadIntent, UploadIntentLostError } from '../../ports/upload-intake.ts'
import type { NewUpload, UploadRecord } from '../../ports/upload-record.ts'
import { migrations } from './pg-migrations.ts'
import { ADOPT_OBJECTS_SQL, CLAIM_ADOPTION_SQL, CLAIM_EVENTS_SQL, CLAIM_RESCANS_SQL, claimSql } from './pg-statements.ts'
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
import { filenameOfKey, toAdoptionClaim, toAudit, toEvent, toRecord, toRescan, toScan, type Row } from './row-mapping.ts'
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
  LIST_AUDIT_BEFORE_SQL,
  LIST_AUDIT_SQL,
  LIST_RESCANS_SQL,
  MAKE_DUE_SQL,
  NEXT_BATCH_SQL,
  newRescanRow,
  notCancelled,
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
  RETRY_FAILED_SQL,
  SCHEDULE_RESCAN_SQL,
  SqlValues,
  statusChangeSql,
  UNSCHEDULE_CANCELLED_SQL,
  type Queue
} from './shared-sql.ts'

const INSERT_UPLOAD_SQL = `
  INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at)
  VALUES ($1, $2, $3, $4, $5, $6, 'pending', 'quarantine', $7, $7, LEAST($7, gw_now()))`

type Query = (sql: string, values?: unknown[]) => Promise<pg.QueryResult<Row>>

/** Uploads per batch of a rescan's selection or cancellation, and rows per retention statement. */
const DEFAULT_BATCH_SIZE = 5_000
/** setTimeout's largest delay (about 24 days): "no client-side timeout" for pg, which takes 0 as "the pool's". */
const UNTIMED_MS = 2 ** 31 - 1

export interface PgStateStoreOptions {
  url: string
  /** Every table lives in this schema (created by migrate()). */
  schema: string
  poolSize: number
  connectTimeoutMs?: number
  statementTimeoutMs?: number
  /** Shown in pg_stat_activity. */
  applicationName?: string
  /** Uploads a rescan covers or unwinds per transaction (see advanceRescans), rows pruned per statement. */
  batchSize?: number
}

/**
 * The shared state store: PostgreSQL through a pg.Pool, so several gateway replicas can claim
 * from one queue. Same semantics and fencing as the SQLite store.
 */
export class PgStateStore implements StateStore {
  readonly #pool: pg.Pool
  readonly #schema: string
  readonly #batchSize: number
  #closing: Promise<void> | undefined

  constructor(options: PgStateStoreOptions) {
    // Validated, not just quoted: it goes into the startup options and into CREATE SCHEMA.
    if (!/^[a-z_][a-z0-9_]*$/.test(options.schema)) throw new Error(`invalid PostgreSQL schema name: ${JSON.stringify(options.schema)}`)
    this.#schema = options.schema
    this.#batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
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
    await this.#transaction(async (q) => {
      // A migration may rewrite or index every row of a big table: it runs without the statement
      // timeout (and without the client-side one, see #transaction), once, at start-up.
      await q('SET LOCAL statement_timeout = 0')
      // Replicas starting together queue here, so only one creates the schema (a concurrent
      // CREATE SCHEMA IF NOT EXISTS can still fail on the unique name) and applies each migration.
      await q('SELECT pg_advisory_xact_lock(hashtext($1))', [`quarantine-gateway:migrate:${this.#schema}`])
      await q(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`)
      await q('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)')
      const { rows } = await q('SELECT max(version) AS v FROM schema_migrations')
      const current = Number(rows[0]?.v ?? 0)
      const latest = migrations.at(-1)?.version ?? 0
      if (current > latest) {
        throw new Error(`the database schema is at version ${current}, newer than this gateway knows (${latest}): upgrade the gateway`)
      }
      for (const m of migrations) {
        if (m.version <= current) continue
        await q(m.sql)
        await q('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, Date.now()])
      }
    }, { untimed: true })
  }

  async insertUpload(u: NewUpload): Promise<void> {
    await this.#query(INSERT_UPLOAD_SQL, [u.id, u.objectKey, u.size, u.sha256, u.filename, u.contentType, u.createdAt])
  }

  async beginUpload(intent: UploadIntent, idempotency: IdempotencyKey | null, now: number): Promise<BeginResult> {
    return this.#transaction(async (q) => {
      if (idempotency && (await q(RESERVE_KEY_SQL, [idempotency.scope, idempotency.key, intent.id, now])).rowCount === 0) {
        // Locked: of two retries that find the same abandoned reservation, one takes it over, the other sees it in flight.
        const { rows: [reservation] } = await q('SELECT * FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE', [idempotency.scope, idempotency.key])
        if (reservation) {
          const uploadId = reservation.upload_id
          const { rows: [upload] } = await q(UPLOAD_SQL, [uploadId])
          const { rows: [known] } = await q(INTENT_SQL, [uploadId])
          const existing = reservationState(reservation, upload, known, idempotency, now)
          if (existing) return existing
          await q(TAKE_OVER_KEY_SQL, [intent.id, now, idempotency.scope, idempotency.key])
        } else await q(RESERVE_KEY_SQL, [idempotency.scope, idempotency.key, intent.id, now]) // expired and deleted meanwhile
      }
      await q(INSERT_INTENT_SQL, [intent.id, intent.objectKey, intent.createdAt])
      return { kind: 'started' } as const
    })
  }

  async commitUpload(u: NewUpload): Promise<void> {
    await this.#transaction(async (q) => {
      if ((await q(COMMIT_INTENT_SQL, [u.id])).rowCount !== 1) throw new UploadIntentLostError(`upload ${u.id} was abandoned before its record was committed`)
      await q(INSERT_UPLOAD_SQL, [u.id, u.objectKey, u.size, u.sha256, u.filename, u.contentType, u.createdAt])
    })
  }

  async abandonUpload(id: string, now: number): Promise<void> {
    await this.#query(ABANDON_SQL, [id, now])
  }

  async claimIntents(now: number, cutoff: number, retryAt: number, limit: number): Promise<UploadIntent[]> {
    if (limit <= 0) return []
    const { rows } = await this.#query(
      `UPDATE upload_intents SET abandoned_at = COALESCE(abandoned_at, $1), sweep_after = $3
        WHERE id IN (SELECT id FROM upload_intents WHERE ${SWEEPABLE_SQL} ORDER BY sweep_after LIMIT $4 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [now, cutoff, retryAt, limit]
    )
    return rows.map(toIntent)
  }

  async deleteIntent(id: string): Promise<void> {
    await this.#query(DELETE_INTENT_SQL, [id])
  }

  async knownKeys(keys: string[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set()
    const { rows } = await this.#query(
      'SELECT object_key FROM uploads WHERE object_key = ANY($1) UNION SELECT object_key FROM upload_intents WHERE object_key = ANY($1)',
      [keys]
    )
    return new Set(rows.map((r) => String(r.object_key)))
  }

  async expireIdempotencyKeys(before: number, limit: number): Promise<number> {
    return (await this.#query(EXPIRE_KEYS_SQL, [before, limit])).rowCount ?? 0
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    const { rows } = await this.#query('SELECT * FROM uploads WHERE id = $1', [id])
    return rows[0] ? toRecord(rows[0]) : null
  }

  async claim(owner: string, limit: number, leaseMs: number, now: number, queue: Queue = 'uploads'): Promise<Claim[]> {
    if (limit <= 0) return []
    const { rows } = await this.#query(claimSql(queue), [now, limit, owner, leaseMs])
    return rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token), kind: 'scan' }))
  }

  async claimRescans(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]> {
    if (limit <= 0) return []
    const { rows } = await this.#query(CLAIM_RESCANS_SQL, [now, limit, owner, leaseMs])
    return rows.map((row) => ({ upload: toRecord(row), owner, token: String(row.lease_token), kind: 'rescan' }))
  }

  async renewLease(claim: Claim, leaseMs: number, _now: number): Promise<boolean> {
    const { rowCount } = await this.#query(RENEW_LEASE_SQL, [leaseMs, claim.upload.id, claim.token])
    return rowCount === 1
  }

  async update(claim: Claim, change: StatusChange, now: number): Promise<boolean> {
    const v = new SqlValues('pg')
    const update = statusChangeSql(claim, change, now, v)
    const events = change.events ?? []
    if (events.length === 0 && change.rescanOutcome === undefined) return (await this.#query(update, v.values)).rowCount === 1
    // One statement, so the events and the rescan outcome are written with the change or not at all.
    const parts = [`changed AS (${update} RETURNING id)`]
    if (events.length > 0) {
      const columns = [
        `CAST(${v.add(events.map((e) => e.id))} AS TEXT[])`,
        `CAST(${v.add(events.map((e) => e.type))} AS TEXT[])`,
        `CAST(${v.add(events.map((e) => JSON.stringify(e.data)))} AS TEXT[])`,
        `CAST(${v.add(events.map((e) => e.createdAt))} AS BIGINT[])`
      ]
      parts.push(`events AS (
        INSERT INTO outbox (id, type, data, created_at, next_attempt_at)
        SELECT e.id, e.type, e.data, e.created_at, e.created_at FROM unnest(${columns.join(', ')}) AS e (id, type, data, created_at)
         WHERE EXISTS (SELECT 1 FROM changed)
        ON CONFLICT (id) DO NOTHING)`)
    }
    if (change.rescanOutcome !== undefined) {
      parts.push(`outcome AS (
        UPDATE rescan_items SET outcome = ${v.add(change.rescanOutcome)}, done_at = ${v.add(now)}
         WHERE upload_id = ${v.add(claim.upload.id)} AND outcome IS NULL AND ${notCancelled} AND EXISTS (SELECT 1 FROM changed))`)
    }
    const { rows } = await this.#query(`WITH ${parts.join(', ')} SELECT count(*) AS n FROM changed`, v.values)
    return Number(rows[0]?.n) === 1
  }

  async giveBack(claim: Claim, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(RELEASE_SQL, [now, claim.upload.id, claim.token])
    return rowCount === 1
  }

  async queueStats(): Promise<QueueStats> {
    const { rows: [row] } = await this.#query(QUEUE_STATS_SQL)
    return { depth: Number(row?.depth), oldestCreatedAt: row?.oldest == null ? null : Number(row.oldest) }
  }

  async requestRelease(
    id: string,
    release: ReleaseRequest,
    now: number
  ): Promise<UploadRecord | null> {
    const { rows } = await this.#query(
      `WITH released AS (${REQUEST_RELEASE_SQL}),
            -- LEAVE_RESCANS_SQL, for the upload released here (if it was).
            dropped AS (DELETE FROM rescan_items WHERE upload_id IN (SELECT id FROM released) AND outcome IS NULL)
       SELECT * FROM released`,
      [now, release.by, release.reason, id, release.from ?? null, release.signature ?? null, release.version ?? null]
    )
    return rows[0] ? toRecord(rows[0]) : null
  }

  async scheduleRescan(id: string, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(SCHEDULE_RESCAN_SQL, [now, id])
    return rowCount === 1
  }

  async retryFailed(id: string, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(RETRY_FAILED_SQL, [now, id])
    return rowCount === 1
  }

  async requeueFailed(now: number, limit: number): Promise<number> {
    const { rowCount } = await this.#query(REQUEUE_FAILED_SQL, [now, limit])
    return rowCount ?? 0
  }

  async createRescan(
    rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number },
    selection: RescanSelection
  ): Promise<RescanRecord> {
    const v = new SqlValues('pg')
    // Built first: an invalid selection (RangeError) writes nothing. Ids are covered at once (at
    // most MAX_RESCAN_IDS); other selections batch by batch, the first one here.
    const ids = selection.kind === 'ids' ? coverSql(rescan.id, selection, v) : null
    const row = newRescanRow(rescan, selection)
    await this.#transaction(async (q) => {
      await this.#lockRescans(q)
      await q(INSERT_RESCAN_SQL, row)
      if (ids !== null) {
        await q(ids, v.values)
        await q(MAKE_DUE_SQL, [rescan.createdAt, rescan.id, '', null])
      } else if (selection.kind !== 'adopt') {
        await this.#coverBatch(q, rescan.id, selection, '', rescan.createdAt)
      }
    })
    return (await this.getRescan(rescan.id)) as RescanRecord
  }

  async getRescan(id: string): Promise<RescanRecord | null> {
    const { rows } = await this.#query(GET_RESCAN_SQL, [id])
    return rows[0] ? toRescan(rows[0]) : null
  }

  async listRescans(limit: number): Promise<RescanRecord[]> {
    const { rows } = await this.#query(LIST_RESCANS_SQL, [limit])
    return rows.map(toRescan)
  }

  async cancelRescan(id: string, now: number, intervalMs: number): Promise<boolean> {
    return this.#transaction(async (q) => {
      await this.#lockRescans(q)
      if ((await q(CANCEL_RESCAN_SQL, [now, id])).rowCount !== 1) return false
      await this.#unwindBatch(q, id, '', intervalMs)
      return true
    })
  }

  async advanceRescans(now: number, intervalMs: number): Promise<boolean> {
    return this.#transaction(async (q) => {
      await this.#lockRescans(q)
      const row = (await q(NEXT_BATCH_SQL)).rows[0]
      if (!row) return false
      const id = String(row.id)
      const cursor = String(row.cursor_id)
      if (row.state === 'cancelled') await this.#unwindBatch(q, id, cursor, intervalMs)
      else await this.#coverBatch(q, id, JSON.parse(String(row.selection)) as StoredSelection, cursor, now)
      return true
    })
  }

  /** Covers the next batch of uploads after `after` and makes them due; the rescan runs once none are left. */
  async #coverBatch(q: Query, id: string, selection: StoredSelection, after: string, now: number): Promise<void> {
    const upTo = (await q(PAGE_END_SQL, [after, this.#batchSize - 1])).rows[0]?.id ?? null
    const v = new SqlValues('pg')
    await q(coverSql(id, selection, v, { after, upTo: upTo === null ? null : String(upTo) }), v.values)
    await q(MAKE_DUE_SQL, [now, id, after, upTo])
    await q(RESCAN_CURSOR_SQL, [id, upTo, upTo === null ? 'running' : 'listing'])
  }

  /** Unwinds the next batch of a cancelled rescan's uploads (see CANCEL_RESCAN_SQL). */
  async #unwindBatch(q: Query, id: string, after: string, intervalMs: number): Promise<void> {
    const upTo = (await q(ITEMS_PAGE_END_SQL, [id, after, this.#batchSize - 1])).rows[0]?.id ?? null
    await q(UNSCHEDULE_CANCELLED_SQL, [intervalMs, id, after, upTo])
    await q(CANCEL_ITEMS_SQL, [id, after, upTo])
    await q(RESCAN_CURSOR_SQL, [id, upTo, 'cancelled'])
  }

  async prune(cutoffs: PruneCutoffs): Promise<number> {
    const n = this.#batchSize
    const count = async (sql: string, values: unknown[]): Promise<number> => (await this.#query(sql, values)).rowCount ?? 0
    let deleted = (await count(PRUNE_OUTBOX_SQL, [cutoffs.historyBefore, n])) + (await count(PRUNE_SCANS_SQL, [cutoffs.historyBefore, n]))
    if (cutoffs.auditBefore !== null) deleted += await count(PRUNE_AUDIT_SQL, [cutoffs.auditBefore, n])
    const old = (await this.#query(OLD_RESCAN_SQL, [cutoffs.historyBefore])).rows[0]
    if (old) {
      const items = await count(PRUNE_RESCAN_ITEMS_SQL, [old.id, n])
      deleted += items > 0 ? items : await count(PRUNE_RESCAN_SQL, [old.id])
    }
    return deleted
  }

  async claimAdoption(owner: string, leaseMs: number, _now: number): Promise<AdoptionClaim | null> {
    const { rows } = await this.#query(CLAIM_ADOPTION_SQL, [owner, leaseMs])
    return rows[0] ? toAdoptionClaim(rows[0]) : null
  }

  async adoptPage(
    claim: AdoptionClaim,
    objects: { id: string; key: string; size: number; contentType: string }[],
    nextToken: string | null,
    leaseMs: number,
    now: number
  ): Promise<number | null> {
    return this.#transaction(async (q) => {
      // The fence comes first and locks the listing: a claimAdoption meanwhile skips it.
      const progress = [nextToken, nextToken === null ? 'running' : 'listing', leaseMs, claim.rescanId, claim.token]
      if ((await q(ADOPT_PROGRESS_SQL, progress)).rowCount !== 1) return null
      if (objects.length === 0) return 0
      const { rowCount } = await q(ADOPT_OBJECTS_SQL, [
        objects.map((o) => o.id),
        objects.map((o) => o.key),
        objects.map((o) => o.size),
        objects.map((o) => filenameOfKey(o.key)),
        objects.map((o) => o.contentType),
        now,
        claim.rescanId
      ])
      return rowCount ?? 0
    })
  }

  async recordAudit(e: AuditEntry): Promise<void> {
    await this.#query(INSERT_AUDIT_SQL, [e.at, e.actor, e.action, e.target, JSON.stringify(e.detail)])
  }

  async listAudit(limit: number, before?: number): Promise<AuditEntry[]> {
    const { rows } = before === undefined ? await this.#query(LIST_AUDIT_SQL, [limit]) : await this.#query(LIST_AUDIT_BEFORE_SQL, [limit, before])
    return rows.map(toAudit)
  }

  async claimEvents(owner: string, limit: number, leaseMs: number, _now: number): Promise<OutboxEvent[]> {
    if (limit <= 0) return []
    const { rows } = await this.#query(CLAIM_EVENTS_SQL, [limit, owner, leaseMs])
    return rows.map(toEvent)
  }

  async eventDelivered(event: OutboxEvent, now: number): Promise<void> {
    await this.#query(EVENT_DELIVERED_SQL, [now, event.id, event.token])
  }

  async eventFailed(event: OutboxEvent, error: string, nextAttemptAt: number): Promise<void> {
    await this.#query(EVENT_FAILED_SQL, [error, nextAttemptAt, event.id, event.token])
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
    return rows.map(toScan)
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

  /**
   * Runs fn in one transaction on a client of its own: committed if fn resolves, rolled back if it
   * throws (its error is passed on as it is).
   */
  async #transaction<T>(fn: (q: Query) => Promise<T>, { untimed = false } = {}): Promise<T> {
    const client = await this.#guard(() => this.#pool.connect())
    // A checked-out client has no pool error listener: a connection lost between statements must not crash us.
    const onError = (): void => {}
    client.on('error', onError)
    let failed = false
    try {
      await this.#guard(() => client.query('BEGIN'))
      const result = await fn((sql, values) => {
        // query_timeout per query is read by pg but missing from its types.
        const query: pg.QueryConfig & { query_timeout?: number } = { text: sql, values, ...(untimed ? { query_timeout: UNTIMED_MS } : {}) }
        return this.#guard(() => client.query<Row>(query))
      })
      await this.#guard(() => client.query('COMMIT'))
      return result
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

  /**
   * Creating and cancelling rescans take turns: a cancel that ran beside a create could miss the
   * create's new items (not committed yet) and unschedule an upload the new rescan waits for.
   */
  async #lockRescans(q: Query): Promise<void> {
    await q('SELECT pg_advisory_xact_lock(hashtext($1))', [`quarantine-gateway:rescans:${this.#schema}`])
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
