import type { DialectStatements } from './dialect-statements.ts'
import { SWEEPABLE_SQL } from './intent-sql.ts'
import { notCancelled, queueFilter, REQUEST_RELEASE_SQL, rescannable, type Queue } from './shared-sql.ts'

/**
 * Statements only PostgreSQL runs: the claims (SKIP LOCKED), and writes chained into one statement
 * (a status change with its events, a release, the adoption's set-based insert). Claims are $1 the
 * caller's now (updated_at), $2 limit, $3 owner, $4 the lease in ms: what is due and the lease end
 * are on the database's clock, gw_now() (see shared-sql.ts).
 */

// Pick what is due and lease it, in one statement. SKIP LOCKED lets concurrent claimers (other
// replicas) pass over rows another claim is taking instead of queueing behind it; a row claimed
// and committed meanwhile is rechecked against the WHERE clause and dropped, so none goes out twice.
// RETURNING has no defined order: the final SELECT gives the rows back oldest due first.
const claimSql = (queue: Queue): string => `
  WITH due AS (
    SELECT id, run_at FROM uploads
     WHERE ${queueFilter[queue]} AND run_at <= gw_now()
     ORDER BY run_at LIMIT $2
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE uploads
       SET status = CASE uploads.status WHEN 'pending' THEN 'scanning' ELSE uploads.status END,
           lease_owner = $3, lease_token = gen_random_uuid()::text, run_at = gw_now() + $4,
           attempts = uploads.attempts + 1, updated_at = $1
      FROM due
     WHERE uploads.id = due.id
    RETURNING uploads.*, due.run_at AS due_at
  )
  SELECT * FROM claimed ORDER BY due_at, id`

// The same for rescans: the status stays, the lease end is kept in next_scan_at.
const CLAIM_RESCANS_SQL = `
  WITH due AS (
    SELECT id, next_scan_at FROM uploads
     WHERE status IN (${rescannable}) AND next_scan_at <= gw_now()
     ORDER BY next_scan_at LIMIT $2
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE uploads
       SET lease_owner = $3, lease_token = gen_random_uuid()::text, next_scan_at = gw_now() + $4,
           attempts = uploads.attempts + 1, updated_at = $1
      FROM due
     WHERE uploads.id = due.id
    RETURNING uploads.*, due.next_scan_at AS due_at
  )
  SELECT * FROM claimed ORDER BY due_at, id`

// $1 limit, $2 owner, $3 the lease in ms.
const CLAIM_EVENTS_SQL = `
  WITH due AS (
    SELECT seq FROM outbox
     WHERE delivered_at IS NULL AND next_attempt_at <= gw_now()
     ORDER BY seq LIMIT $1
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE outbox
       SET lease_owner = $2, lease_token = gen_random_uuid()::text, next_attempt_at = gw_now() + $3, attempts = outbox.attempts + 1
      FROM due
     WHERE outbox.seq = due.seq
    RETURNING outbox.*
  )
  SELECT * FROM claimed ORDER BY seq`

// One listing at a time: a listing someone else is saving a page of (row locked) is skipped.
// $1 owner, $2 the lease in ms.
const CLAIM_ADOPTION_SQL = `
  WITH free AS (
    SELECT id FROM rescans
     WHERE state = 'listing' AND bucket IS NOT NULL AND (lease_token IS NULL OR lease_until <= gw_now())
     ORDER BY created_at, id LIMIT 1
     FOR UPDATE SKIP LOCKED
  )
  UPDATE rescans SET lease_owner = $1, lease_token = gen_random_uuid()::text, lease_until = gw_now() + $2
    FROM free WHERE rescans.id = free.id
  RETURNING rescans.*`

// Registers the objects whose key is new and covers them by the adoption, in one statement.
const ADOPT_OBJECTS_SQL = `
  WITH added AS (
    INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at)
    SELECT o.id, o.key, o.size, '', o.filename, o.content_type, 'pending', 'production', $6, $6, $6
      FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[]), CAST($3 AS BIGINT[]), CAST($4 AS TEXT[]), CAST($5 AS TEXT[]))
           AS o (id, key, size, filename, content_type)
    ON CONFLICT (object_key) DO NOTHING
    RETURNING id
  )
  INSERT INTO rescan_items (rescan_id, upload_id) SELECT CAST($7 AS TEXT), id FROM added`

export const pgStatements: DialectStatements = {
  claim: claimSql,
  claimRescans: CLAIM_RESCANS_SQL,
  claimEvents: CLAIM_EVENTS_SQL,
  claimAdoption: CLAIM_ADOPTION_SQL,
  claimIntents: `
    UPDATE upload_intents SET abandoned_at = COALESCE(abandoned_at, $1), sweep_after = $3
     WHERE id IN (SELECT id FROM upload_intents WHERE ${SWEEPABLE_SQL} ORDER BY sweep_after LIMIT $4 FOR UPDATE SKIP LOCKED)
    RETURNING *`,
  forUpdate: ' FOR UPDATE',
  knownKeys: 'SELECT object_key FROM uploads WHERE object_key = ANY($1) UNION SELECT object_key FROM upload_intents WHERE object_key = ANY($1)',
  textList: (values) => values,
  versionsTable: 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)',
  chained: {
    statusChange(update, events, outcome, v) {
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
      if (outcome !== null) {
        parts.push(`outcome AS (
          UPDATE rescan_items SET outcome = ${v.add(outcome.outcome)}, done_at = ${v.add(outcome.now)}
           WHERE upload_id = ${v.add(outcome.uploadId)} AND outcome IS NULL AND ${notCancelled} AND EXISTS (SELECT 1 FROM changed))`)
      }
      return `WITH ${parts.join(', ')} SELECT count(*) AS n FROM changed`
    },
    requestRelease: `
      WITH released AS (${REQUEST_RELEASE_SQL}),
           -- LEAVE_RESCANS_SQL, for the upload released here (if it was).
           dropped AS (DELETE FROM rescan_items WHERE upload_id IN (SELECT id FROM released) AND outcome IS NULL)
      SELECT * FROM released`,
    adoptObjects: ADOPT_OBJECTS_SQL
  }
}
