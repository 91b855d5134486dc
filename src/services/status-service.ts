import type { Principal } from '../domain/principal.ts'
import { publicStatus } from '../domain/upload-state.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import type { UploadLookup, UploadRecord } from '../ports/upload-record.ts'
import { assertTokenMayRead } from './upload-tokens.ts'
import type { UploadView } from './upload-view.ts'

/** What a client may know about an upload: internal phases and leases stay inside. */
export class StatusService {
  readonly #uploads: UploadLookup
  readonly #objects: ObjectStore
  readonly #tokenReadTtlMs: number

  constructor(deps: { uploads: UploadLookup; objects: ObjectStore }, options: { tokenReadTtlMs: number }) {
    this.#uploads = deps.uploads
    this.#objects = deps.objects
    this.#tokenReadTtlMs = options.tokenReadTtlMs
  }

  /** The upload's status as `principal` may see it: an upload token only its own uploads (assertTokenMayRead). */
  async get(id: string, principal: Principal): Promise<UploadView | null> {
    const record = await this.#uploads.getUpload(id)
    if (record && principal.kind === 'token') assertTokenMayRead(principal, record, this.#tokenReadTtlMs)
    return record ? this.#view(record) : null
  }

  #view(record: UploadRecord): UploadView {
    const status = publicStatus(record.status, record.verdict?.result ?? null)
    return {
      id: record.id,
      status,
      size: record.size,
      sha256: record.sha256,
      filename: record.filename,
      contentType: record.contentType,
      createdAt: new Date(record.createdAt).toISOString(),
      // A verdict is shown once it is final: a clean one only after the production copy exists.
      scannedAt: status === 'scanning' || record.scannedAt === null ? null : new Date(record.scannedAt).toISOString(),
      verdict: status === 'scanning' ? null : record.verdict,
      ...(status === 'clean' ? { object: this.#objects.location('production', record.objectKey) } : {}),
      ...(record.owner ? { sub: record.owner.subject, meta: record.owner.meta } : {}),
      ...(record.released ? { released: { by: record.released.by, at: new Date(record.released.at).toISOString(), reason: record.released.reason } } : {})
    }
  }
}
