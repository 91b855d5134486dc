import type { StoredStatus } from '../../domain/upload-state.ts'
import type { Area } from '../../ports/object-store.ts'
import type { NewEvent, OutboxEvent } from '../../ports/event-outbox.ts'
import type { AuditEntry, ScanRecord } from '../../ports/history-store.ts'
import type { AdoptionClaim, RescanRecord } from '../../ports/rescan-store.ts'
import type { Rejection, ReleasableStatus, UploadRecord, Verdict } from '../../ports/upload-record.ts'

/**
 * Rows to records, shared by both adapters. Every number goes through Number(): pg returns
 * BIGINT and count() as strings, node:sqlite returns numbers. JSON columns are TEXT in both.
 */
export type Row = Record<string, unknown>

export function nullableString(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value)
}

export function nullableNumber(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value)
}

export function toRecord(row: Row): UploadRecord {
  const releasedAt = nullableNumber(row.released_at)
  return {
    id: String(row.id),
    objectKey: String(row.object_key),
    size: Number(row.size),
    sha256: String(row.sha256),
    filename: nullableString(row.filename),
    contentType: String(row.content_type),
    status: String(row.status) as StoredStatus,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    scannedAt: nullableNumber(row.scanned_at),
    verdict: row.verdict === null ? null : (JSON.parse(String(row.verdict)) as Verdict | Rejection),
    scannedVersion: nullableString(row.scanned_version),
    attempts: Number(row.attempts),
    lastError: nullableString(row.last_error),
    runAt: Number(row.run_at),
    location: String(row.location) as Area,
    nextScanAt: nullableNumber(row.next_scan_at),
    released:
      releasedAt === null
        ? null
        : {
            by: String(row.released_by),
            at: releasedAt,
            reason: String(row.release_reason),
            status: String(row.released_status ?? 'failed') as ReleasableStatus,
            signature: nullableString(row.released_signature)
          },
    failedRounds: Number(row.failed_rounds ?? 0),
    failedRetryAt: nullableNumber(row.failed_retry_at),
    owner:
      row.owner_token_id === null || row.owner_token_id === undefined
        ? null
        : {
            tokenId: String(row.owner_token_id),
            subject: nullableString(row.owner_subject),
            meta: row.owner_meta === null ? null : (JSON.parse(String(row.owner_meta)) as Record<string, unknown>)
          }
  }
}

export function toScan(row: Row): ScanRecord {
  return {
    uploadId: String(row.upload_id),
    startedAt: Number(row.started_at),
    durationMs: Number(row.duration_ms),
    endpoint: nullableString(row.endpoint),
    engine: nullableString(row.engine),
    signatureVersion: nullableNumber(row.signature_version),
    outcome: String(row.outcome) as ScanRecord['outcome'],
    signature: nullableString(row.signature),
    detail: nullableString(row.detail),
    bytes: Number(row.bytes)
  }
}

/** A row of RESCAN_SUMMARY_SQL: the rescan and the counts of its items (absent when it has none). */
export function toRescan(row: Row): RescanRecord {
  const state = String(row.state) as RescanRecord['state']
  const unfinished = Number(row.unfinished ?? 0)
  return {
    id: String(row.id),
    scope: JSON.parse(String(row.scope)) as Record<string, unknown>,
    createdBy: String(row.created_by),
    createdAt: Number(row.created_at),
    state,
    cancelledAt: nullableNumber(row.cancelled_at),
    total: Number(row.total ?? 0),
    done: Number(row.done ?? 0),
    clean: Number(row.clean ?? 0),
    infected: Number(row.infected ?? 0),
    unscannable: Number(row.unscannable ?? 0),
    failed: Number(row.failed ?? 0),
    // An adoption still listing may cover more uploads yet: it has not finished whatever is counted.
    lastDoneAt: state !== 'listing' && unfinished === 0 ? nullableNumber(row.last_done_at) : null
  }
}

export function toAudit(row: Row): AuditEntry {
  return {
    at: Number(row.at),
    actor: String(row.actor),
    action: String(row.action),
    target: String(row.target),
    detail: JSON.parse(String(row.detail)) as Record<string, unknown>
  }
}

export function toEvent(row: Row): OutboxEvent {
  return {
    id: String(row.id),
    type: String(row.type) as NewEvent['type'],
    data: JSON.parse(String(row.data)) as Record<string, unknown>,
    createdAt: Number(row.created_at),
    attempts: Number(row.attempts),
    token: String(row.lease_token)
  }
}

export function toAdoptionClaim(row: Row): AdoptionClaim {
  return {
    rescanId: String(row.id),
    bucket: String(row.bucket),
    prefix: String(row.prefix ?? ''),
    continuationToken: nullableString(row.continuation_token),
    token: String(row.lease_token)
  }
}

/** An adopted object's filename: the last segment of its key, null when the key ends with a slash. */
export function filenameOfKey(key: string): string | null {
  const last = key.slice(key.lastIndexOf('/') + 1)
  return last === '' ? null : last
}
