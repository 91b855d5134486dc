import type { StoredStatus } from '../domain/upload-state.ts'
import type { Area } from './object-store.ts'

/** What the scanner concluded, kept with the upload. */
export interface Verdict {
  result: 'clean' | 'infected' | 'unscannable'
  /** Signature name, for infected. */
  signature: string | null
  /** Why the content could not be fully scanned, for unscannable. */
  reason: string | null
  engine: string
  signatureVersion: number | null
}

export interface NewUpload {
  id: string
  objectKey: string
  size: number
  sha256: string
  filename: string | null
  contentType: string
  createdAt: number
}

export interface UploadRecord extends NewUpload {
  status: StoredStatus
  updatedAt: number
  scannedAt: number | null
  verdict: Verdict | null
  /** The object version (store's ETag) that was scanned: promotion copies only that version. */
  scannedVersion: string | null
  /** Claims made so far in the current step (scan or promotion). */
  attempts: number
  lastError: string | null
  /** When the job is due: the next try for pending work, the lease end for claimed work. */
  runAt: number
  /** Where the bytes are: quarantine, or production (promoted, or adopted from the production bucket). */
  location: Area
  /** When the next rescan is due (the lease end while one runs); null: not scheduled. */
  nextScanAt: number | null
  /**
   * Set when an operator released the upload despite its verdict: who, when, why, and what was
   * released (the status and, for infected, the signature), so the same detection later is not news.
   */
  released: { by: string; at: number; reason: string; status: ReleasableStatus; signature: string | null } | null
  /** Automatic rounds given to this upload after infrastructure failures, since the last operator action. */
  failedRounds: number
  /** For a failed upload: when it goes back to pending on its own (an infrastructure failure), null: never. */
  failedRetryAt: number | null
}

export interface ReleaseRequest {
  by: string
  reason: string
  from?: ReleasableStatus
  signature?: string | null
  version?: string | null
}

/** What an operator may release. */
export type ReleasableStatus = 'infected' | 'unscannable' | 'failed'

/** A claimed job: the record, and the lease that fences every write that ends it. */
export interface Claim {
  upload: UploadRecord
  owner: string
  token: string
  /** scan: a step of the upload's own flow (lease in runAt); rescan: a rescan of a stored object (lease in nextScanAt). */
  kind: 'scan' | 'rescan'
}

/** An event for the webhook outbox, written in the same transaction as the change it reports. */
export interface NewEvent {
  /** Unique per event: receivers deduplicate on it. */
  id: string
  type: 'upload.clean' | 'upload.infected' | 'upload.unscannable' | 'upload.failed' | 'object.requarantined' | 'upload.released'
  data: Record<string, unknown>
  createdAt: number
}

/** A claimed outbox event. */
export interface OutboxEvent extends NewEvent {
  attempts: number
  token: string
}

/** How a rescan ended for one upload, counted in the rescans that cover it. */
export type RescanOutcome = 'clean' | 'infected' | 'unscannable' | 'failed'

/** A fenced change of state: applied only while the claim still holds its lease. */
export interface StatusChange {
  status: StoredStatus
  verdict?: Verdict | null
  scannedAt?: number | null
  scannedVersion?: string | null
  lastError?: string | null
  /** Reset the attempt counter (entering a new step). */
  resetAttempts?: boolean
  /** Do not count the claim that led here as a try (the failure said nothing about the file). */
  refundAttempt?: boolean
  /** For pending: when to try again. For a claimed status: the lease end. */
  runAt?: number
  nextScanAt?: number | null
  location?: Area
  /** Adopted objects learn their size and hash when first scanned. */
  size?: number
  sha256?: string
  /** Outbox events, written only if the change is. */
  events?: NewEvent[]
  /** Marks this upload done in every unfinished rescan that covers it. */
  rescanOutcome?: RescanOutcome
  /** For failed: when it goes back to pending on its own (null: it waits for an operator). */
  failedRetryAt?: number | null
  /** Forget the operator's release (the upload was taken out of production again). */
  clearRelease?: boolean
}

