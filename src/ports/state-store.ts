import type { StoredStatus } from '../domain/upload-state.ts'

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
}

/** A claimed job: the record, and the lease that fences every write that ends it. */
export interface Claim {
  upload: UploadRecord
  owner: string
  token: string
}

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
  /** For pending: when to try again. */
  runAt?: number
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

export interface StateStore {
  /** Creates or upgrades the schema; safe to run at every start. */
  migrate(): Promise<void>
  insertUpload(upload: NewUpload): Promise<void>
  getUpload(id: string): Promise<UploadRecord | null>
  /** Claims up to `limit` due jobs in one statement, leasing them to `owner` until now + leaseMs. */
  claim(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]>
  /** Extends a lease; false when the claim was lost (another worker owns the job now). */
  renewLease(claim: Claim, leaseMs: number, now: number): Promise<boolean>
  /**
   * Applies a change if the claim still holds its lease and the upload is still in the status
   * the claim says; false otherwise (the write is fenced off).
   */
  update(claim: Claim, change: StatusChange, now: number): Promise<boolean>
  /**
   * Gives a lease back unfinished (shutdown): the job is due again at once, in the status it
   * is in, and the claim is not counted as a try. False when the claim no longer holds it.
   */
  release(claim: Claim, now: number): Promise<boolean>
  queueStats(): Promise<QueueStats>
  recordScan(scan: ScanRecord): Promise<void>
  listScans(uploadId: string): Promise<ScanRecord[]>
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>
  close(): Promise<void>
}

/** The state store could not be reached or failed; retry later. */
export class StateUnavailableError extends Error {
  override name = 'StateUnavailableError'
}
