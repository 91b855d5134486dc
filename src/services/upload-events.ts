import { randomUUID } from 'node:crypto'
import type { NewEvent } from '../ports/event-outbox.ts'
import { rejection, type NewUpload, type UploadRecord, type Verdict } from '../ports/upload-record.ts'

/**
 * Builds the webhook events a change writes to the outbox with itself. With no webhook
 * configured there is nobody to deliver to, so nothing is written and the outbox stays empty.
 */
export class UploadEvents {
  readonly enabled: boolean

  constructor(enabled: boolean) {
    this.enabled = enabled
  }

  /** The events to write with a change: one about the upload, or none when webhooks are off. */
  about(type: NewEvent['type'], upload: Pick<UploadRecord, 'id' | 'objectKey' | 'size' | 'sha256' | 'filename' | 'verdict'> & Pick<NewUpload, 'owner'>, now: number, extra: { verdict?: Verdict | null; [key: string]: unknown } = {}): NewEvent[] {
    if (!this.enabled) return []
    return [
      {
        // Receivers drop a repeated delivery by this id.
        id: randomUUID(),
        type,
        createdAt: now,
        data: {
          uploadId: upload.id,
          objectKey: upload.objectKey,
          size: upload.size,
          sha256: upload.sha256,
          filename: upload.filename,
          verdict: upload.verdict,
          // The upload token's end user and the application's own fields; null for uploads made with a key.
          sub: upload.owner?.subject ?? null,
          meta: upload.owner?.meta ?? null,
          ...extra
        }
      }
    ]
  }

  /** The events of an upload committed as rejected (commitRejectedUpload): its record is new, so built from the upload and the reason. */
  rejected(upload: NewUpload, reason: string, now: number): NewEvent[] {
    return this.about('upload.rejected', { ...upload, verdict: rejection(reason) }, now, { contentType: upload.contentType })
  }
}
