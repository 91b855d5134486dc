import { type BeginResult, type IdempotencyKey, type OrphanLedger, TokenExhaustedError, type UploadIntake, type UploadIntent, UploadIntentLostError } from '../../ports/upload-intake.ts'
import type { NewEvent } from '../../ports/event-outbox.ts'
import { rejection, type NewUpload, type UploadLookup, type UploadRecord } from '../../ports/upload-record.ts'
import {
  ABANDON_SQL,
  COMMIT_INTENT_SQL,
  DELETE_INTENT_SQL,
  EXPIRE_KEYS_SQL,
  GIVE_BACK_TOKEN_USE_SQL,
  INSERT_INTENT_SQL,
  INTENT_SQL,
  RESERVATION_SQL,
  reservationState,
  RESERVE_KEY_SQL,
  TAKE_OVER_KEY_SQL,
  TAKE_TOKEN_USE_SQL,
  toIntent,
  UPLOAD_SQL
} from './intent-sql.ts'
import { toRecord } from './row-mapping.ts'
import { INSERT_EVENT_SQL } from './shared-sql.ts'
import type { SqlDatabase, SqlHandle } from './sql-database.ts'

/**
 * A new upload is due at once on either clock (see shared-sql.ts): on SQLite gw_now() is its
 * createdAt, so run_at is createdAt there.
 */
const INSERT_UPLOAD_SQL = `
  INSERT INTO uploads (id, object_key, size, sha256, filename, content_type, status, location, created_at, updated_at, run_at, owner_token_id, owner_subject, owner_meta)
  VALUES ($1, $2, $3, $4, $5, $6, 'pending', 'quarantine', $7, $7, LEAST($7, gw_now()), $8, $9, $10)`

/** A record just inserted, ending as rejected in the same transaction (so it shares every column of the insert). */
const REJECT_UPLOAD_SQL = `UPDATE uploads SET status = 'rejected', verdict = $2 WHERE id = $1`

const insertValues = (u: NewUpload): unknown[] => [
  u.id, u.objectKey, u.size, u.sha256, u.filename, u.contentType, u.createdAt,
  u.owner?.tokenId ?? null, u.owner?.subject ?? null, u.owner?.meta ? JSON.stringify(u.owner.meta) : null
]

/** Uploads, their intents, idempotency keys (migration 5) and token uses (6): the lookup, the intake and the orphan ledger. */
export function uploadIntakeSql(db: SqlDatabase): UploadLookup & UploadIntake & OrphanLedger {
  const { statements } = db
  return {
    async getUpload(id: string): Promise<UploadRecord | null> {
      const [row] = await db.rows(UPLOAD_SQL, [id])
      return row ? toRecord(row) : null
    },

    async insertUpload(u: NewUpload): Promise<void> {
      await db.at(u.createdAt).write(INSERT_UPLOAD_SQL, insertValues(u))
    },

    beginUpload(intent: UploadIntent, idempotency: IdempotencyKey | null, now: number): Promise<BeginResult> {
      // Not flushed on its own: the upload's commit flushes it. Lost to a power loss before that, the
      // upload was never accepted, and the sweeper finds its object by listing (GW_ORPHAN_AFTER).
      return db.transaction(async (tx) => {
        if (idempotency && (await reserve(tx, idempotency, intent, now)) === 0) {
          const [reservation] = await tx.rows(RESERVATION_SQL + statements.forUpdate, [idempotency.scope, idempotency.key])
          if (reservation) {
            const uploadId = reservation.upload_id
            const [upload] = await tx.rows(UPLOAD_SQL, [uploadId])
            const [known] = await tx.rows(INTENT_SQL, [uploadId])
            const existing = reservationState(reservation, upload, known, idempotency, now)
            if (existing) return existing
            await tx.write(TAKE_OVER_KEY_SQL, [intent.id, now, idempotency.scope, idempotency.key])
          } else await reserve(tx, idempotency, intent, now) // expired and deleted meanwhile
        }
        const { token } = intent
        if (token && (await tx.write(TAKE_TOKEN_USE_SQL, [token.jti, token.expiresAt, token.maxUploads])) === 0) {
          // Thrown inside the transaction: the idempotency key reserved above goes with it.
          throw new TokenExhaustedError(`upload token ${token.jti} has created its ${token.maxUploads} upload(s)`)
        }
        await tx.write(INSERT_INTENT_SQL, [intent.id, intent.objectKey, intent.createdAt, intent.sweepAfter ?? intent.createdAt, token?.jti ?? null])
        return { kind: 'started' } as const
      }, { durable: false })
    },

    async commitUpload(u: NewUpload): Promise<void> {
      await db.transaction(async (tx) => {
        if ((await tx.write(COMMIT_INTENT_SQL, [u.id])) !== 1) throw new UploadIntentLostError(`upload ${u.id} was abandoned before its record was committed`)
        await tx.write(INSERT_UPLOAD_SQL, insertValues(u))
      }, { now: u.createdAt })
    },

    async commitRejectedUpload(u: NewUpload, reason: string, events: readonly NewEvent[] = []): Promise<void> {
      await db.transaction(async (tx) => {
        if ((await tx.write(COMMIT_INTENT_SQL, [u.id])) !== 1) throw new UploadIntentLostError(`upload ${u.id} was abandoned before its record was committed`)
        await tx.write(INSERT_UPLOAD_SQL, insertValues(u))
        await tx.write(REJECT_UPLOAD_SQL, [u.id, JSON.stringify(rejection(reason))])
        for (const e of events) await tx.write(INSERT_EVENT_SQL, [e.id, e.type, JSON.stringify(e.data), e.createdAt])
      }, { now: u.createdAt })
    },

    async abandonUpload(id: string, now: number): Promise<void> {
      await db.transaction(async (tx) => {
        const [abandoned] = await tx.rows(ABANDON_SQL, [id, now])
        if (abandoned?.token_id) await tx.write(GIVE_BACK_TOKEN_USE_SQL, [abandoned.token_id])
      })
    },

    async claimIntents(now: number, cutoff: number, retryAt: number, limit: number): Promise<UploadIntent[]> {
      if (limit <= 0) return []
      return (await db.rows(statements.claimIntents, [now, cutoff, retryAt, limit])).map(toIntent)
    },

    async deleteIntent(id: string): Promise<void> {
      await db.write(DELETE_INTENT_SQL, [id])
    },

    async knownKeys(keys: string[]): Promise<Set<string>> {
      if (keys.length === 0) return new Set()
      const rows = await db.rows(statements.knownKeys, [statements.textList(keys)])
      return new Set(rows.map((r) => String(r.object_key)))
    },

    expireIdempotencyKeys(before: number, limit: number): Promise<number> {
      return db.write(EXPIRE_KEYS_SQL, [before, limit])
    }
  }
}

function reserve(tx: SqlHandle, idempotency: IdempotencyKey, intent: UploadIntent, now: number): Promise<number> {
  return tx.write(RESERVE_KEY_SQL, [idempotency.scope, idempotency.key, intent.id, now])
}
