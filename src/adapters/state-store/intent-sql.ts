import type { BeginResult, IdempotencyKey, UploadIntent } from '../../ports/upload-intake.ts'
import { toRecord, type Row } from './row-mapping.ts'

// Upload intents and idempotency keys (migration 5), shared by both adapters. Placeholders as in shared-sql.ts.

/** $1 id, $2 object key, $3 created at, $4 when it is first due for the sweeper (once old enough), $5 the token's jti or null. */
export const INSERT_INTENT_SQL = 'INSERT INTO upload_intents (id, object_key, created_at, sweep_after, token_id) VALUES ($1, $2, $3, $4, $5)'

/**
 * One use of an upload token (migration 6), counted by jti: the first use inserts its row, each
 * next one adds to it while under the token's max_uploads. One statement, so concurrent uploads
 * with one token take turns on the row: n = 0 when the token has no use left. $1 jti, $2 its
 * expiry (the row may be pruned after it), $3 max_uploads.
 */
export const TAKE_TOKEN_USE_SQL = `
  INSERT INTO token_uses (jti, uses, expires_at) VALUES ($1, 1, $2)
  ON CONFLICT (jti) DO UPDATE SET uses = token_uses.uses + 1 WHERE token_uses.uses < $3`
/** An abandoned upload gives its token's use back. $1 jti. */
export const GIVE_BACK_TOKEN_USE_SQL = 'UPDATE token_uses SET uses = uses - 1 WHERE jti = $1 AND uses > 0'
/** Retention: token uses of tokens expired before $1, a batch ($2) at a time. */
export const PRUNE_TOKEN_USES_SQL = 'DELETE FROM token_uses WHERE jti IN (SELECT jti FROM token_uses WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)'

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
/** $1 id, $2 now; returns the token the intent used (once: a second abandon changes nothing). */
export const ABANDON_SQL = 'UPDATE upload_intents SET abandoned_at = $2, sweep_after = $2 WHERE id = $1 AND abandoned_at IS NULL RETURNING token_id'
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
