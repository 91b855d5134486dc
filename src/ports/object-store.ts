import type { Readable } from 'node:stream'

/** The two places an object can live: quarantine (unscanned or rejected) and production (scanned clean). */
export type Area = 'quarantine' | 'production'

export interface PutOptions {
  contentType: string
  /** Stored with the object (S3 user metadata, or the fs sidecar). Keys are lower-case ASCII. */
  metadata: Record<string, string>
  /** Aborting the signal aborts the write and removes what was written (no orphan multipart parts). */
  signal?: AbortSignal
  /** Called whenever the store has taken more of the body for good (S3: a part stored), so a slow store is told from a hung one. */
  onProgress?: () => void
  /**
   * Called with true when the put starts waiting for memory it shares with other puts (S3: a free
   * part buffer), with false once it has it: neither the store's fault nor the client's.
   */
  onBufferWait?: (waiting: boolean) => void
}

export interface ObjectInfo {
  size: number
  /** Opaque version of the content (S3 ETag): changes whenever the bytes do. */
  version: string
  contentType: string
  metadata: Record<string, string>
  /** How a browser is to take it (`attachment` for active content), when set. */
  contentDisposition?: string
}

/** A copy's options. `contentType` and `contentDisposition` replace the source's (promotion sets the detected type). */
export interface CopyOptions {
  ifVersion?: string
  signal?: AbortSignal
  contentType?: string
  contentDisposition?: string
  /**
   * The source as the caller just read it (size, type, metadata, version), so the store need not
   * look it up again. Only with ifVersion equal to its version: the store still copies that
   * version only, or throws ObjectChangedError / ObjectNotFoundError.
   */
  source?: ObjectInfo
}

/** Where an object lives, as a client would address it (S3 bucket, or fs directory). */
export interface ObjectLocation {
  bucket: string
  key: string
}

export interface ObjectPage {
  /** modifiedAt: when the object was last written, epoch ms. */
  objects: { key: string; size: number; modifiedAt: number }[]
  nextToken: string | null
}

/** A write that was started and neither finished nor aborted (S3: an incomplete multipart upload; fs: a temp file). */
export interface OpenUpload {
  key: string
  /** Names this write among others to the same key (S3 UploadId, fs temp file name). */
  uploadId: string
  /** When it started (S3 Initiated) or last wrote (fs mtime), epoch ms. */
  startedAt: number
}

export interface OpenUploadPage {
  uploads: OpenUpload[]
  nextToken: string | null
}

export interface AreaHealth {
  area: Area
  ok: boolean
  /** What is wrong, for /readyz: for example "bucket quarantine-uploads does not exist". */
  detail?: string
}

/**
 * The object store port. Every method is idempotent where it can be, so a step that
 * crashed half-way is repaired by running it again.
 */
export interface ObjectStore {
  /** Bytes of part buffers puts hold right now (S3: taken from the shared pool; fs: none, it writes as it reads). */
  readonly bufferedBytes: number
  location(area: Area, key: string): ObjectLocation
  /** Streams body to area/key; resolves only once the object is durably stored. On any error or abort nothing is left behind. */
  put(area: Area, key: string, body: Readable, options: PutOptions): Promise<void>
  /** Opens the object for reading. Throws ObjectNotFoundError when it does not exist. */
  get(area: Area, key: string, signal?: AbortSignal): Promise<{ body: Readable; info: ObjectInfo }>
  /** null when the object does not exist. */
  head(area: Area, key: string): Promise<ObjectInfo | null>
  /**
   * Copies from one area to the other with content type and metadata (or the content type and
   * disposition given), replacing the target's tags with `tags`. Overwrites. With `ifVersion`, copies only that version of the source and
   * throws ObjectChangedError when the source is another one. An aborted `signal` stops it before
   * it is sent (and the request if it is under way: the store may still have applied it).
   */
  copy(from: Area, to: Area, key: string, tags: Record<string, string>, options?: CopyOptions): Promise<void>
  setTags(area: Area, key: string, tags: Record<string, string>, options?: { signal?: AbortSignal }): Promise<void>
  /** {} when the object has no tags. Throws ObjectNotFoundError when it does not exist. */
  getTags(area: Area, key: string): Promise<Record<string, string>>
  /**
   * One page of the keys under prefix, in key order, after the position `continuationToken`
   * (null: from the start); nextToken is null on the last page. Memory is one page, however
   * many objects there are.
   */
  list(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<ObjectPage>
  /** Deleting an object that does not exist is not an error. */
  delete(area: Area, key: string, options?: { signal?: AbortSignal }): Promise<void>
  /**
   * One page of the writes still open under prefix (left by a process killed mid-upload, or whose
   * abort failed), after `continuationToken` (null: from the start). Memory is one page.
   */
  listOpenUploads(area: Area, prefix: string, continuationToken: string | null, limit: number): Promise<OpenUploadPage>
  /** Removes what an open write left (parts, temp file). Aborting one that is gone is not an error. */
  abortOpenUpload(area: Area, upload: Pick<OpenUpload, 'key' | 'uploadId'>): Promise<void>
  check(): Promise<AreaHealth[]>
  close(): Promise<void>
}

export class ObjectNotFoundError extends Error {
  override name = 'ObjectNotFoundError'
  constructor(area: Area, key: string) {
    super(`object ${key} not found in ${area}`)
  }
}

/** The object is not the version the caller asked for: its bytes changed. */
export class ObjectChangedError extends Error {
  override name = 'ObjectChangedError'
  constructor(area: Area, key: string) {
    super(`object ${key} in ${area} changed since it was read`)
  }
}

/** The store could not be reached or failed; the operation may succeed if tried again. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError'
}
