import type { Principal } from '../domain/principal.ts'
import { publicStatus } from '../domain/upload-state.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import type { UploadChanges } from '../ports/upload-changes.ts'
import type { UploadLookup, UploadRecord } from '../ports/upload-record.ts'
import { statusETag } from './live-status.ts'
import { UploadReadCache, type UploadReadCacheOptions } from './upload-read-cache.ts'
import { assertTokenMayRead } from './upload-tokens.ts'
import type { UploadView } from './upload-view.ts'

/** Polled uploads remembered per process (about 1 KiB each), and how long at most (see UploadReadCache). */
export const STATUS_CACHE: UploadReadCacheOptions = { maxEntries: 4096, maxAgeMs: 2000 }

/**
 * What a read remembers. Writes to bookkeeping columns alone (leases, attempts: quietUploadColumns)
 * send no notice, so only what the view and the token check use may be read from `record`.
 */
interface Known {
  record: UploadRecord
  view: UploadView
}

/** What a client may know about an upload: internal phases and leases stay inside. */
export class StatusService {
  readonly #objects: ObjectStore
  readonly #tokenReadTtlMs: number
  readonly #cache: UploadReadCache<Known>

  constructor(
    deps: { uploads: UploadLookup; changes: Pick<UploadChanges, 'onAnyChange' | 'listeningEpoch'>; objects: ObjectStore },
    options: { tokenReadTtlMs: number; cache?: UploadReadCacheOptions }
  ) {
    this.#objects = deps.objects
    this.#tokenReadTtlMs = options.tokenReadTtlMs
    this.#cache = new UploadReadCache(deps, (record) => this.#known(record), options.cache ?? STATUS_CACHE)
  }

  /**
   * The upload's status as `principal` may see it: an upload token only its own uploads
   * (assertTokenMayRead, checked on every read). `seen`: whether the client already holds an ETag
   * (its If-None-Match): a remembered view is answered only when the client holds it or said
   * nothing, so a client never gets a state older than the one it names, even from a replica that
   * has not yet heard of the write.
   */
  async get(id: string, principal: Principal, seen?: (etag: string) => boolean): Promise<UploadView | null> {
    let known = this.#cache.remembered(id)
    if (!known || (seen && !seen(statusETag(known.view)))) known = (await this.#cache.read(id)) ?? undefined
    if (!known) return null
    if (principal.kind === 'token') assertTokenMayRead(principal, known.record, this.#tokenReadTtlMs)
    return known.view
  }

  #known(record: UploadRecord): Known {
    return { record, view: this.#view(record) }
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
