import { claimableStatuses, releasableStatuses, rescannableStatuses, type StoredStatus } from '../../domain/upload-state.ts'
import type { Claim, StatusChange } from '../../ports/job-queue.ts'

/**
 * SQL both engines run as is, for the uploads' jobs and the operators' actions on them (each other
 * port's SQL is kept beside its adapter; what differs per engine is in sqlite-statements.ts and
 * pg-statements.ts). It is written with numbered placeholders ($1 for PostgreSQL); the SQLite
 * engine turns them into ?1, which SQLite binds by number just the same.
 *
 * Leases are kept on one clock, gw_now() (ms since the epoch): on PostgreSQL the database's own
 * (migration 4), so a replica whose clock runs fast cannot take a live lease; on SQLite, one
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
