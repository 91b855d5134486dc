import type { StoredStatus } from '../domain/upload-state.ts'
import type { Area } from './object-store.ts'
import type { NewEvent } from './event-outbox.ts'
import type { UploadRecord, Verdict } from './upload-record.ts'

/** A claimed job: the record, and the lease that fences every write that ends it. */
export interface Claim {
  upload: UploadRecord
  owner: string
  token: string
  /** scan: a step of the upload's own flow (lease in runAt); rescan: a rescan of a stored object (lease in nextScanAt). */
  kind: 'scan' | 'rescan'
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

/** What is waiting to be scanned or promoted, for metrics. */
export interface QueueStats {
  /** Uploads not yet in a terminal status (pending, scanning, promoting). */
  depth: number
  /** Creation time of the oldest of those, null when there is none. */
  oldestCreatedAt: number | null
}

/** The jobs of the uploads' own flow and of rescans: claimed with a lease, every write fenced by it. */
export interface JobQueue {
  /**
   * Claims up to `limit` due jobs in one statement, leasing them to `owner` until now + leaseMs.
   * queue 'uploads': the uploads' own flow (the default); 'adopted': objects adopted from
   * production waiting for their first scan, which workers take with the rescans' share.
   */
  claim(owner: string, limit: number, leaseMs: number, now: number, queue?: 'uploads' | 'adopted'): Promise<Claim[]>
  /** Claims up to `limit` stored objects whose rescan is due, oldest due first (kind 'rescan'). */
  claimRescans(owner: string, limit: number, leaseMs: number, now: number): Promise<Claim[]>
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
  giveBack(claim: Claim, now: number): Promise<boolean>
  /** Failed uploads whose automatic retry is due go back to pending (at most `limit`); how many did. */
  requeueFailed(now: number, limit: number): Promise<number>
  queueStats(): Promise<QueueStats>
}
