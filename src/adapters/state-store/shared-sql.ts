import { claimableStatuses, releasableStatuses, rescannableStatuses, type StoredStatus } from '../../domain/upload-state.ts'
import type { Claim, StatusChange } from '../../ports/job-queue.ts'
import type { RescanSelection } from '../../ports/rescan-store.ts'

/**
 * SQL both adapters run as is. It is written with numbered placeholders ($1 for PostgreSQL);
 * the SQLite store turns them into ?1, which SQLite binds by number just the same.
 *
 * Leases are kept on one clock, gw_now() (ms since the epoch): on PostgreSQL the database's own
 * (migration 5), so a replica whose clock runs fast cannot take a live lease; on SQLite, one
 * process, whose clock (the `now` its caller passes) is the only one. Lease ends are gw_now() plus
 * the lease; lease expiry compares with gw_now(). "Due now" is LEAST(caller's now, gw_now()): due at
 * once on either clock. Other times (created, scanned, updated) are the caller's.
 */
export type Dialect = 'sqlite' | 'pg'

/** Values of a statement built piece by piece: each add() gives the value's numbered placeholder. */
export class SqlValues {
  readonly dialect: Dialect
  readonly values: unknown[] = []

  constructor(dialect: Dialect) {
    this.dialect = dialect
  }

  add(value: unknown): string {
    this.values.push(value)
    return `${this.dialect === 'pg' ? '$' : '?'}${this.values.length}`
  }
}

const sqlList = (statuses: readonly StoredStatus[]): string => statuses.map((s) => `'${s}'`).join(', ')

export const claimable = sqlList(claimableStatuses)
export const rescannable = sqlList(rescannableStatuses)
const releasable = sqlList(releasableStatuses)

// Where a lease is kept follows from the status, not from the claim's kind: a rescan that found
// something moves on to requarantining under the same token, with its lease now in run_at, while
// the worker still renews (or gives back) the claim it started with. A rescannable status holds
// only rescan leases, since a step of the flow that ends in one gives its lease back.
const leaseInRunAt = `status IN (${claimable})`

/** Items of cancelled rescans (not all unwound yet) neither count nor wait. */
export const notCancelled = `rescan_id NOT IN (SELECT id FROM rescans WHERE state = 'cancelled')`

/**
 * Claims come from two queues, each served by its own partial index (migration 2 writes the same
 * predicates): the uploads' own flow, and objects adopted from production waiting for their first
 * scan, which the worker takes only with the share it keeps for rescans.
 */
export const queueFilter = {
  uploads: `status IN (${claimable}) AND NOT (status = 'pending' AND location = 'production')`,
  adopted: `status = 'pending' AND location = 'production'`
} as const

export type Queue = keyof typeof queueFilter

/**
 * Queue depth and the oldest unfinished upload. Each arm repeats one partial index's predicate, so
 * the cost follows the length of the queue, not of the table (finished uploads are never read).
 */
export const QUEUE_STATS_SQL = `SELECT count(*) AS depth, min(created_at) AS oldest FROM (
  SELECT created_at FROM uploads WHERE ${queueFilter.uploads}
  UNION ALL
  SELECT created_at FROM uploads WHERE ${queueFilter.adopted}) AS queued`
const leased = `status IN (${claimable}, ${rescannable})`

/** $1 the lease (ms from gw_now()), $2 id, $3 token. */
export const RENEW_LEASE_SQL = `
  UPDATE uploads
     SET run_at = CASE WHEN ${leaseInRunAt} THEN gw_now() + $1 ELSE run_at END,
         next_scan_at = CASE WHEN ${leaseInRunAt} THEN next_scan_at ELSE gw_now() + $1 END
   WHERE id = $2 AND lease_token = $3 AND ${leased}`

