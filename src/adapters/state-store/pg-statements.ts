import { queueFilter, rescannable, type Queue } from './shared-sql.ts'

/**
 * Statements only PostgreSQL runs: the claims (SKIP LOCKED) and the adoption's set-based insert.
 * Claims are $1 the caller's now (updated_at), $2 limit, $3 owner, $4 the lease in ms: what is due
 * and the lease end are on the database's clock, gw_now() (see shared-sql.ts).
 */

// Pick what is due and lease it, in one statement. SKIP LOCKED lets concurrent claimers (other
// replicas) pass over rows another claim is taking instead of queueing behind it; a row claimed
// and committed meanwhile is rechecked against the WHERE clause and dropped, so none goes out twice.
// RETURNING has no defined order: the final SELECT gives the rows back oldest due first.
export const claimSql = (queue: Queue): string => `
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
export const CLAIM_RESCANS_SQL = `
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
export const CLAIM_EVENTS_SQL = `
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
export const CLAIM_ADOPTION_SQL = `
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
export const ADOPT_OBJECTS_SQL = `
  WITH added AS (
    INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at)
    SELECT o.id, o.key, o.size, '', o.filename, o.content_type, 'pending', 'production', $6, $6, $6
      FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[]), CAST($3 AS BIGINT[]), CAST($4 AS TEXT[]), CAST($5 AS TEXT[]))
           AS o (id, key, size, filename, content_type)
    ON CONFLICT (object_key) DO NOTHING
    RETURNING id
  )
  INSERT INTO rescan_items (rescan_id, upload_id) SELECT CAST($7 AS TEXT), id FROM added`