/** What a rescan covers, as the store selects it (validated by the service). */
export type RescanSelection =
  | { kind: 'all' }
  | { kind: 'prefix'; prefix: string }
  | { kind: 'uploaded'; before: number | null; after: number | null }
  | { kind: 'ids'; ids: string[] }
  | { kind: 'signatureVersionBelow'; version: number }
  | { kind: 'adopt'; bucket: string; prefix: string }

export interface RescanRecord {
  id: string
  /** The scope as the operator sent it. */
  scope: Record<string, unknown>
  createdBy: string
  createdAt: number
  /** listing: an adoption still listing the bucket; running; cancelled. Done is running with nothing left. */
  state: 'listing' | 'running' | 'cancelled'
  cancelledAt: number | null
  /** Uploads covered; counts of those finished, by outcome. */
  total: number
  done: number
  clean: number
  infected: number
  unscannable: number
  failed: number
  /** When the last covered upload finished, null while some are left. */
  lastDoneAt: number | null
}

/** An adoption's listing, claimed by one worker at a time. */
export interface AdoptionClaim {
  rescanId: string
  bucket: string
  prefix: string
  continuationToken: string | null
  token: string
}

export interface AuditEntry {
  at: number
  /** Who: the admin key's id (never the key). */
  actor: string
  action: string
  target: string
  detail: Record<string, unknown>
}

export interface ScanRecord {
  uploadId: string
  startedAt: number
  durationMs: number
  endpoint: string | null
  engine: string | null
  signatureVersion: number | null
  /** clean | infected | unscannable, or error for a transient failure. */
  outcome: 'clean' | 'infected' | 'unscannable' | 'error'
  signature: string | null
  detail: string | null
  bytes: number
}

/** What is waiting to be scanned or promoted, for metrics. */
export interface QueueStats {
  /** Uploads not yet in a terminal status (pending, scanning, promoting). */
  depth: number
  /** Creation time of the oldest of those, null when there is none. */
  oldestCreatedAt: number | null
}

/** What retention removes: rows older than these times. */
export interface PruneCutoffs {
  /** Delivered outbox events, scan history, and finished or cancelled rescans with their items. */
  historyBefore: number
  /** Audit rows; null: kept for ever. */
  auditBefore: number | null
}

/** An upload being received: written before its first byte is stored, so no object is ever without a trace. */
export interface UploadIntent {
  id: string
  objectKey: string
  createdAt: number
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

export interface StateStore {
  /** Creates or upgrades the schema; safe to run at every start. */
  migrate(): Promise<void>
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
  /** The upload will not be committed: its intent is due for the sweeper at once. */
  abandonUpload(id: string, now: number): Promise<void>
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
  getUpload(id: string): Promise<UploadRecord | null>
  /**
   * Claims up to `limit` due jobs in one statement, leasing them to `owner` until now + leaseMs.
   * queue 'uploads': the uploads' own flow (the default); 'adopted': objects adopted from
   * production waiting for their first scan, which workers take with the rescans' share.
   */
  claim(owner: string, limit: number, leaseMs: number, now: number, queue?: 'uploads' | 'adopted'): Promise<Claim[]>
  /** Extends a lease; false when the claim was lost (another worker owns the job now). */
  renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean>
  /**
   * Applies a change if the claim still holds its lease and the upload is still in the status
   * the claim says; false otherwise (the write is fenced off).
   */
  update(claim: Claim, change: StatusChange, now: number): Promise<boolean>
  /** Claims up to `limit` stored objects whose rescan is due, oldest due first (kind 'rescan'). */
  claimRescans(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]>
  /**
   * Gives a lease back unfinished (shutdown): the job is due again at once, in the status it
   * is in, and the claim is not counted as a try. False when the claim no longer holds it.
   */
  release(claim: Claim, now: number): Promise<boolean>
  queueStats(): Promise<QueueStats>