/** Due again at once ($1 now), uncounted. $2 id, $3 token. */
export const RELEASE_SQL = `
  UPDATE uploads
     SET run_at = CASE WHEN ${leaseInRunAt} THEN LEAST($1, gw_now()) ELSE run_at END,
         next_scan_at = CASE WHEN ${leaseInRunAt} THEN next_scan_at ELSE LEAST($1, gw_now()) END,
         lease_owner = NULL, lease_token = NULL,
         attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $1
   WHERE id = $2 AND lease_token = $3 AND ${leased}`

/** The fenced UPDATE of a status change (no RETURNING: the caller adds what it needs). */
export function statusChangeSql(claim: Claim, change: StatusChange, now: number, v: SqlValues): string {
  const sets = [`status = ${v.add(change.status)}`, `updated_at = ${v.add(now)}`]
  const set = (column: string, value: unknown): void => {
    sets.push(`${column} = ${v.add(value)}`)
  }
  if (change.verdict !== undefined) {
    set('verdict', change.verdict ? JSON.stringify(change.verdict) : null)
    set('signature_version', change.verdict?.signatureVersion ?? null)
  }
  if (change.scannedAt !== undefined) set('scanned_at', change.scannedAt)
  if (change.scannedVersion !== undefined) set('scanned_version', change.scannedVersion)
  if (change.lastError !== undefined) set('last_error', change.lastError)
  if (change.resetAttempts) sets.push('attempts = 0')
  else if (change.refundAttempt) sets.push('attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END')
  // Lease ends and retry times go on the lease clock, as the same distance from now.
  if (change.runAt !== undefined) sets.push(`run_at = gw_now() + ${v.add(change.runAt - now)}`)
  if (change.nextScanAt !== undefined) sets.push(`next_scan_at = ${change.nextScanAt === null ? 'NULL' : `gw_now() + ${v.add(change.nextScanAt - now)}`}`)
  if (change.location !== undefined) set('location', change.location)
  if (change.size !== undefined) set('size', change.size)
  if (change.sha256 !== undefined) set('sha256', change.sha256)
  if (change.failedRetryAt !== undefined) set('failed_retry_at', change.failedRetryAt)
  // Any other status ends a scheduled automatic retry: it belongs to the failure it followed.
  else if (change.status !== 'failed') sets.push('failed_retry_at = NULL')
  if (change.clearRelease) sets.push('released_by = NULL', 'released_at = NULL', 'release_reason = NULL', 'released_status = NULL', 'released_signature = NULL')
  // A job that leaves the claimed phase gives its lease back (a rescan ending in a stored status included).
  if (change.status === 'pending' || !claimableStatuses.includes(change.status)) sets.push('lease_owner = NULL', 'lease_token = NULL')
  return `UPDATE uploads SET ${sets.join(', ')} WHERE id = ${v.add(claim.upload.id)} AND lease_token = ${v.add(claim.token)} AND status = ${v.add(claim.upload.status)}`
}

/** $1 id, $2 type, $3 data (JSON), $4 created at: an event written with the change it reports (once). */
export const INSERT_EVENT_SQL = 'INSERT INTO outbox (id, type, data, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING'

/** $1 outcome, $2 now, $3 upload id: done in every unfinished rescan that covers it. */
export const RESCAN_OUTCOME_SQL = `UPDATE rescan_items SET outcome = $1, done_at = $2 WHERE upload_id = $3 AND outcome IS NULL AND ${notCancelled}`

/**
 * $1 now, $2 by, $3 reason, $4 id, $5 the status released (the upload must still be in it; null: any
 * releasable one), $6 its signature, $7 the verified object version the promotion copies (null: the one recorded).
 */
