import { assertTransition } from '../domain/upload-state.ts'
import type { Claim, JobQueue, StatusChange } from '../ports/job-queue.ts'
import type { UploadRecord } from '../ports/upload-record.ts'

/** Every state change goes through here: checked against the state machine, fenced by the claim. */
export async function transition(jobs: JobQueue, claim: Claim, change: StatusChange, now = Date.now()): Promise<boolean> {
  assertTransition(claim.upload.status, change.status)
  return jobs.update(claim, change, now)
}

/**
 * The record after a change, as the store writes it (shared-sql.ts statusChangeSql): for a job
 * handed on in memory to its next step, and for the in-memory queue of the unit tests.
 */
export function applyChange(upload: UploadRecord, change: StatusChange, now: number): UploadRecord {
  const or = <T>(value: T | undefined, current: T): T => (value === undefined ? current : value)
  return {
    ...upload,
    status: change.status,
    updatedAt: now,
    verdict: or(change.verdict, upload.verdict),
    scannedAt: or(change.scannedAt, upload.scannedAt),
    scannedVersion: or(change.scannedVersion, upload.scannedVersion),
    lastError: or(change.lastError, upload.lastError),
    attempts: change.resetAttempts ? 0 : change.refundAttempt ? Math.max(0, upload.attempts - 1) : upload.attempts,
    runAt: or(change.runAt, upload.runAt),
    nextScanAt: or(change.nextScanAt, upload.nextScanAt),
    location: or(change.location, upload.location),
    size: or(change.size, upload.size),
    sha256: or(change.sha256, upload.sha256),
    // Any other status ends a scheduled automatic retry: it belongs to the failure it followed.
    failedRetryAt: or(change.failedRetryAt, change.status === 'failed' ? upload.failedRetryAt : null),
    released: change.clearRelease ? null : upload.released
  }
}
