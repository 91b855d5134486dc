import { randomBytes } from 'node:crypto'
import { pipeline, type Readable } from 'node:stream'
import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import { GatewayError } from '../domain/errors.ts'
import { StoreUnavailableError, type ObjectStore } from '../ports/object-store.ts'
import type { NewUpload, StateStore, UploadRecord } from '../ports/state-store.ts'
import { sanitizeContentType, sanitizeFilename } from './filename.ts'
import { StreamLimitError, StreamMeter } from './stream-meter.ts'

export interface IngestOptions {
  maxBytes: number
  keyPrefix: string
}

export interface FileInput {
  body: Readable
  filename: string | undefined
  contentType: string | undefined
  /** Aborted when the client goes away or is too slow (the reason says which): the write to the store is abandoned and cleaned up. */
  signal: AbortSignal
}

/** An object written to quarantine whose record is not committed yet. */
export type StoredUpload = Omit<NewUpload, 'createdAt'>

/**
 * Streams an upload into quarantine, then commits its record. The two steps are separate so
 * the HTTP layer can still refuse the request (a second file, say) after the bytes are stored;
 * `discard` then removes the object. A 202 is only ever sent after `commit`.
 */
export class IngestService {
  readonly #objects: ObjectStore
  readonly #state: StateStore
  readonly #options: IngestOptions
  readonly #onCommitted: () => void
  readonly #metrics: Metrics

  constructor(deps: { objects: ObjectStore; state: StateStore; metrics: Metrics; onCommitted?: () => void }, options: IngestOptions) {
    this.#objects = deps.objects
    this.#state = deps.state
    this.#metrics = deps.metrics
    this.#options = options
    this.#onCommitted = deps.onCommitted ?? (() => {})
  }

  async store(file: FileInput, log: Log): Promise<StoredUpload> {
    // 128 random bits, hex so keys and paths are the same on case-insensitive file systems.
    const id = randomBytes(16).toString('hex')
    const objectKey = `${this.#options.keyPrefix}${id}`
    const filename = sanitizeFilename(file.filename)
    const contentType = sanitizeContentType(file.contentType)
    const meter = new StreamMeter(this.#options.maxBytes)
    pipeline(file.body, meter, () => {})
    log.info({ uploadId: id }, 'upload started')
    try {
      await this.#objects.put('quarantine', objectKey, meter, {
        contentType,
        metadata: { 'upload-id': id, ...(filename ? { filename: encodeURIComponent(filename) } : {}) },
        signal: file.signal
      })
    } catch (err) {
      this.#metrics.uploadBytes('discarded', meter.bytes)
      // A put whose answer was lost may have stored the object all the same: remove it (best effort).
      if (err instanceof StoreUnavailableError) await this.discard({ id, objectKey, size: 0 }, log)
      throw this.#storeFailure(err, meter, file.signal)
    }
    const stored = { id, objectKey, size: meter.bytes, sha256: meter.sha256 ?? '', filename, contentType }
    if (stored.size === 0) {
      await this.discard(stored, log)
      throw new GatewayError('GW_EMPTY_FILE')
    }
    return stored
  }

  async commit(stored: StoredUpload, log: Log): Promise<UploadRecord> {
    const createdAt = Date.now()
    try {
      await this.#state.insertUpload({ ...stored, createdAt })
    } catch (err) {
      // The insert may have committed with only its answer lost (a dropped connection): then the
      // upload is accepted. Only a record known to be absent lets the object go; when the store
      // cannot tell, the object stays (an orphan is better than a record pointing at nothing).
      const committed = await this.#state.getUpload(stored.id).then(
        (record) => (record ? true : false),
        () => null
      )
      if (committed === true) log.warn({ err, uploadId: stored.id }, 'the insert committed although its answer was lost')
      else {
        if (committed === false) await this.discard(stored, log)
        else log.error({ err, uploadId: stored.id, key: stored.objectKey }, 'state store unavailable: object left in quarantine without a record')
        // The HTTP error handler turns StateUnavailableError into 503 GW_STATE_UNAVAILABLE.
        throw err
      }
    }
    log.info({ uploadId: stored.id, size: stored.size, sha256: stored.sha256 }, 'upload accepted')
    this.#metrics.uploadBytes('stored', stored.size)
    this.#onCommitted()
    // Built here, not read back: once the insert committed, nothing may make us discard the object.
    return { ...stored, createdAt, status: 'pending', updatedAt: createdAt, scannedAt: null, verdict: null, scannedVersion: null, attempts: 0, lastError: null, runAt: createdAt, location: 'quarantine', nextScanAt: null, released: null, failedRounds: 0, failedRetryAt: null }
  }

  /** Removes an object that will not be committed. Best effort: a failure is logged, not thrown. */
  async discard(stored: Pick<StoredUpload, 'id' | 'objectKey' | 'size'>, log: Log): Promise<void> {
    this.#metrics.uploadBytes('discarded', stored.size)
    try {
      await this.#objects.delete('quarantine', stored.objectKey)
    } catch (err) {
      log.error({ err, uploadId: stored.id, key: stored.objectKey }, 'could not delete a discarded upload from quarantine')
    }
  }

  #storeFailure(err: unknown, meter: StreamMeter, signal: AbortSignal): unknown {
    const cause = meter.errored ?? err
    if (cause instanceof StreamLimitError) return new GatewayError('GW_PAYLOAD_TOO_LARGE', `the file is larger than ${this.#options.maxBytes} bytes`)
    if (cause instanceof GatewayError) return cause
    // The reason the caller stopped the upload (the client left, or sent too slowly).
    if (signal.aborted) return signal.reason instanceof GatewayError ? signal.reason : new GatewayError('GW_CLIENT_ABORTED', undefined, { cause: err })
    if (err instanceof StoreUnavailableError) return new GatewayError('GW_STORE_UNAVAILABLE', undefined, { cause: err })
    return cause
  }
}