export const REQUEST_RELEASE_SQL = `
  UPDATE uploads
     SET status = 'promoting', run_at = LEAST($1, gw_now()), attempts = 0, last_error = NULL, next_scan_at = NULL,
         released_by = $2, released_at = $1, release_reason = $3, released_status = status,
         released_signature = CAST($6 AS TEXT), scanned_version = COALESCE(CAST($7 AS TEXT), scanned_version), failed_retry_at = NULL, failed_rounds = 0, updated_at = $1
   WHERE id = $4 AND status = COALESCE(CAST($5 AS TEXT), status) AND status IN (${releasable}) AND lease_token IS NULL
  RETURNING *`

/**
 * A released upload leaves the unfinished rescans that covered it ($1 id): it is rescanned on its
 * own schedule once promoted, and its item would otherwise keep them waiting until then.
 */
export const LEAVE_RESCANS_SQL = 'DELETE FROM rescan_items WHERE upload_id = $1 AND outcome IS NULL'

/** $1 now, $2 id: a failed upload goes back to pending, with fresh tries and automatic rounds. */
export const RETRY_FAILED_SQL = `
  UPDATE uploads SET status = 'pending', run_at = LEAST($1, gw_now()), attempts = 0, failed_retry_at = NULL, failed_rounds = 0, updated_at = $1
   WHERE id = $2 AND status = 'failed' AND lease_token IS NULL`

/**
 * $1 now, $2 limit: failed uploads whose automatic retry is due go back to pending, one round more.
 * The outer conditions are checked again on a row another statement changed meanwhile (PostgreSQL).
 */
export const REQUEUE_FAILED_SQL = `
  UPDATE uploads SET status = 'pending', run_at = LEAST($1, gw_now()), attempts = 0, failed_retry_at = NULL, failed_rounds = failed_rounds + 1, updated_at = $1
   WHERE status = 'failed' AND failed_retry_at <= $1 AND lease_token IS NULL
     AND id IN (SELECT id FROM uploads WHERE status = 'failed' AND failed_retry_at <= $1 AND lease_token IS NULL ORDER BY failed_retry_at LIMIT $2)`

/** $1 now, $2 id. */
export const SCHEDULE_RESCAN_SQL = `UPDATE uploads SET next_scan_at = LEAST($1, gw_now()) WHERE id = $2 AND status IN (${rescannable}) AND lease_token IS NULL`

