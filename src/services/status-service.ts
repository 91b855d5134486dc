import { publicStatus, type PublicStatus } from '../domain/upload-state.ts'
import type { ObjectLocation, ObjectStore } from '../ports/object-store.ts'
import type { StateStore } from '../ports/state-store.ts'
import type { UploadRecord, Verdict } from '../ports/upload-record.ts'

export interface UploadView {
  id: string
  status: PublicStatus
  size: number
  sha256: string
  filename: string | null
  contentType: string
  createdAt: string
  scannedAt: string | null
  verdict: Verdict | null
  object?: ObjectLocation
  /** When an operator released it despite its verdict: who, when, why. */
  released?: { by: string; at: string; reason: string }
}

/** What a client may know about an upload: internal phases and leases stay inside. */
export class StatusService {
  readonly #state: StateStore
  readonly #objects: ObjectStore

  constructor(deps: { state: StateStore; objects: ObjectStore }) {
    this.#state = deps.state
    this.#objects = deps.objects
  }

  async get(id: string): Promise<UploadView | null> {
    const record = await this.#state.getUpload(id)
    return record ? this.view(record) : null
  }

  view(record: UploadRecord): UploadView {
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
      ...(record.released ? { released: { by: record.released.by, at: new Date(record.released.at).toISOString(), reason: record.released.reason } } : {})
    }
  }
}
