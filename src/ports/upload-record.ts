import type { UploadOwner } from '../domain/principal.ts'
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

/** Why an upload was refused without a scan: its content type. Kept where a verdict goes. */
export interface Rejection {
  result: 'rejected'
  signature: null
  /** Names the detected type. */
  reason: string
  engine: 'content-type'
  signatureVersion: null
}

/** The rejection a reason stands for, as stored and shown. */
export function rejection(reason: string): Rejection {
  return { result: 'rejected', signature: null, reason, engine: 'content-type', signatureVersion: null }
}

export interface NewUpload {
  id: string
  objectKey: string
  size: number
  sha256: string
  filename: string | null
  contentType: string
  createdAt: number
  /** Set when an upload token created it: the token's jti, its subject and meta. */
  owner?: UploadOwner | null
}

export interface UploadRecord extends NewUpload {
  status: StoredStatus
  updatedAt: number
  scannedAt: number | null
  /** The scanner's verdict; for status rejected, the rejection. */
  verdict: Verdict | Rejection | null
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
  /** Who owns it: the upload token that created it (its jti, subject and meta); null for keys and anonymous uploads. */
  owner: UploadOwner | null
}

/** What an operator may release. */
export type ReleasableStatus = 'infected' | 'unscannable' | 'failed'

/** Reads one upload record. */
export interface UploadLookup {
  getUpload(id: string): Promise<UploadRecord | null>
}