/** $1 id, $2 scope, $3 created by, $4 created at, $5 state, $6 bucket, $7 prefix, $8 selection, $9 cursor. */
export const INSERT_RESCAN_SQL = `
  INSERT INTO rescans (id, scope, created_by, created_at, state, bucket, prefix, selection, cursor_id)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

/**
 * The covered uploads are due now ($1), for rescan $2, those with an id after $3 up to $4 (NULL:
 * no bound). Leased ones are left alone: they finish the scan they are in and count for this
 * rescan too (rescanOutcome). One already due keeps its time.
 */
export const MAKE_DUE_SQL = `
  UPDATE uploads SET next_scan_at = LEAST($1, gw_now())
   WHERE id IN (SELECT upload_id FROM rescan_items WHERE rescan_id = $2 AND ${inRange('upload_id', '$3', '$4')})
     AND lease_token IS NULL AND (next_scan_at IS NULL OR next_scan_at > LEAST($1, gw_now()))`

/**
 * Big rescans select and cancel in batches of upload ids, each its own short transaction, so no
 * statement outlives the statement timeout and no write lock is held for long, however many
 * uploads there are. A batch covers the ids after the rescan's cursor up to the page end.
 */
export function inRange(column: string, after: string, upTo: string): string {
  return `${column} > ${after} AND (CAST(${upTo} AS TEXT) IS NULL OR ${column} <= ${upTo})`
}

/** The last upload id of the page of $2 + 1 ids after $1; none when fewer are left (the last page). */
export const PAGE_END_SQL = 'SELECT id FROM uploads WHERE id > $1 ORDER BY id LIMIT 1 OFFSET $2'
/** The same over the uploads a rescan ($1) covers. */
export const ITEMS_PAGE_END_SQL = 'SELECT upload_id AS id FROM rescan_items WHERE rescan_id = $1 AND upload_id > $2 ORDER BY upload_id LIMIT 1 OFFSET $3'
/** A rescan with batches left: selecting its uploads (listing, with a selection) or being cancelled. Oldest first. */
export const NEXT_BATCH_SQL = `
  SELECT * FROM rescans WHERE cursor_id IS NOT NULL AND ((state = 'listing' AND selection IS NOT NULL) OR state = 'cancelled')
   ORDER BY created_at, id LIMIT 1`
/** $1 id, $2 the last upload id done (NULL: no batch left), $3 state. */
export const RESCAN_CURSOR_SQL = 'UPDATE rescans SET cursor_id = $2, state = $3 WHERE id = $1'

/**
 * A rescan with the counts of its items. Cancelled items (outcome 'cancelled') count in total,
 * as covered, but neither as done nor as unfinished: a cancelled rescan reads "n of total".
 * `filter` picks the rescans (WHERE / ORDER BY / LIMIT on rescans); the result is newest first.
 */
export function rescanSummarySql(filter: string): string {
  return `
    WITH r AS (SELECT * FROM rescans ${filter}),
    c AS (
      SELECT rescan_id, count(*) AS total,
             sum(CASE WHEN outcome IS NOT NULL AND outcome <> 'cancelled' THEN 1 ELSE 0 END) AS done,
             sum(CASE WHEN outcome = 'clean' THEN 1 ELSE 0 END) AS clean,
             sum(CASE WHEN outcome = 'infected' THEN 1 ELSE 0 END) AS infected,
             sum(CASE WHEN outcome = 'unscannable' THEN 1 ELSE 0 END) AS unscannable,
             sum(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failed,
             sum(CASE WHEN outcome IS NULL THEN 1 ELSE 0 END) AS unfinished,
             max(done_at) AS last_done_at
        FROM rescan_items WHERE rescan_id IN (SELECT id FROM r) GROUP BY rescan_id
    )
    SELECT r.*, c.total, c.done, c.clean, c.infected, c.unscannable, c.failed, c.unfinished, c.last_done_at
      FROM r LEFT JOIN c ON c.rescan_id = r.id
     ORDER BY r.created_at DESC, r.id DESC`
}

export const GET_RESCAN_SQL = rescanSummarySql('WHERE id = $1')
export const LIST_RESCANS_SQL = rescanSummarySql('ORDER BY created_at DESC, id DESC LIMIT $1')

/**
 * Cancelling: the rescan ($1 now, $2 id), which then unwinds in batches (cursor_id), each in one
 * transaction and in this order: its unfinished uploads in the batch ($3 after, $4 up to) that no
 * other rescan waits for and no worker holds go back to their regular schedule: a clean one its
 * scan time + interval ($1 interval, $2 id), any other none; then its unfinished items in the
 * batch are marked cancelled ($1 id, $2 after, $3 up to).
 */
export const CANCEL_RESCAN_SQL = `
  UPDATE rescans SET state = 'cancelled', cancelled_at = $1, cursor_id = '', lease_owner = NULL, lease_token = NULL, lease_until = NULL
   WHERE id = $2 AND state IN ('running', 'listing')`
export const UNSCHEDULE_CANCELLED_SQL = `
  UPDATE uploads
     SET next_scan_at = CASE WHEN status = 'clean' THEN COALESCE(scanned_at, created_at) + $1 ELSE NULL END
   WHERE id IN (SELECT upload_id FROM rescan_items WHERE rescan_id = $2 AND outcome IS NULL AND ${inRange('upload_id', '$3', '$4')})
     AND status IN (${rescannable}) AND lease_token IS NULL
     AND NOT EXISTS (SELECT 1 FROM rescan_items o WHERE o.upload_id = uploads.id AND o.outcome IS NULL AND o.rescan_id <> $2 AND o.${notCancelled})`
export const CANCEL_ITEMS_SQL = `UPDATE rescan_items SET outcome = 'cancelled' WHERE rescan_id = $1 AND outcome IS NULL AND ${inRange('upload_id', '$2', '$3')}`

/**
 * The fence and the progress of an adoption page: $1 next token, $2 state, $3 lease, $4 id,
 * $5 token. Nothing changes (0 rows) when the listing is no longer this claim's.
 */
export const ADOPT_PROGRESS_SQL = `
  UPDATE rescans SET continuation_token = $1, state = $2, lease_until = gw_now() + $3
   WHERE id = $4 AND lease_token = $5 AND state = 'listing'`

/** $1 at, $2 actor, $3 action, $4 target, $5 detail. */
export const INSERT_AUDIT_SQL = 'INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)'
export const LIST_AUDIT_SQL = 'SELECT * FROM audit ORDER BY at DESC, id DESC LIMIT $1'
export const LIST_AUDIT_BEFORE_SQL = 'SELECT * FROM audit WHERE at < $2 ORDER BY at DESC, id DESC LIMIT $1'

/** $1 now, $2 id, $3 token. */
export const EVENT_DELIVERED_SQL = `
  UPDATE outbox SET delivered_at = $1, lease_owner = NULL, lease_token = NULL
   WHERE id = $2 AND lease_token = $3 AND delivered_at IS NULL`
/** $1 error, $2 next attempt, $3 id, $4 token. */
export const EVENT_FAILED_SQL = `
  UPDATE outbox SET last_error = $1, next_attempt_at = $2, lease_owner = NULL, lease_token = NULL
   WHERE id = $3 AND lease_token = $4 AND delivered_at IS NULL`

/** The values of INSERT_RESCAN_SQL: adoptions list a bucket, id lists are covered at once, other selections batch by batch. */
export function newRescanRow(rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number }, selection: RescanSelection): unknown[] {
  const adopt = selection.kind === 'adopt' ? selection : null
  const batched = selection.kind !== 'adopt' && selection.kind !== 'ids'
  const state = selection.kind === 'ids' ? 'running' : 'listing'
  return [rescan.id, JSON.stringify(rescan.scope), rescan.createdBy, rescan.createdAt, state, adopt?.bucket ?? null, adopt?.prefix ?? null, batched ? JSON.stringify(selection) : null, batched ? '' : null]
}

/**
 * Retention, a batch ($2 rows) at a time of what is older than $1: delivered events, scans,
 * audit rows. Undelivered events are never pruned, however old.
 */
export const PRUNE_OUTBOX_SQL = 'DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered_at < $1 ORDER BY delivered_at LIMIT $2)'
export const PRUNE_SCANS_SQL = 'DELETE FROM scans WHERE id IN (SELECT id FROM scans WHERE started_at < $1 ORDER BY started_at LIMIT $2)'
export const PRUNE_AUDIT_SQL = 'DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)'
/**
 * A rescan created before $1 that no longer needs its items: finished (nothing unfinished, not
 * listing), or cancelled before $1 and fully unwound. Its items go a batch at a time, then itself.
 */
export const OLD_RESCAN_SQL = `
  SELECT id FROM rescans r
   WHERE created_at < $1 AND cursor_id IS NULL
     AND ((state = 'cancelled' AND cancelled_at < $1)
          OR (state = 'running' AND NOT EXISTS (SELECT 1 FROM rescan_items i WHERE i.rescan_id = r.id AND i.outcome IS NULL)))
   ORDER BY created_at, id LIMIT 1`
export const PRUNE_RESCAN_ITEMS_SQL = 'DELETE FROM rescan_items WHERE rescan_id = $1 AND upload_id IN (SELECT upload_id FROM rescan_items WHERE rescan_id = $1 LIMIT $2)'
export const PRUNE_RESCAN_SQL = 'DELETE FROM rescans WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM rescan_items WHERE rescan_id = $1)'
