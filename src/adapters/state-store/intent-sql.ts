import type { BeginResult, IdempotencyKey, UploadIntent } from '../../ports/upload-intake.ts'
import { toRecord, type Row } from './row-mapping.ts'

// Upload intents and idempotency keys (migration 5), shared by both adapters. Placeholders as in shared-sql.ts.

/** $1 id, $2 object key, $3 created at, $4 when it is first due for the sweeper (once old enough). */
export const INSERT_INTENT_SQL = 'INSERT INTO upload_intents (id, object_key, created_at, sweep_after) VALUES ($1, $2, $3, $4)'

/** $1 scope, $2 key, $3 upload id, $4 now. */
export const RESERVE_KEY_SQL = 'INSERT INTO idempotency_keys (scope, key, upload_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING'
/** $1 upload id, $2 now, $3 scope, $4 key. */
export const TAKE_OVER_KEY_SQL = 'UPDATE idempotency_keys SET upload_id = $1, created_at = $2 WHERE scope = $3 AND key = $4'
/** $1 scope, $2 key. */
export const RESERVATION_SQL = 'SELECT * FROM idempotency_keys WHERE scope = $1 AND key = $2'
export const UPLOAD_SQL = 'SELECT * FROM uploads WHERE id = $1'
export const INTENT_SQL = 'SELECT abandoned_at FROM upload_intents WHERE id = $1'

/** The fence of a commit: only an intent nobody abandoned or claimed may become a record. $1 id. */
export const COMMIT_INTENT_SQL = 'DELETE FROM upload_intents WHERE id = $1 AND abandoned_at IS NULL'
/** $1 id, $2 now. */
export const ABANDON_SQL = 'UPDATE upload_intents SET abandoned_at = $2, sweep_after = $2 WHERE id = $1 AND abandoned_at IS NULL'
export const DELETE_INTENT_SQL = 'DELETE FROM upload_intents WHERE id = $1'
/** Due for the sweeper: $1 now, $2 cutoff. */
export const SWEEPABLE_SQL = 'sweep_after <= $1 AND (abandoned_at IS NOT NULL OR created_at <= $2)'
/** $1 before, $2 limit: one batch. */
export const EXPIRE_KEYS_SQL = `
  DELETE FROM idempotency_keys
   WHERE (scope, key) IN (SELECT scope, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)`

export function toIntent(row: Row): UploadIntent {
  return { id: String(row.id), objectKey: String(row.object_key), createdAt: Number(row.created_at) }
}

/**
 * What an existing reservation of an idempotency key means: null when it may be taken over (it
 * expired, or its upload was abandoned or swept without a record).
 */
export function reservationState(
  reservation: Row,
  upload: Row | undefined,
  intent: Row | undefined,
  idempotency: IdempotencyKey,
  now: number
): Exclude<BeginResult, { kind: 'started' }> | null {
  if (Number(reservation.created_at) <= now - idempotency.ttlMs) return null
  if (upload) return { kind: 'committed', upload: toRecord(upload) }
  if (intent && intent.abandoned_at === null) return { kind: 'inFlight', uploadId: String(reservation.upload_id) }
  return null
}
