import { GatewayError } from '../domain/errors.ts'
import { ownerOf, type Principal, type UploadOwner } from '../domain/principal.ts'
import type { Log } from '../ports/log.ts'
import type { Metrics } from '../ports/metrics.ts'
import type { ObjectStore } from '../ports/object-store.ts'
import { UploadIntentLostError, type UploadIntake } from '../ports/upload-intake.ts'
import type { NewUpload, UploadLookup } from '../ports/upload-record.ts'
import { ContentTypePolicy, rejectionReason, sniffContentType } from './content-type-check.ts'
import { sanitizeFilename } from './filename.ts'
import { StreamMeter } from './stream-meter.ts'
import type { UploadEvents } from './upload-events.ts'
import { assertTokenMayRead } from './upload-tokens.ts'
import { newUploadId } from '../domain/upload-id.ts'

export interface ResumableUploadsOptions {
  /** GW_MAX_UPLOAD_BYTES. */
  maxBytes: number
  keyPrefix: string
  /** GW_TUS_EXPIRY: an upload not completed this long after its creation is removed. */
  expiryMs: number
  /** Helper objects the tus store keeps beside an upload (`<key><suffix>`), removed once it is complete. */
  companionSuffixes: readonly string[]
  /** GW_ALLOWED_TYPES: empty, any. */
  allowedTypes: readonly string[]
  /** GW_TOKEN_READ_TTL: how long after its creation an upload's expired token may still resume it. */
  tokenReadTtlMs: number
}

/** tus metadata the gateway sets itself at creation (a client's value is replaced): who created the upload. */
export const OWNER_METADATA_KEY = 'gateway-owner'
/** Likewise: the creating token's `types`, which judge the upload once complete. */
export const TYPES_METADATA_KEY = 'gateway-types'

/** What a tus upload's metadata says, once it is complete. */
export type TusMetadata = Record<string, string | null> | undefined

/**
 * tus (resumable) uploads, from their creation to the same pipeline as a multipart upload: the
 * intent is recorded at creation (so the orphan sweeper leaves the upload's objects alone until it
 * expires, and a token's use is counted), and once the last byte is stored the object is read back
 * once from quarantine for its size, SHA-256 and content type, and its record committed: pending
 * (to be scanned) when the type is allowed, else rejected (it stays in quarantine, never scanned).
 */
export class ResumableUploads {
  readonly #objects: ObjectStore
  readonly #intake: UploadIntake
  readonly #uploads: UploadLookup
  readonly #metrics: Metrics
  readonly #events: UploadEvents
  readonly #onCommitted: () => void
  readonly #options: ResumableUploadsOptions
  readonly #types: ContentTypePolicy

  constructor(
    deps: { objects: ObjectStore; intake: UploadIntake; uploads: UploadLookup; metrics: Metrics; events: UploadEvents; onCommitted?: () => void },
    options: ResumableUploadsOptions
  ) {
    this.#objects = deps.objects
    this.#intake = deps.intake
    this.#uploads = deps.uploads
    this.#metrics = deps.metrics
    this.#events = deps.events
    this.#onCommitted = deps.onCommitted ?? (() => {})
    this.#options = options
    this.#types = new ContentTypePolicy(options.allowedTypes)
  }

  /** A new upload id, as multipart uploads get. */
  newId(): string {
    return newUploadId()
  }

  /** The largest upload this principal may make: the global limit, or its token's max_size below it. */
  limitFor(principal: Principal): number {
    const tokenMax = principal.kind === 'token' ? principal.maxSize : null
    return tokenMax === null ? this.#options.maxBytes : Math.min(tokenMax, this.#options.maxBytes)
  }

  /**
   * A new upload of `length` bytes is about to be created: refused when too large or empty, else
   * its intent is recorded (with one use of a token). Returns the metadata to keep for it: the
   * client's, with the owner and types (token id, subject, meta, types: all in the token its holder
   * has) set.
   */
  async begin(id: string, principal: Principal, length: number, metadata: TusMetadata, log: Log): Promise<Record<string, string | null>> {
    const limit = this.limitFor(principal)
    if (length > limit) throw new GatewayError('GW_PAYLOAD_TOO_LARGE', `the file is larger than ${limit} bytes`)
    if (length === 0) throw new GatewayError('GW_EMPTY_FILE')
    const now = Date.now()
    const token = principal.kind === 'token' ? { token: { jti: principal.jti, maxUploads: principal.maxUploads, expiresAt: principal.expiresAt } } : {}
    await this.#intake.beginUpload({ id, objectKey: this.#key(id), createdAt: now, sweepAfter: now + this.#options.expiryMs, ...token }, null, now)
    log.info({ uploadId: id, length }, 'tus upload created')
    const { [OWNER_METADATA_KEY]: _owner, [TYPES_METADATA_KEY]: _types, ...kept } = metadata ?? {}
    const owner = ownerOf(principal)
    const types = principal.kind === 'token' ? principal.types : null
    return { ...kept, ...(owner ? { [OWNER_METADATA_KEY]: JSON.stringify(owner) } : {}), ...(types ? { [TYPES_METADATA_KEY]: JSON.stringify(types) } : {}) }
  }