  /**
   * Admin: an infected, unscannable or failed upload not being worked on goes to promotion now,
   * remembering what was released (its status and `signature`). With `from`, only while it is still
   * in that status; with `version`, the promotion copies that object version (verified by the
   * caller). Null when it is not releasable.
   */
  requestRelease(id: string, release: ReleaseRequest, now: number): Promise<UploadRecord | null>
  /** Admin: a stored upload not being worked on is due for a rescan now. False otherwise. */
  scheduleRescan(id: string, now: number): Promise<boolean>
  /** Admin: a failed upload not being worked on goes back to pending now, with a fresh try budget. False otherwise. */
  retryFailed(id: string, now: number): Promise<boolean>
  /** Failed uploads whose automatic retry is due go back to pending (at most `limit`); how many did. */
  requeueFailed(now: number, limit: number): Promise<number>
  /**
   * Creates a rescan and, unless it is an adoption, covers the selected stored uploads and makes
   * them due now: an id list at once; other selections a batch of uploads at a time (the first one
   * here, the others by advanceRescans), the rescan listing until the last batch.
   */
  createRescan(rescan: { id: string; scope: Record<string, unknown>; createdBy: string; createdAt: number }, selection: RescanSelection): Promise<RescanRecord>
  getRescan(id: string): Promise<RescanRecord | null>
  /** Newest first. */
  listRescans(limit: number): Promise<RescanRecord[]>
  /**
   * Stops a rescan: its unfinished uploads are no longer due for it (clean ones go back to their
   * regular schedule, scannedAt + intervalMs), a batch at a time (the first one here, the others
   * by advanceRescans). It counts no outcome from then on. False when it is not running or listing.
   */
  cancelRescan(id: string, now: number, intervalMs: number): Promise<boolean>
  /**
   * One batch of the oldest rescan work left, in one short transaction: covering a listing
   * rescan's next uploads, or unwinding a cancelled one's. False when none is left.
   */
  advanceRescans(now: number, intervalMs: number): Promise<boolean>
  /** Retention: deletes at most one batch of each kind of old row; how many rows went (0: nothing left to prune). */
  prune(cutoffs: PruneCutoffs): Promise<number>
  /** Claims an adoption whose listing is not finished (one worker at a time, leased). */
  claimAdoption(owner: string, leaseMs: number, now: number): Promise<AdoptionClaim | null>
  /**
   * In one transaction: registers the listed objects not known yet (by object key) as pending
   * uploads in production covered by the adoption, and saves the next continuation token (null:
   * listing done). Returns how many were new, or null when the claim was lost.
   */
  adoptPage(
    claim: AdoptionClaim,
    objects: { id: string; key: string; size: number; contentType: string }[],
    nextToken: string | null,
    leaseMs: number,
    now: number
  ): Promise<number | null>
  recordAudit(entry: AuditEntry): Promise<void>
  /** Newest first. */
  listAudit(limit: number, before?: number): Promise<AuditEntry[]>
  /** Events not delivered yet and due, claimed for delivery. */
  claimEvents(owner: string, limit: number, leaseMs: number, now: number): Promise<OutboxEvent[]>
  /** Delivered: never sent again. Fenced by the claim token. */
  eventDelivered(event: OutboxEvent, now: number): Promise<void>
  /** Not delivered: tried again at nextAttemptAt. Fenced by the claim token. */
  eventFailed(event: OutboxEvent, error: string, nextAttemptAt: number): Promise<void>
  recordScan(scan: ScanRecord): Promise<void>
  listScans(uploadId: string): Promise<ScanRecord[]>
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>
  close(): Promise<void>
}

/** The upload's intent was abandoned or swept before its record was committed: the upload is not accepted. */
export class UploadIntentLostError extends Error {
  override name = 'UploadIntentLostError'
}

/** The state store could not be reached or failed; retry later. */
export class StateUnavailableError extends Error {
  override name = 'StateUnavailableError'
}
