import type { NewEvent } from './event-outbox.ts'
import type { NewUpload, UploadRecord } from './upload-record.ts'

/** An upload being received: written before its first byte is stored, so no object is ever without a trace. */
export interface UploadIntent {
  id: string
  objectKey: string
  createdAt: number
  /** The upload token creating it: one of its uses is taken with the intent, and given back if the upload is abandoned. */
  token?: { jti: string; maxUploads: number; expiresAt: number }
  /** Not due for the orphan sweeper before this (epoch ms; default createdAt): a resumable upload stays live until it expires. */
  sweepAfter?: number
}

/** A client's Idempotency-Key, scoped to the caller, with how long it holds. */
export interface IdempotencyKey {
  scope: string
  key: string
  ttlMs: number
}

/**
 * How beginUpload went. started: go on and store the bytes. committed: an earlier request with the
 * same key was accepted as `upload`. inFlight: an earlier request with the same key is still being
 * received (its intent is neither committed nor abandoned).
 */
export type BeginResult = { kind: 'started' } | { kind: 'committed'; upload: UploadRecord } | { kind: 'inFlight'; uploadId: string }

/** The upload token has created as many uploads as it allows (its max_uploads): nothing was written. */
export class TokenExhaustedError extends Error {
  override name = 'TokenExhaustedError'
}

/** The upload's intent was abandoned or swept before its record was committed: the upload is not accepted. */
export class UploadIntentLostError extends Error {
  override name = 'UploadIntentLostError'
}

/** Receiving an upload: its intent before the first byte, its record once stored. */
export interface UploadIntake {
  insertUpload(upload: NewUpload): Promise<void>
  /**
   * Records the intent to store an upload, before any byte is stored. With an idempotency key, in
   * the same transaction: the key is reserved for this upload, unless an unexpired reservation
   * names an upload that was committed or is still in flight (then nothing is written). A key whose
   * upload was abandoned, or that expired, is taken over.
   */
  beginUpload(intent: UploadIntent, idempotency: IdempotencyKey | null, now: number): Promise<BeginResult>
  /**
   * Commits the record and removes its intent, in one transaction. Throws UploadIntentLostError
   * (nothing written) when the intent was abandoned or taken by the sweeper meanwhile.
   */
  commitUpload(upload: NewUpload): Promise<void>
  /**
   * Commits the record in status `rejected` (its verdict the rejection with this reason, its bytes
   * left in quarantine) and removes its intent, with `events` (upload.rejected, when webhooks are
   * on) in the outbox, in one transaction. Fenced by the intent like commitUpload.
   */
  commitRejectedUpload(upload: NewUpload, reason: string, events?: readonly NewEvent[]): Promise<void>
  /** The upload will not be committed: its intent is due for the sweeper at once. */
  abandonUpload(id: string, now: number): Promise<void>
}

/** What the orphan sweeper needs: intents never committed, and which keys are known. */
export interface OrphanLedger {
  /**
   * Claims up to `limit` intents to sweep, oldest due first: abandoned ones, and ones started at or
   * before `cutoff` and never committed. Claiming abandons them (a late commit fails) and hides them
   * until retryAt, so a sweep that fails is tried again then.
   */
  claimIntents(now: number, cutoff: number, retryAt: number, limit: number): Promise<UploadIntent[]>
  /** The intent's object and open writes are gone. */
  deleteIntent(id: string): Promise<void>
  /** Of these object keys, those a record or an intent names (their open writes are not orphans). */
  knownKeys(keys: string[]): Promise<Set<string>>
  /** Deletes up to `limit` idempotency keys created before `before`; how many. */
  expireIdempotencyKeys(before: number, limit: number): Promise<number>
}