  /**
   * Throws unless this principal may resume, read or terminate an upload with this metadata: keys
   * may; a token only its own uploads (403), and once expired only within GW_TOKEN_READ_TTL of the
   * upload's creation (401 GW_TOKEN_EXPIRED after), so an upload outlives its short-lived token.
   */
  assertMayTouch(principal: Principal, metadata: TusMetadata, createdAt: number): void {
    if (principal.kind !== 'token') return
    assertTokenMayRead(principal, { owner: jsonIn<UploadOwner>(metadata, OWNER_METADATA_KEY), createdAt }, this.#options.tokenReadTtlMs)
  }

  /** The upload was terminated (DELETE): its intent goes to the sweeper at once, which removes what is left. */
  async terminated(id: string): Promise<void> {
    await this.#intake.abandonUpload(id, Date.now())
  }

  /**
   * The last byte of upload `id` is stored: its record is committed (pending, or rejected for its
   * content type), once, however many times this is called. Returns where its status is read.
   * The tus helper objects stay: tus may still answer from them (removeHelpers, once it has).
   */
  async finish(id: string, metadata: TusMetadata, createdAt: number, log: Log): Promise<{ statusUrl: string }> {
    const statusUrl = `/v1/uploads/${id}`
    if (await this.#uploads.getUpload(id)) return { statusUrl }
    const objectKey = this.#key(id)
    const { body } = await this.#objects.get('quarantine', objectKey)
    const sniffed = sniffContentType(body)
    const meter = new StreamMeter()
    await meter.measure(sniffed.output)
    const detected = await sniffed.detected
    const upload: NewUpload = {
      id,
      objectKey,
      size: meter.bytes,
      sha256: meter.sha256 ?? '',
      filename: sanitizeFilename(metadata?.filename ?? metadata?.name),
      contentType: detected,
      createdAt,
      owner: jsonIn<UploadOwner>(metadata, OWNER_METADATA_KEY)
    }
    const judgement = this.#types.judge(detected, jsonIn<string[]>(metadata, TYPES_METADATA_KEY))
    try {
      if (judgement.allowed) await this.#intake.commitUpload(upload)
      else {
        const reason = rejectionReason(detected)
        await this.#intake.commitRejectedUpload(upload, reason, this.#events.rejected(upload, reason, Date.now()))
      }
    } catch (err) {
      // Committed by a call that ran at the same time: the same upload, once.
      if (!(err instanceof UploadIntentLostError) || !(await this.#uploads.getUpload(id))) throw err
      return { statusUrl }
    }
    log.info({ uploadId: id, size: upload.size, sha256: upload.sha256, contentType: detected, allowed: judgement.allowed }, judgement.allowed ? 'tus upload accepted' : 'tus upload rejected: content type not allowed')
    this.#metrics.uploadBytes('stored', upload.size)
    if (judgement.allowed) this.#onCommitted()
    return { statusUrl }
  }

  #key(id: string): string {
    return `${this.#options.keyPrefix}${id}`
  }

  /** Removes a recorded upload's tus helper objects. Best effort: what is left is known by the record's key and goes with the object. */
  async removeHelpers(id: string, log: Log): Promise<void> {
    const objectKey = this.#key(id)
    for (const suffix of this.#options.companionSuffixes) {
      await this.#objects.delete('quarantine', `${objectKey}${suffix}`).catch((err: unknown) => {
        log.warn({ err, key: `${objectKey}${suffix}` }, 'could not remove a tus helper object')
      })
    }
  }
}

/** A value the gateway set in the metadata at creation (never the client: begin replaces those keys). */
function jsonIn<T>(metadata: TusMetadata, key: string): T | null {
  const raw = metadata?.[key]
  if (!raw) return null
  try {
    return JSON.parse(raw) as T
  } catch {
    return null
  }
}
