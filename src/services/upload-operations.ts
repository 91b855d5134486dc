import { GatewayError } from '../domain/errors.ts'
import { releasableStatuses } from '../domain/upload-state.ts'
import type { AuditLog } from '../ports/history-store.ts'
import { ObjectNotFoundError, type ObjectStore } from '../ports/object-store.ts'
import type { UploadActions } from '../ports/upload-actions.ts'
import type { ReleasableStatus, UploadLookup, UploadRecord } from '../ports/upload-record.ts'
import { StreamMeter } from './stream-meter.ts'

/**
 * An operator's actions on one upload: release a false positive, or rescan it now. Each is
 * audited with its actor (a key id, never the key).
 */
export class UploadOperations {
  readonly #uploads: UploadLookup
  readonly #actions: UploadActions
  readonly #audit: AuditLog
  readonly #objects: ObjectStore

  constructor(deps: { uploads: UploadLookup; actions: UploadActions; audit: AuditLog; objects: ObjectStore }) {
    this.#uploads = deps.uploads
    this.#actions = deps.actions
    this.#audit = deps.audit
    this.#objects = deps.objects
  }

  async rescan(id: string, actor: string): Promise<void> {
    const upload = await this.#uploads.getUpload(id)
    if (!upload) throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
    // A failed upload is scanned again from the start, with a fresh budget of tries.
    const scheduled = upload.status === 'failed' ? await this.#actions.retryFailed(id, Date.now()) : await this.#actions.scheduleRescan(id, Date.now())
    if (!scheduled) {
      throw new GatewayError('GW_CONFLICT', `upload ${id} is ${upload.status}: only clean, infected, unscannable or failed uploads that are not being scanned can be rescanned`)
    }
    await this.#audit.recordAudit({ at: Date.now(), actor, action: 'upload.rescan', target: id, detail: { status: upload.status } })
  }

  /**
   * Releases a false positive. The stored bytes are read and hashed first, here: a release is a
   * rare, deliberate act, and an operator must learn at once that the bytes are not the upload's.
   * The promotion then copies exactly the version that was hashed (S3 CopySourceIfMatch on its ETag).
   */
  async release(id: string, reason: string, actor: string, signal?: AbortSignal): Promise<void> {
    const upload = await this.#uploads.getUpload(id)
    if (!upload) throw new GatewayError('GW_NOT_FOUND', `no upload ${id}`)
    const refused = (): GatewayError =>
      new GatewayError('GW_CONFLICT', `upload ${id} is ${upload.status}: only infected, unscannable or failed uploads that are not being worked on can be released`)
    if (!(releasableStatuses as readonly string[]).includes(upload.status)) throw refused()
    const from = upload.status as ReleasableStatus
    const version = await this.#verifiedVersion(upload, signal)
    const signature = from === 'infected' ? (upload.verdict?.signature ?? null) : null
    const released = await this.#actions.requestRelease(id, { by: actor, reason, from, signature, version }, Date.now())
    if (!released) throw refused()
    await this.#audit.recordAudit({ at: Date.now(), actor, action: 'upload.release', target: id, detail: { reason, verdict: upload.verdict, status: upload.status } })
  }

  /** The version of the stored object whose size and SHA-256 match the upload; refuses the release otherwise. */
  async #verifiedVersion(upload: UploadRecord, signal?: AbortSignal): Promise<string | null> {
    // An adopted object that was never read whole has no hash to compare with: it is released where it is.
    if (upload.sha256 === '') return null
    let opened
    try {
      opened = await this.#objects.get(upload.location, upload.objectKey, signal)
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) throw err
      throw new GatewayError('GW_CONFLICT', `upload ${upload.id} cannot be released: its object ${upload.objectKey} is missing from ${upload.location}`)
    }
    const meter = new StreamMeter()
    await meter.measure(opened.body, signal)
    if (meter.bytes !== upload.size || meter.sha256 !== upload.sha256) {
      throw new GatewayError(
        'GW_CONFLICT',
        `upload ${upload.id} cannot be released: the object in ${upload.location} has ${meter.bytes} bytes with SHA-256 ${meter.sha256}, ` +
          `but ${upload.size} bytes with SHA-256 ${upload.sha256} were uploaded; these are not the uploaded bytes, so nothing is promoted (ask for the file to be uploaded again)`
      )
    }
    // In production (released in place) nothing is copied: the version pins only a promotion's copy.
    return upload.location === 'quarantine' ? opened.info.version : null
  }
}
