import { pipeline, type Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import { GatewayError } from '../domain/errors.ts'
import { StoreUnavailableError, type ObjectStore } from '../ports/object-store.ts'
import type { UploadOwner } from '../domain/principal.ts'
import { UploadIntentLostError, type UploadIntake, type UploadIntent } from '../ports/upload-intake.ts'
import type { NewUpload, UploadLookup, UploadRecord } from '../ports/upload-record.ts'
import { ContentTypePolicy, rejectionReason, sniffContentType } from './content-type-check.ts'
import { sanitizeContentType, sanitizeFilename } from './filename.ts'
import { gatewayErrorOf } from './port-errors.ts'
import type { UploadAdmission } from './upload-admission.ts'
import { StreamLimitError, StreamMeter } from './stream-meter.ts'
import { watchStore } from './store-watchdog.ts'
import { newUploadId } from '../domain/upload-id.ts'

/** How long a client's Idempotency-Key holds. */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000

export interface IngestOptions {
  maxBytes: number
  keyPrefix: string
  /** A put whose store makes no progress for this long fails with GW_STORE_UNAVAILABLE. */
  storeTimeoutMs: number
  /** GW_ALLOWED_TYPES: what an upload's content may be; empty or absent: any type. */
  allowedTypes?: readonly string[]
}

/** One file of an upload request, as the client sent it. */
export interface IncomingFile {
  body: Readable
  filename: string | undefined
  contentType: string | undefined
}

/** An upload request: exactly one file is expected. */
export interface UploadRequest {
  /** The request's files, as they arrive. */
  files: AsyncIterable<IncomingFile>
  /** Aborted when the client goes away or is too slow (the reason says which): the upload stops, and what was stored is cleaned up. */
  signal: AbortSignal
  /** The client's Idempotency-Key and who sent it (the bearer key's id, or anonymous). */
  idempotency?: { scope: string; key: string }
  /** The upload token's `types`, narrowing GW_ALLOWED_TYPES (never widening it); null or absent: no narrowing, empty: nothing. */
  allowedTypes?: readonly string[] | null
  /** The upload token's owner fields, recorded with the upload; null or absent for keys and anonymous uploads. */
  owner?: UploadOwner | null
  /** A limit below the gateway's (the token's max_size): 413 above it. */
  maxBytes?: number
  /** The upload token creating it: one of its uses is taken with the intent (403 GW_TOKEN_EXHAUSTED when none is left). */
  token?: UploadIntent['token']
}

/** An object written to quarantine whose record is not committed yet. */
type StoredUpload = Omit<NewUpload, 'createdAt'>

/** A retry of an upload that was already accepted under the same Idempotency-Key, with the same bytes. */
interface Replayed {
  replayOf: UploadRecord
}

/**
 * Takes an upload: admits it (or refuses it at once past the number of uploads at once, 503 GW_BUSY), records its intent, streams it
 * into quarantine, then commits its record. The request may still be refused after the bytes are
 * stored (a second file, say): the object is then discarded. An upload is only ever accepted once
 * its record is committed. An intent never committed is removed by the orphan sweeper, whatever
 * happened to this process.
 */
export class IngestService {
  readonly #objects: ObjectStore
  readonly #intake: UploadIntake
  readonly #uploads: UploadLookup
  readonly #admission: UploadAdmission
  readonly #options: IngestOptions
  readonly #onCommitted: () => void
  readonly #metrics: Metrics
  readonly #types: ContentTypePolicy

  constructor(
    deps: { objects: ObjectStore; intake: UploadIntake; uploads: UploadLookup; admission: UploadAdmission; metrics: Metrics; onCommitted?: () => void },
    options: IngestOptions
  ) {
    this.#objects = deps.objects
    this.#intake = deps.intake
    this.#uploads = deps.uploads
    this.#admission = deps.admission
    this.#metrics = deps.metrics
    this.#options = options
    this.#onCommitted = deps.onCommitted ?? (() => {})
    this.#types = new ContentTypePolicy(options.allowedTypes ?? [])
  }

  /**
   * The upload's record once accepted: a new one, or the first answer to a retry under the same
   * Idempotency-Key. Throws what refused it; once the request's signal aborted, its reason.
   */
  async accept(request: UploadRequest, log: Log): Promise<UploadRecord> {
    const ticket = this.#admission.admit()
    if (!ticket) throw new GatewayError('GW_BUSY')
    let stored: StoredUpload | null = null
    let replayed: UploadRecord | null = null
    try {
      for await (const file of request.files) {
        if (stored || replayed) throw new GatewayError('GW_TOO_MANY_FILES')
        const result = await this.#store(file, request, log)
        if ('replayOf' in result) replayed = result.replayOf
        else stored = result
      }
      if (replayed) return replayed
      if (!stored) throw new GatewayError('GW_MISSING_FILE')
      // From here commit cleans up after itself: what it leaves may be a committed upload.
      const committing = { ...stored, owner: request.owner ?? null }
      stored = null
      return await this.#commit(committing, log)
    } catch (err) {
      if (stored) await this.#discard(stored, log)
      // Once cancelled, whatever failed next (the store, the parser) failed because of that.
      throw request.signal.aborted ? request.signal.reason : err
    } finally {
      ticket.done()
    }
  }

  async #store(file: IncomingFile, request: UploadRequest, log: Log): Promise<StoredUpload | Replayed> {
    // 128 random bits, hex so keys and paths are the same on case-insensitive file systems.
    const id = newUploadId()
    const objectKey = `${this.#options.keyPrefix}${id}`
    const filename = sanitizeFilename(file.filename)
    const contentType = sanitizeContentType(file.contentType)
    const now = Date.now()
    // Before the first byte is stored: from here on the object cannot be lost track of.
    const idempotency = request.idempotency ? { ...request.idempotency, ttlMs: IDEMPOTENCY_TTL_MS } : null
    const begun = await this.#intake.beginUpload({ id, objectKey, createdAt: now, ...(request.token ? { token: request.token } : {}) }, idempotency, now)
    if (begun.kind === 'inFlight') {
      throw new GatewayError('GW_IDEMPOTENCY_IN_PROGRESS', `an upload with this Idempotency-Key (${begun.uploadId}) is still being received`)
    }
    if (begun.kind === 'committed') return { replayOf: await this.#compare(file, request.signal, begun.upload) }
    const meter = new StreamMeter(this.#limit(request))
    const sniffed = sniffContentType(file.body)
    pipeline(sniffed.output, meter, () => {})
    // Judged from the first bytes: a refused type stops the upload there (the meter fails with the
    // refusal, as with the size limit), and is refused after the put in case the put won the race.
    const judged = sniffed.detected.then((detected) => {
      const judgement = this.#types.judge(detected, request.allowedTypes ?? null)
      const refusal = judgement.allowed ? null : new GatewayError('GW_TYPE_NOT_ALLOWED', rejectionReason(detected))
      if (refusal) meter.destroy(refusal)
      return { detected, refusal }
    })
    judged.catch(() => undefined)
    log.info({ uploadId: id }, 'upload started')
    const stalled = new AbortController()
    const watchdog = watchStore(meter, this.#options.storeTimeoutMs, () =>
      stalled.abort(new StoreUnavailableError(`the quarantine store made no progress for ${this.#options.storeTimeoutMs} ms`))
    )
    try {
      const putting = this.#objects.put('quarantine', objectKey, meter, {
        contentType,
        metadata: { 'upload-id': id, ...(filename ? { filename: encodeURIComponent(filename) } : {}) },
        signal: AbortSignal.any([request.signal, stalled.signal]),
        onProgress: () => watchdog.progress(),
        // Waiting for a part buffer other uploads hold is neither a hung store nor a slow client.
        onBufferWait: (waiting) => watchdog.hold(waiting)
      })
      // A hung store may not even let the abort finish: answer at once, the sweeper removes what is left.
      await Promise.race([putting, stalledPromise(stalled.signal, putting)])
    } catch (err) {
      const failure = this.#storeFailure(err, meter, this.#limit(request), request.signal, stalled.signal)
      // A store that is failing is not waited for again: the sweeper finishes the cleanup.
      const storeFailing = gatewayErrorOf(failure)?.code === 'GW_STORE_UNAVAILABLE'
      await this.#discard({ id, objectKey, size: meter.bytes }, log, storeFailing ? 0 : this.#options.storeTimeoutMs)
      throw failure
    } finally {
      watchdog.stop()
    }
    const stored = { id, objectKey, size: meter.bytes, sha256: meter.sha256 ?? '', filename, contentType }
    if (stored.size === 0) {
      await this.#discard(stored, log)
      throw new GatewayError('GW_EMPTY_FILE')
    }
    // Settled: the sample was complete before the last byte reached the store.
    const { detected, refusal } = await judged
    if (refusal) {
      await this.#discard(stored, log)
      throw refusal
    }
    if (detected !== contentType) log.info({ uploadId: id, declared: contentType, detected }, 'content type detected')
    // The record keeps what the content is, never what the client declared.
    return { ...stored, contentType: detected }
  }

  /** A retry under a key already used: its bytes are hashed, not stored, and must be the same. */
  async #compare(file: IncomingFile, signal: AbortSignal, original: UploadRecord): Promise<UploadRecord> {
    const meter = new StreamMeter(this.#options.maxBytes)
    try {
      await meter.measure(file.body, signal)
    } catch (err) {
      throw this.#storeFailure(err, meter, this.#options.maxBytes, signal)
    }
    if (meter.bytes !== original.size || meter.sha256 !== original.sha256) {
      throw new GatewayError('GW_IDEMPOTENCY_CONFLICT', `this Idempotency-Key was used for upload ${original.id} with a different file (size or SHA-256)`)
    }
    return original
  }

  async #commit(stored: StoredUpload & { owner: UploadOwner | null }, log: Log): Promise<UploadRecord> {
    const createdAt = Date.now()
    try {
      await this.#intake.commitUpload({ ...stored, createdAt })
    } catch (err) {
      if (err instanceof UploadIntentLostError) {
        // Not accepted (the client is told so by gatewayErrorOf): nothing is left to keep.
        await this.#discard(stored, log)
        throw err
      }
      // The insert may have committed with only its answer lost (a dropped connection): then the
      // upload is accepted. Only a record known to be absent lets the object go; when the store
      // cannot tell, the object stays (an orphan is better than a record pointing at nothing).
      const committed = await this.#uploads.getUpload(stored.id).then(
        (record) => record !== null,
        () => null
      )
      if (committed === false) await this.#discard(stored, log)
      else if (committed === null) {
        // Abandoning is a no-op on a committed upload (its intent is gone): the sweeper then leaves it alone.
        await this.#intake.abandonUpload(stored.id, Date.now()).catch(() => undefined)
        log.error({ err, uploadId: stored.id, key: stored.objectKey }, 'state store unavailable: the object stays until the sweeper finds its intent uncommitted')
      }
      // A StateUnavailableError: the client is told 503 GW_STATE_UNAVAILABLE (gatewayErrorOf).
      if (committed !== true) throw err
      log.warn({ err, uploadId: stored.id }, 'the insert committed although its answer was lost')
    }
    log.info({ uploadId: stored.id, size: stored.size, sha256: stored.sha256 }, 'upload accepted')
    this.#metrics.uploadBytes('stored', stored.size)
    this.#onCommitted()
    // Built here, not read back: once the insert committed, nothing may make us discard the object.
    return { ...stored, createdAt, status: 'pending', updatedAt: createdAt, scannedAt: null, verdict: null, scannedVersion: null, attempts: 0, lastError: null, runAt: createdAt, location: 'quarantine', nextScanAt: null, released: null, failedRounds: 0, failedRetryAt: null }
  }

  /**
   * An upload that will not be committed: its intent is abandoned, so the sweeper removes whatever
   * is left at its next round, and the object is deleted now if the store answers in time. Best
   * effort: a failure is logged, not thrown.
   */
  async #discard(stored: Pick<StoredUpload, 'id' | 'objectKey' | 'size'>, log: Log, waitMs = this.#options.storeTimeoutMs): Promise<void> {
    this.#metrics.uploadBytes('discarded', stored.size)
    await this.#intake.abandonUpload(stored.id, Date.now()).catch((err: unknown) => {
      log.error({ err, uploadId: stored.id }, 'could not mark a discarded upload abandoned: the sweeper removes it after GW_ORPHAN_AFTER')
    })
    const deleting = this.#objects.delete('quarantine', stored.objectKey).catch((err: unknown) => {
      log.warn({ err, uploadId: stored.id, key: stored.objectKey }, 'could not delete a discarded upload from quarantine: the sweeper will')
    })
    // Waited for at most waitMs: a hung store must not hold the answer to the client.
    const timeout = new AbortController()
    await Promise.race([deleting, sleep(waitMs, undefined, { signal: timeout.signal }).catch(() => undefined)])
    timeout.abort()
  }

  /** The largest upload this request may store: the gateway's limit, or the token's below it. */
  #limit(request: UploadRequest): number {
    return Math.min(this.#options.maxBytes, request.maxBytes ?? Number.POSITIVE_INFINITY)
  }

  #storeFailure(err: unknown, meter: StreamMeter, limit: number, signal: AbortSignal, stalled?: AbortSignal): unknown {
    const cause = meter.errored ?? err
    if (cause instanceof StreamLimitError) return new GatewayError('GW_PAYLOAD_TOO_LARGE', `the file is larger than ${limit} bytes`)
    if (cause instanceof GatewayError) return cause
    // The reason the caller stopped the upload (the client left, or sent too slowly).
    if (signal.aborted) return signal.reason instanceof GatewayError ? signal.reason : new GatewayError('GW_CLIENT_ABORTED', undefined, { cause: err })
    if (stalled?.aborted) return new GatewayError('GW_STORE_UNAVAILABLE', (stalled.reason as Error).message, { cause: err })
    // The store's own failure, as it is: the edge tells the client (gatewayErrorOf).
    if (err instanceof StoreUnavailableError) return err
    return cause
  }
}

/** Rejects with the signal's reason once it aborts; `putting` is then left to settle on its own. */
function stalledPromise(signal: AbortSignal, putting: Promise<void>): Promise<never> {
  return new Promise((_resolve, reject) => {
    const onAbort = (): void => {
      putting.catch(() => undefined)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    putting.then(
      () => signal.removeEventListener('abort', onAbort),
      () => signal.removeEventListener('abort', onAbort)
    )
  })
}
