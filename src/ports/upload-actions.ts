import type { ReleasableStatus, UploadRecord } from './upload-record.ts'

export interface ReleaseRequest {
  by: string
  reason: string
  from?: ReleasableStatus
  signature?: string | null
  version?: string | null
}

/** An operator's actions on one upload; each applies only to an upload no worker holds. */
export interface UploadActions {
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
}
